/* rule_pool: the threads the rules run on, so that no rule, however slow,
 * ever runs on the event loop (issue 11: a rule spinning in C library work
 * used to stall /healthz, postbacks and every other offer's requests).
 *
 * The loop hands a job over with rule_pool_submit(); one of the pool's
 * threads runs its work function; the loop runs its done function on a
 * later turn, in the order the jobs finished. Work functions touch only
 * what their job owns (a batch, its own rule runtime) and what nobody
 * changes while the job is out (the offer's settings); done functions run
 * on the loop and may do anything the loop may.
 *
 * Fairness: every job belongs to a lane (struct rule_pool_lane, the
 * caller's: the poller gives each polled offer variant one). The jobs of a
 * lane run one at a time, in the order submitted, and lanes with work take
 * turns (round robin): a lane whose job ends goes to the back of the line.
 * So one offer's hundred batches queue behind each other, never in front
 * of another offer's, and one offer never holds more than one thread.
 *
 * Each job's work is timed on its thread's CPU clock (cpu_ns), for the poll
 * run's record of the rule's CPU time.
 *
 * Closing: rule_pool_close() lets the threads finish every job already
 * submitted, joins them, runs the remaining done functions, then closes
 * its handle and calls the callback. Submit nothing after. */
#ifndef LEADSYNC_RULE_POOL_H
#define LEADSYNC_RULE_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "list.h"

#define RULE_POOL_THREADS_MAX 256

struct rule_pool;
struct rule_pool_job;

/* A line of jobs; rule_pool_lane_init() it before first use. It must
 * outlive its jobs: free it only when every job submitted with it is done. */
struct rule_pool_lane {
	struct list waiting; /* rule_pool_job.link, in submission order */
	struct list link;    /* in the pool's line of lanes, while lined */
	bool running;
	uint64_t jobs;       /* done so far */
};

struct rule_pool_job {
	void (*work)(struct rule_pool_job *job); /* on a pool thread */
	void (*done)(struct rule_pool_job *job); /* on the loop, after work */
	void *data;
	int64_t cpu_ns;                          /* set before done: work's CPU time */
	/* the pool's */
	struct rule_pool_lane *lane;
	struct list link; /* in its lane, then in the pool's finished list */
};

struct rule_pool_stats {
	unsigned threads;
	uint64_t submitted, done;
	uint64_t waiting;  /* gauge: submitted, not started */
	uint64_t running;  /* gauge */
	int64_t cpu_ns;    /* CPU time of the work done */
};

/* threads 0: the number of cores this process may use (its CPU affinity,
 * so a container cpuset or taskset counts), at most RULE_POOL_THREADS_MAX. */
__attribute__((warn_unused_result))
int rule_pool_start(uv_loop_t *loop, unsigned threads, struct rule_pool **out, char *err,
		    size_t errlen);
void rule_pool_lane_init(struct rule_pool_lane *lane);
void rule_pool_submit(struct rule_pool *pool, struct rule_pool_lane *lane,
		      struct rule_pool_job *job);
void rule_pool_stats(struct rule_pool *pool, struct rule_pool_stats *out);
/* cb (may be NULL) runs once everything is closed and freed. */
void rule_pool_close(struct rule_pool *pool, void (*cb)(void *data), void *data);

/* The number of cores this process may run on (at least 1). */
unsigned rule_pool_cores(void);

#endif
