/* db: asynchronous PostgreSQL access for the libuv loop. A small pool of
 * worker threads, each with its own connection, takes jobs from one bounded
 * queue and hands each finished job back to the loop thread (uv_async_t),
 * where its completion runs. Nothing here blocks the loop thread.
 *
 * A job is a function run on a worker thread with that worker's PGconn, and
 * a completion run on the loop thread. Two kinds:
 *  - run:   one job, one call;
 *  - group: jobs that share a group function are taken from the queue
 *           together (up to group_max, in queue order) and handed to one
 *           call, so the function can apply them in one transaction: one
 *           commit for many postbacks. The function sets each job's status
 *           and must keep one job's failure from failing the others
 *           (savepoints, or running the rest again without it).
 * Each job's completion still runs on its own, after the call returned,
 * i.e. after whatever commit the function made.
 *
 * Connections. A worker connects when it starts (store_connect: UTF-8,
 * UTC) and again, with an exponential back-off (retry_min_ms doubling up to
 * retry_max_ms), after its connection broke. While a worker has no
 * connection and its back-off has not run out, the jobs it takes complete
 * at once with DB_EDOWN: a job never waits for the database to come back.
 * A job whose function failed while the connection broke also completes
 * with DB_EDOWN (its transaction did not commit, or its commit is unknown:
 * callers answer "try again", and idempotent writes make that safe). A
 * connect attempt is bounded by libpq's connect_timeout (PGCONNECT_TIMEOUT,
 * set to 5 s by db_open() unless the environment sets it). Both kinds of
 * connect failure (store_fault) are retried; a worker logs a server down
 * once ("database unreachable") and a wrong configuration (a role dropped,
 * a database renamed) with libpq's message, password masked, once per
 * message ("database configuration is wrong"); the jobs' err says it too.
 *
 * Functions run with the connection idle (no transaction open) and must
 * leave it idle; a worker rolls back what a function left open.
 *
 * Threads. db_open, db_submit, db_up, db_stats and db_close are for the
 * loop thread. Run and group functions run on worker threads, one job or
 * group per worker at a time; they may read the job but must not touch the
 * loop. Completions run on the loop thread, once per submitted job.
 *
 * Ownership. The caller owns each struct db_job (usually embedded in its
 * own request struct) from db_submit() until its completion has been
 * called; the pool only links it. */
#ifndef LEADSYNC_DB_H
#define LEADSYNC_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <uv.h>

#include "list.h"

#include "metrics.h"

enum db_status {
	DB_OK = 0,
	DB_EFAIL = -1,   /* the function failed for its own reason; see err */
	DB_EDOWN = -2,   /* the database is unreachable: not run, or not committed */
	DB_ECLOSED = -3, /* the pool was closed before the job could run */
};

struct db;
struct db_job;

/* One job: returns its status (DB_OK, DB_EFAIL with job->err set). */
typedef int (*db_run_fn)(PGconn *c, struct db_job *job);
/* n >= 1 jobs of the same group function: sets jobs[i]->status (and err)
 * for every i. */
typedef void (*db_group_fn)(PGconn *c, struct db_job **jobs, size_t n);
/* Loop thread, once per job, with job->status set. The job may be freed
 * here. */
typedef void (*db_done_fn)(struct db_job *job);

#define DB_ERR_MAX 256

struct db_job {
	/* set by the caller before db_submit(): exactly one of run, group */
	db_run_fn run;
	db_group_fn group;
	db_done_fn done;
	void *data;
	/* results, read in done */
	int status;         /* enum db_status */
	char err[DB_ERR_MAX]; /* message when status is not DB_OK */
	/* private to the pool */
	struct list link; /* in the queue, then in the done list */
	uint64_t t_submit; /* uv_hrtime() at db_submit() */
};

struct db_config {
	const char *conninfo;   /* copied */
	unsigned workers;       /* threads, one connection each [2] */
	size_t queue_max;       /* jobs waiting to be taken [10000] */
	size_t group_max;       /* jobs handed to one group call [500] */
	uint64_t retry_min_ms;  /* reconnect back-off, first delay [100] */
	uint64_t retry_max_ms;  /* longest delay [5000] */
};

/* Counters, kept in one place for /metrics. */
struct db_stats {
	uint64_t jobs;      /* completed, any status */
	uint64_t groups;    /* run and group calls made */
	uint64_t failed;    /* completed with DB_EFAIL */
	uint64_t down;      /* completed with DB_EDOWN or DB_ECLOSED */
	uint64_t refused;   /* db_submit() refused: queue full or closing */
	uint64_t connects;  /* successful connects */
	/* gauges */
	uint64_t queued;    /* waiting in the queue */
	uint64_t workers_up; /* workers holding a live connection */
};

/* Starts the workers (they connect in the background). Returns 0, or -1
 * with err set and *out NULL. */
__attribute__((warn_unused_result))
int db_open(uv_loop_t *loop, const struct db_config *cfg, struct db **out, char *err,
	    size_t errlen);

/* Queues job. Returns 0, or -1 when the queue is full or the pool is
 * closing: the job's done is then never called. */
__attribute__((warn_unused_result))
int db_submit(struct db *d, struct db_job *job);

/* True when at least one worker holds a live connection (as last seen). */
bool db_up(const struct db *d);

void db_stats(const struct db *d, struct db_stats *out);
/* Job times from db_submit() to the completion's call, seconds (loop
 * thread only: it is recorded there). */
const struct metrics_hist *db_job_times(const struct db *d);

typedef void (*db_close_cb)(struct db *d, void *data);

/* Lets the workers finish every queued job (each completes as usual),
 * stops them and closes their connections. cb (may be NULL) runs on the
 * loop once all is closed, never from within db_close(); d is freed when cb
 * returns. Submitting after db_close() fails. Call once. */
void db_close(struct db *d, db_close_cb cb, void *data);

#endif
