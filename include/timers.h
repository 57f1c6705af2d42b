/* timers: the daemon's clock work (DESIGN.md "keeps time"), with no cron:
 *
 *  - hold expiry: a lead in hold (4) whose hold_until has come is approved
 *    (source 'timer'): lead_apply()'s approval mechanics, so each payout
 *    comes from the goal (fixed amount, or percent of base * counts) unless
 *    it is set already, approved_at becomes now and the status 6;
 *  - reject-after: a lead still in 1..3 created longer ago than its own
 *    offer's reject_after_days is cancelled with reason 17 (REASON_TIMER,
 *    source 'timer'); offers without reject_after_days never reject;
 *  - pruning: poll_runs and postbacks_in rows older than their retention
 *    are deleted. lead_history is kept forever: it is the "why".
 *
 * A lead batch (timers_leads_batch) is one transaction on one connection:
 * up to `limit` due leads are read and locked with FOR UPDATE SKIP LOCKED
 * (a lead a postback or a poll holds is passed over, not waited for, and
 * taken by a later round), the edit is computed in C by lead_apply() (the
 * one implementation of the edit semantics; payouts cannot drift from
 * lead.c's), and the changed leads and their lead_history rows are written
 * by two set-based statements. A history row's before/after is lead_diff()
 * of the lead as read and as computed, and the lead row is updated from
 * exactly that "after" object, so a lead and its history never disagree.
 * All times come from the database clock (now() of the transaction).
 *
 * A refused edit (only an approval whose percent payout overflows, or a
 * payout past numeric(14,2)) leaves the lead as it was; its id goes to the
 * round's skip list so the rest of the round is not held up by it, and the
 * next round tries it again (and logs it again).
 *
 * Pruning deletes in statements of `limit` rows, each its own short
 * transaction: poll_runs by id order (ids follow start times), bounded to
 * the oldest `limit` ids so no statement scans the table; postbacks_in by
 * its `at` index. A prune statement never waits for a long lock: the rows
 * it deletes are weeks old and nobody writes them.
 *
 * Threads: the batch and round functions are synchronous and run on
 * whatever thread owns the connection (a db worker, a test). timers_start,
 * timers_stats and timers_close are for the loop thread; the rounds they
 * schedule run on the db pool (include/db.h), one job at a time for the
 * lead timers and one for pruning, so a slow round never piles up jobs.
 *
 * Errors: 0 or -1 with a message in err ("timers hold batch: ERROR: ..."). */
#ifndef LEADSYNC_TIMERS_H
#define LEADSYNC_TIMERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <uv.h>

struct db;
struct settings;

enum timers_kind {
	TIMERS_HOLD = 0,   /* approve leads whose hold ran out */
	TIMERS_REJECT = 1, /* cancel leads in 1..3 past their offer's reject_after_days */
};
const char *timers_kind_name(enum timers_kind k); /* "hold", "reject" */

enum timers_table { TIMERS_POLL_RUNS = 0, TIMERS_POSTBACKS_IN = 1 };
const char *timers_table_name(enum timers_table t); /* "poll_runs", "postbacks_in" */

#define TIMERS_SKIP_MAX 1024
#define TIMERS_LIMIT_MAX 100000 /* leads or rows per statement, at most */

/* Leads a round gave up on (refused edits); later batches of the round pass
 * them over. The caller zeroes it at the start of a round. */
struct timers_skip {
	int64_t ids[TIMERS_SKIP_MAX];
	size_t n;
};

/* What one lead batch did. */
struct timers_batch {
	size_t picked;  /* due leads read and locked */
	size_t changed; /* approved or cancelled, each with its history row */
	size_t refused; /* left as they were; the first reason is in note */
	char note[256];
};

/* One batch of kind on c (which must be idle: no transaction open). limit
 * is 1..TIMERS_LIMIT_MAX; skip may be NULL. Returns 0 with *out filled, or
 * -1 with err set and nothing written. */
__attribute__((warn_unused_result))
int timers_leads_batch(PGconn *c, enum timers_kind kind, size_t limit, struct timers_skip *skip,
		       struct timers_batch *out, char *err, size_t errlen);

/* One prune statement: deletes up to limit rows of table older than
 * keep_days (1..36500) days; *deleted is how many. */
__attribute__((warn_unused_result))
int timers_prune_batch(PGconn *c, enum timers_table table, int keep_days, size_t limit,
		       size_t *deleted, char *err, size_t errlen);

/* Counters, kept in one place for /metrics. */
struct timers_stats {
	uint64_t rounds;          /* lead rounds finished, failed ones included */
	uint64_t batches;         /* lead batches committed */
	uint64_t picked;          /* due leads those batches read */
	uint64_t approved;        /* leads whose hold ran out */
	uint64_t rejected;        /* leads cancelled with reason 17 */
	uint64_t refused;         /* refused edits (a lead counts once per round) */
	uint64_t prune_rounds;
	uint64_t pruned_poll_runs;
	uint64_t pruned_postbacks;
	uint64_t failures;        /* batches that failed (database down, error) */
};

struct timers_config {
	uint64_t interval_ms;       /* from the end of a lead round to the next [5000] */
	size_t batch;               /* leads per statement [1000] */
	uint64_t prune_interval_ms; /* between prune rounds [900000]; the first
	                             * runs one interval_ms after the start */
	size_t prune_batch;         /* rows per delete statement [5000] */
	int keep_poll_runs_days;    /* [30]; TIMERS_KEEP_FOREVER: never pruned */
	int keep_postbacks_days;    /* [30]; TIMERS_KEEP_FOREVER: never pruned */
};
#define TIMERS_KEEP_FOREVER (-1)

/* The config of settings s: timer_interval, timer_batch, prune_interval,
 * poll_keep_days and postbacks_keep_days (0 there: TIMERS_KEEP_FOREVER). */
void timers_config_from_settings(const struct settings *s, struct timers_config *out);

/* Synchronous rounds on c, logging as the daemon does (one line per batch
 * that did something): every hold batch, then every reject batch, until a
 * batch finds fewer than cfg->batch leads (or changes none); and every
 * prune batch of both tables (but one kept forever). Counters are added to *st (may be NULL). */
__attribute__((warn_unused_result))
int timers_round(PGconn *c, const struct timers_config *cfg, struct timers_stats *st, char *err,
		 size_t errlen);
__attribute__((warn_unused_result))
int timers_prune(PGconn *c, const struct timers_config *cfg, struct timers_stats *st, char *err,
		 size_t errlen);

/* The daemon's timers: the first lead round is submitted at once (leads
 * whose hold ran out while the daemon was down are released first thing),
 * then one interval after each round ends. db must outlive the timers
 * (close them first). cfg fields left 0 take their defaults. Returns 0, or
 * -1 with err set and *out NULL. */
struct timers;
__attribute__((warn_unused_result))
int timers_start(uv_loop_t *loop, struct db *db, const struct timers_config *cfg,
		 struct timers **out, char *err, size_t errlen);

void timers_stats(const struct timers *t, struct timers_stats *out);

/* Stops scheduling rounds; a batch in flight finishes (its job completes
 * as usual). cb (may be NULL) runs on the loop when nothing is left, never
 * from within timers_close(); t is freed when cb returns. Call once. */
void timers_close(struct timers *t, void (*cb)(void *data), void *data);

#endif
