/* scheduler: when each (offer, variant) pair is polled and by whom
 * (DESIGN.md "Pull", "Storage"; issue 4 items 1, 6, 7). The poll_schedule
 * table holds one row per pair (001_schema.sql creates them by trigger);
 * this module leases due rows to one worker at a time and moves their due
 * times. What a poll does is the poller's business (poller.h).
 *
 * Leases. A daemon claims due pairs of enabled offers that name a rule in
 * one short statement (FOR UPDATE SKIP LOCKED, no transaction held open):
 * lease_owner = its worker id ("host:pid:random"), lease_until = now() +
 * lease. While a pair is in flight a heartbeat extends its lease; a lease
 * the heartbeat no longer finds (another worker took the pair after it ran
 * out) is reported as lost, and the poller stops that pair. A release that
 * fails (the database dropped) is kept (at most pairs_max) and retried by
 * the next claim, before it claims, so a short outage does not hold those
 * pairs for a whole lease (scheduler.c says why this cannot poll a pair
 * twice at once); releases still pending at the stop run out. A daemon that
 * dies leaves its leases to run out, then any daemon claims the pairs.
 * Every writer of a poll checks the lease in its transaction (poller.c), so
 * two workers never write results of the same pair at once.
 *
 * Due times come from the database clock (now()). A finished run is due
 * again interval seconds after it finished (the offer's interval for the
 * variant, else the default); a failed run after a back-off: min * 2^fails,
 * capped at max, with "equal jitter" (half fixed, half random), and never
 * sooner than the CRM's Retry-After. A run cut short by a shutdown keeps
 * its due time and fail count (it is due again at once). Missed runs are not
 * replayed: a run that starts late covers them, and the claim reports how
 * many whole intervals it missed (missed > 0: it caught up). A pair that was
 * never polled missed nothing.
 *
 * Old poll_runs rows are pruned by the timers module (timers.h), not here.
 *
 * The loop object (scheduler_start ...) runs on the daemon's libuv loop and
 * does its database work through the db pool (db.h), never on the loop
 * thread. The synchronous scheduler_sql_* functions are what its jobs run
 * on a worker's connection; `leadsync check` and the tests call them
 * directly. Loop-thread functions are not thread-safe. */
#ifndef LEADSYNC_SCHEDULER_H
#define LEADSYNC_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <uv.h>

#include "db.h"
#include "list.h"
#include "rule.h"

#define SCHED_WORKER_MAX 128
#define SCHED_ERROR_MAX 1024 /* bytes of last_error kept */

/* Default intervals, seconds (DESIGN.md "Pull"). */
#define SCHED_INTERVAL_PROCESSING 600
#define SCHED_INTERVAL_ACCEPTED 10800
#define SCHED_INTERVAL_DATES 3600

/* A leased pair. Allocated by the scheduler; the poller hangs its state on
 * data and gives the pair back with scheduler_done(), which frees it. */
struct sched_pair {
	int64_t offer;
	enum rule_variant variant;
	int fail_count;       /* failed runs in a row before this one */
	unsigned interval_s;  /* the offer's interval for the variant, or the default */
	int64_t missed;       /* whole intervals missed before this run (0: on time) */
	char prev_owner[SCHED_WORKER_MAX]; /* "" or the worker whose lease ran out */
	void *data;           /* the poller's */
	/* private to the scheduler */
	struct scheduler *s;
	struct list link;     /* in the scheduler's pairs in flight */
	bool lost;
};

enum sched_end {
	SCHED_OK = 0,   /* every batch polled and applied: due in interval_s */
	SCHED_FAILED,   /* back off */
	SCHED_REQUEUE,  /* cut short (shutdown): due time and fail count kept */
};

struct sched_result {
	enum sched_end end;
	int64_t run;            /* last poll_runs id of the run; 0: none */
	const char *error;      /* SCHED_FAILED: why (copied, cut to SCHED_ERROR_MAX) */
	unsigned retry_after_s; /* SCHED_FAILED: wait at least this long */
};

/* A release as the database applies it (scheduler_sql_release). */
struct sched_release {
	int64_t offer;
	enum rule_variant variant;
	enum sched_end end;
	double delay_s;   /* from now() to next_due (not used by SCHED_REQUEUE) */
	int64_t run;      /* 0: last_run unchanged */
	char *error;      /* SCHED_FAILED; may be NULL */
};

/* Loop thread: the pairs of one claim, in claim order. The callee owns
 * each until it calls scheduler_done() for it; the array is the
 * scheduler's, valid during the call only. (The poller loads their offers
 * in one job of its own, then polls them.) */
typedef void (*sched_pairs_fn)(struct scheduler *s, struct sched_pair **pairs, size_t n,
			       void *ud);
/* Loop thread: the lease of a pair in flight was lost. The poller stops the
 * pair and still calls scheduler_done() (which then writes nothing). */
typedef void (*sched_lost_fn)(struct scheduler *s, struct sched_pair *pair, void *ud);

/* A field 0 takes the default in brackets. */
struct scheduler_config {
	struct db *db;             /* the pool (not owned) */
	const char *worker;        /* lease owner (copied); NULL: scheduler_worker_id() */
	unsigned lease_s;          /* [60] */
	unsigned heartbeat_ms;     /* [lease_s * 1000 / 3] */
	unsigned tick_ms;          /* how often to look for due pairs [1000] */
	unsigned claim_max;        /* pairs per claim [64] */
	unsigned pairs_max;        /* pairs in flight at once [256] */
	unsigned backoff_min_s;    /* [30] */
	unsigned backoff_max_s;    /* [3600] */
	unsigned interval_s[RULE_VARIANTS]; /* defaults [600, 10800, 3600] */
	sched_pairs_fn on_pairs;   /* required */
	sched_lost_fn on_lost;     /* may be NULL */
	void *ud;
};

/* Counters, kept in one place for /metrics. */
struct scheduler_stats {
	uint64_t claims;        /* claim statements run */
	uint64_t claimed;       /* pairs leased */
	uint64_t taken_over;    /* of which had an expired lease of another worker */
	uint64_t caught_up;     /* of which had missed runs */
	uint64_t done_ok, done_failed, done_requeued;
	uint64_t lost;          /* leases lost while in flight */
	uint64_t release_errors; /* releases that did not reach the database */
	uint64_t heartbeats;
	uint64_t in_flight;     /* gauge: pairs out with the poller */
};

struct scheduler;

/* Starts the timers (the first claim runs at once). Returns 0 and *out,
 * or -1 with err set. */
__attribute__((warn_unused_result))
int scheduler_start(uv_loop_t *loop, const struct scheduler_config *cfg, struct scheduler **out,
		    char *err, size_t errlen);

/* Gives a pair back (loop thread). pair is freed; its data must be freed
 * by the caller before. */
void scheduler_done(struct scheduler *s, struct sched_pair *pair, const struct sched_result *r);

/* Stops claiming. cb runs (from the loop) once every pair handed out came
 * back through scheduler_done(), their releases were written and every
 * timer is closed; s is freed when cb returns. Call once. */
void scheduler_stop(struct scheduler *s, void (*cb)(void *data), void *data);

/* True when nothing is in flight or pending (a failed release included)
 * and the last claim, made after the last pair came back, found nothing
 * due. */
bool scheduler_idle(const struct scheduler *s);
void scheduler_stats(const struct scheduler *s, struct scheduler_stats *out);
const char *scheduler_worker(const struct scheduler *s);

/* ---- pure helpers */

/* "host:pid:xxxxxxxx" (8 random hex digits) into out. Returns 0, or -1
 * when len is too small. */
int scheduler_worker_id(char *out, size_t len);

/* Back-off before the next try of a pair that failed fail_count times in a
 * row before this failure (0: its first): b = min(max_s, min_s * 2^fail_count),
 * then b/2 + rnd % (b/2 + 1) ("equal jitter"). */
unsigned scheduler_backoff_s(int fail_count, unsigned min_s, unsigned max_s, uint32_t rnd);

/* ---- synchronous SQL (a worker's connection, or the CLI's). Each is one
 * statement in its own transaction, unless noted. Errors: -1, err set. */

/* Leases up to max due pairs to worker. *out (malloc'd array of malloc'd
 * pairs; free each and the array) and *n. intervals: the defaults. */
__attribute__((warn_unused_result))
int scheduler_sql_claim(PGconn *c, const char *worker, unsigned lease_s, unsigned max,
			const unsigned intervals[RULE_VARIANTS], struct sched_pair ***out, size_t *n,
			char *err, size_t errlen);

/* Leases one pair, due or not, enabled or not (`leadsync check`). Fails
 * ("offer 10 processing is being polled by W") when another worker's lease
 * has not run out, or the offer does not exist. *out is malloc'd. */
__attribute__((warn_unused_result))
int scheduler_sql_lease(PGconn *c, const char *worker, unsigned lease_s, int64_t offer,
			enum rule_variant v, const unsigned intervals[RULE_VARIANTS],
			struct sched_pair **out, char *err, size_t errlen);

struct sched_key {
	int64_t offer;
	enum rule_variant variant;
};

/* Extends worker's leases of the n pairs; alive[i] is set to whether pair
 * keys[i] is still leased to worker. */
__attribute__((warn_unused_result))
int scheduler_sql_heartbeat(PGconn *c, const char *worker, unsigned lease_s,
			    const struct sched_key *keys, size_t n, bool *alive, char *err,
			    size_t errlen);

/* Gives n pairs back (only those still leased to worker are touched). */
__attribute__((warn_unused_result))
int scheduler_sql_release(PGconn *c, const char *worker, const struct sched_release *r, size_t n,
			  char *err, size_t errlen);

/* Makes a pair due now (the admin API's "check now"): the next claim of
 * any daemon on the database takes it, within its tick. One statement.
 * Returns 0; SCHED_ENOTFOUND when the offer does not exist or names no
 * rule (it has no schedule); SCHED_EBUSY when the offer is disabled or
 * the pair is leased now (being polled: its release would overwrite the
 * due time); -1 on a database error. err says which. */
enum { SCHED_ENOTFOUND = -2, SCHED_EBUSY = -3 };
__attribute__((warn_unused_result))
int scheduler_sql_due_now(PGconn *c, int64_t offer, enum rule_variant v, char *err, size_t errlen);

#endif
