/* poller: what one poll of an (offer, variant) pair does (DESIGN.md
 * "Pull", issue 4 items 2-6 and 10): select the pair's leads, build each
 * request with the offer's rule, send it to the CRM, run the rule on the
 * answer (and on the next pages it asks for), and write the rule's edits,
 * their lead-history rows and the poll-run record in one statement. The
 * scheduler (scheduler.h) decides which pairs are due and leases them.
 *
 * Pipeline. A leased pair's offer (params, goals, currencies...) is loaded
 * with the claim. Its leads are read in batches of the rule's `batch`
 * (processing: status 2-4, accepted: 6-9), keyset-paginated by id, only
 * those with an external id: the id variants ask the CRM by it, so a lead
 * without one (a postback's) is never sent (no `ids=` with an empty
 * item); the run counts them instead (leads_no_ext, on its first row and
 * in its log line). The
 * dates variant reads the days (in the offer's time zone, default the
 * network's; PostgreSQL reads them and their UTC bounds) that hold at least
 * one open lead, no older than
 * dates_age_days, groups them into ranges of at most the rule's `days` and
 * dates_leads_max leads, and asks for one range per request (a range whose
 * leads pass the cap is asked with its first dates_leads_max leads, noted).
 * Many batches are in flight at once: at most pair_batches_max per pair and
 * batches_max and leads_max over all pairs (every buffer is bounded). A
 * batch's request is sent through http_client with the rate key
 * "offer:<id>" at the offer's rate_limit; rule_process pages through
 * res.next up to the rule's page cap within the same batch.
 *
 * Threads. rule_prepare/rule_process run on the loop thread (a rule_rt is
 * single-threaded, and they cost ~2 us a lead); every database access is a
 * db job on a worker; row parsing happens there too.
 *
 * Apply (one autocommit statement per batch on a db worker, never across
 * HTTP; poll_sql.h holds it): the page select read each lead's row version
 * (xmin) beside it; the write checks the pair's lease (FOR KEY SHARE, so
 * no other worker can claim the pair meanwhile; lost: nothing written),
 * locks the changed leads in id order (the order postbacks and timers lock
 * in) and updates only those whose row version is still the one read:
 * a lead changed meanwhile (a postback) is not clobbered: skipped, counted
 * in leads_skipped and noted in poll_runs.notes (the next poll asks again
 * with fresh data), even when it already holds what the rule wants. The
 * written leads (their `checked` set), their lead_history rows (source
 * poll, or dates for the dates variant, source_id the run) and the
 * poll_runs row go in that one statement. A lead the CRM reports unchanged
 * is not written at all: a batch with no change is its poll_runs row
 * alone, and `lead show` reads when a lead was last asked from the
 * schedule's last_ok (history.h, HISTORY_CHECKED_SQL).
 *
 * poll_runs: one row per batch (request, with its pages counted), written
 * whatever the outcome (a failure in its own small statement): worker,
 * start and end (the daemon's clock), method and URL of the first page with
 * secrets masked (mask.h), HTTP status and bytes (all pages),
 * leads asked / changed / unknown / refused / unrecognised / skipped,
 * outcome, error, the first answer_head bytes of the last answer (valid
 * UTF-8; other bytes as \xNN; masked), notes (refused edits, unrecognised
 * words, skipped leads, the rule's log lines; masked, at most
 * POLL_NOTES_MAX bytes), caught_up and missed, leads_no_ext (the run's
 * first row). A run with no lead to ask writes no row, unless it caught up
 * (outcome caught_up) or left leads without an external id out (outcome
 * ok, leads_asked 0). A rule that does not declare the variant is not
 * polled (no row).
 *
 * Outcomes: ok; http_error (429, 5xx, or another non-2xx answer the rule
 * failed on), timeout, connect_error, tls_error, too_large, bad_answer,
 * redirect_error (transport, http_client.h); decode_error (a 2xx answer not
 * in the declared format), rule_error (the rule failed while it ran:
 * prepare or process; the message carries file:line), config_error
 * (something wrong before any request: the rule file missing or not
 * loading, the offer gone or naming no rule, a time zone PostgreSQL does
 * not know, status_words
 * that do not parse), db_error, lease_lost, cancelled (shutdown),
 * internal_error, caught_up. A transport failure, an http_error or a db_error stops the
 * pair's further batches (its CRM or database is in trouble); a
 * decode_error or rule_error fails that batch only. Any failure fails the
 * run: the pair backs off (scheduler), never marked ok.
 *
 * Rules are loaded from rules_dir/<rule>.lua on first use and cached, one
 * runtime per rule name; poller_reload_rules() (SIGHUP) reloads every
 * cached rule and keeps the previous version of one that no longer loads.
 * A rule that failed to load is tried again after rule_retry_s.
 *
 * Rules never run on the loop: a batch's prepare and each answer's decode
 * and process run on the rule threads (rule_pool.h, rule_threads of them),
 * each on a runtime of the rule no other thread is using (rule_clone), and
 * the batch goes on on the loop with the result. A pair's batches take
 * turns in one lane: one offer variant's rule holds at most one thread,
 * and offers take turns. The rule's CPU time is summed per batch (the
 * poll_runs row's rule_cpu_ms) and per run: a run whose rule took
 * rule_slow_ms or more of CPU per batch is slow; POLL_RULE_SLOW_RUNS slow
 * runs in a row log "rule slow" (warn, once, and "rule no longer slow"
 * when a run is not) and every slow run counts in /metrics.
 *
 * An offer's status_words (status.h: read before the rule's map and the
 * built-in words) are parsed on first use and cached per offer with the
 * text they came from; the offer row is read with every claim, and the
 * words are parsed again only when its text changed (an import), so a
 * change takes effect at the offer's next claim.
 *
 * Secrets: the values of the offer's secret_params, and of params whose
 * name looks like a credential (key, token, secret, pass, auth, sign), are
 * replaced by *** in every stored or logged text; query parameters whose
 * name looks like a credential are masked in URLs too. Headers and request
 * bodies are never stored.
 *
 * Logging: one line per poll of a pair ("poll done", offer, variant, run,
 * outcome, counters, elapsed ms): warn when it failed, debug when it had
 * nothing to ask, else info. */
#ifndef LEADSYNC_POLLER_H
#define LEADSYNC_POLLER_H

#define POLL_RULE_SLOW_MS 1000
#define POLL_RULE_SLOW_RUNS 3

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "buf.h"
#include "db.h"
#include "http_client.h"
#include "rule.h"
#include "scheduler.h"
#include "settings.h"

#define POLL_NOTES_MAX 4096
#define POLL_ANSWER_HEAD 4096

enum poll_outcome {
	POLL_OK = 0,
	POLL_HTTP_ERROR,
	POLL_TIMEOUT,
	POLL_CONNECT_ERROR,
	POLL_TLS_ERROR,
	POLL_TOO_LARGE,
	POLL_BAD_ANSWER,
	POLL_REDIRECT_ERROR,
	POLL_DECODE_ERROR,
	POLL_RULE_ERROR,
	POLL_CONFIG_ERROR,
	POLL_DB_ERROR,
	POLL_LEASE_LOST,
	POLL_CANCELLED,
	POLL_INTERNAL_ERROR,
	POLL_CAUGHT_UP,
	POLL_OUTCOME_COUNT
};

/* "ok", "http_error", ... as stored in poll_runs.outcome. */
const char *poll_outcome_name(enum poll_outcome o);

/* A field 0 (or NULL) takes the default in brackets. */
struct poller_config {
	struct db *db;                 /* the daemon's pool (not owned); required */
	struct http_client *http;      /* NULL: the poller makes its own from http_limits */
	struct http_client_limits http_limits;
	const char *rules_dir;         /* [./rules] (copied) */
	const char *tz;                /* zone of offers without one [UTC] (copied) */
	struct rule_limits rule_limits;
	struct scheduler_config sched; /* db, load, on_pair, on_lost, on_drop and ud
					* are the poller's; the rest is passed on */
	unsigned batches_max;          /* batches (requests) in flight, all pairs [256] */
	unsigned pair_batches_max;     /* batches in flight per pair [8] */
	size_t leads_max;              /* leads held by batches, all pairs [50000]
					* (~1.4 KB each: ~70 MB) */
	unsigned dates_age_days;       /* [60] */
	size_t dates_leads_max;        /* leads asked per date range [5000] */
	size_t answer_head;            /* bytes of the answer kept [POLL_ANSWER_HEAD] */
	unsigned stop_deadline_ms;     /* requests in flight may finish this long [10000] */
	unsigned rule_retry_s;         /* [60] */
	unsigned rule_threads;         /* threads the rules run on [the cores] */
	unsigned rule_slow_ms;         /* a run whose rule CPU time per batch reaches
					* this is slow [POLL_RULE_SLOW_MS] */
	const char *check_save;        /* poller_check only: save each request as a
					* `rule test` case folder here (the second
					* and later as DIR.2, DIR.3 ...); NULL: none */
};

/* Fills c from the settings table's values (rules folder, limits, caps,
 * lease, back-off, retention, CRM client limits). c is zeroed first; db
 * and http are left NULL. */
void poller_config_from_settings(struct poller_config *c, const struct settings *s);

/* Counters, kept in one place for /metrics. */
struct poller_stats {
	struct scheduler_stats sched;
	uint64_t runs, runs_ok, runs_failed, runs_requeued; /* pair runs finished */
	uint64_t batches;                 /* batches finished (poll_runs rows meant) */
	uint64_t outcomes[POLL_OUTCOME_COUNT]; /* batches by outcome */
	uint64_t pages;                   /* CRM answers received */
	uint64_t bytes;                   /* answer bytes */
	uint64_t leads_asked, leads_changed, leads_skipped, leads_unknown, leads_refused,
		leads_unrecognised;
	uint64_t leads_asked_dates, leads_changed_dates; /* of which by the dates variant */
	uint64_t rule_limits[3];          /* rule calls killed: budget, memory, time */
	uint64_t rows_lost;               /* poll_runs rows that could not be written */
	uint64_t rule_loads, rule_load_errors;
	uint64_t words_parsed;            /* offers' status_words parsed (cache misses) */
	uint64_t rule_calls;              /* prepare and process calls run */
	int64_t rule_ns;                  /* their CPU time */
	uint64_t rule_slow_runs;          /* pair runs whose rule was slow */
	/* gauges */
	uint64_t pairs_in_flight, batches_in_flight, leads_held;
	uint64_t rule_threads, rule_waiting, rule_running; /* rule_pool.h */
};

/* Batches by outcome of one (offer, variant) this poller polled: one row
 * per pair that has ended a batch, kept for the poller's life. */
struct poller_count {
	int64_t offer;
	enum rule_variant variant;
	uint64_t outcomes[POLL_OUTCOME_COUNT];
	int64_t rule_ns;       /* the rule's CPU time */
	uint64_t slow_runs;    /* runs whose rule was slow (rule_slow_ms) */
	unsigned slow_streak;  /* slow runs in a row, now */
};

struct poller;

/* Starts polling on loop: the scheduler's timers, the rule cache and (when
 * cfg->http is NULL) an http client. Returns 0 and *out, or -1 with err set
 * (nothing left open). */
__attribute__((warn_unused_result))
int poller_start(uv_loop_t *loop, const struct poller_config *cfg, struct poller **out, char *err,
		 size_t errlen);

/* Stops claiming and starting batches; requests in flight may finish for
 * stop_deadline_ms, then are cancelled; every pair is given back (a pair cut
 * short keeps its due time), the leases released, the own http client
 * closed. cb (may be NULL) runs from the loop when all is done; p is freed
 * when it returns. Call once. */
void poller_stop(struct poller *p, void (*cb)(void *data), void *data);

/* Reloads every cached rule from its file (SIGHUP). A rule that no longer
 * loads keeps its previous version; why is logged. Returns the number of
 * rules that failed. Loop thread. */
int poller_reload_rules(struct poller *p);

/* True when no pair is in flight, nothing is pending, and the last look
 * for due pairs found none (tests, `make run`). */
bool poller_idle(const struct poller *p);
void poller_stats(const struct poller *p, struct poller_stats *out);
const char *poller_worker(const struct poller *p);
/* The per-pair table, sorted by offer then variant; *n rows. Valid until
 * the loop turns (the next batch that ends may move it). */
const struct poller_count *poller_counts(const struct poller *p, size_t *n);
/* The client the poller sends its CRM requests with (for its stats). */
struct http_client *poller_http(const struct poller *p);

/* `leadsync check`: one poll now of offer's variant (variant < 0: every
 * variant its rule declares, in order), on a private loop, pool and client.
 * Appends a report (each request, HTTP status, an excerpt of the answer,
 * the edits, the counters, the outcome) to out. dry_run writes nothing: no
 * lead change, no poll_runs row, no lease. Otherwise the pair is leased
 * (refused while another worker polls it; extended every lease / 3 while
 * polled, so a slow CRM cannot outlive it), polled and written as the
 * daemon would, and rescheduled. cfg supplies limits (db/http ignored).
 * Returns 0 when every poll succeeded, 1 when one failed (the report says
 * why), -1 when it could not run (err set: no database, unknown offer, no
 * rule). */
__attribute__((warn_unused_result))
int poller_check(const char *conninfo, const struct poller_config *cfg, int64_t offer,
		 int variant, bool dry_run, struct buf *out, char *err, size_t errlen);

#endif
