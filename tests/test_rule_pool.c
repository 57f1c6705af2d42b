/* test_rule_pool: the rule threads' lanes, by order and count (no clock):
 * lanes take turns, a lane's jobs run one at a time in order, the done
 * functions run on the loop, and closing finishes what was submitted. */
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rule_pool.h"

#define RP_JOBS 16

struct rp_env {
	uv_loop_t loop;
	struct rule_pool *pool;
	struct rule_pool_lane lanes[4];
	struct rule_pool_job jobs[RP_JOBS];
	/* the order the work ran in, and the done functions */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	char ran[RP_JOBS * 4 + 1];
	char done[RP_JOBS * 4 + 1];
	unsigned ndone;
	/* a job named in hold waits in its work until released */
	const char *hold;
	bool held, released;
	atomic_int running, most;
	bool spin;
	unsigned cpu_short; /* spun jobs measured under 2 ms */
};

struct rp_job_data {
	struct rp_env *env;
	const char *name;
};

static struct rp_job_data rp_data[RP_JOBS];

static void rp_work(struct rule_pool_job *j)
{
	struct rp_job_data *d = j->data;
	struct rp_env *e = d->env;
	int now = atomic_fetch_add(&e->running, 1) + 1, most = atomic_load(&e->most);

	while (now > most && !atomic_compare_exchange_weak(&e->most, &most, now))
		;
	pthread_mutex_lock(&e->mu);
	strcat(e->ran, d->name);
	strcat(e->ran, " ");
	if (e->hold && strcmp(e->hold, d->name) == 0) {
		e->held = true;
		pthread_cond_broadcast(&e->cv);
		while (!e->released)
			pthread_cond_wait(&e->cv, &e->mu);
	}
	pthread_mutex_unlock(&e->mu);
	if (e->spin) { /* until this thread has used 2 ms of CPU */
		struct timespec t0, t;

		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
		do
			clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
		while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 2000000L);
	}
	atomic_fetch_sub(&e->running, 1);
}

static void rp_done(struct rule_pool_job *j)
{
	struct rp_job_data *d = j->data;
	struct rp_env *e = d->env;

	strcat(e->done, d->name);
	strcat(e->done, " ");
	e->ndone++;
	if (e->spin && j->cpu_ns < 2000000)
		e->cpu_short++;
}

static void rp_cleanup(void *arg);

/* Starts the pool; the test's cleanup releases a held job, closes the
 * pool and frees e, whatever happened. */
static bool rp_open(struct rp_env *e, unsigned threads)
{
	char err[256];

	memset(e, 0, sizeof(*e));
	for (size_t l = 0; l < sizeof(e->lanes) / sizeof(e->lanes[0]); l++)
		rule_pool_lane_init(&e->lanes[l]);
	test_defer(rp_cleanup, e);
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->cv, NULL);
	if (uv_loop_init(&e->loop) < 0)
		return false;
	if (rule_pool_start(&e->loop, threads, &e->pool, err, sizeof(err)) < 0) {
		printf("  %s\n", err);
		return false;
	}
	return true;
}

static void rp_closed(void *data)
{
	*(bool *)data = true;
}

static void rp_release(struct rp_env *e);

static void rp_cleanup(void *arg)
{
	struct rp_env *e = arg;
	bool closed = false;

	rp_release(e);
	if (e->pool) {
		rule_pool_close(e->pool, rp_closed, &closed);
		while (!closed && uv_run(&e->loop, UV_RUN_ONCE))
			;
		e->pool = NULL;
	}
	uv_run(&e->loop, UV_RUN_NOWAIT);
	uv_loop_close(&e->loop);
	pthread_cond_destroy(&e->cv);
	pthread_mutex_destroy(&e->mu);
	free(e);
}

/* Job i named name (lane = its letter: A..D), submitted. */
static void rp_submit(struct rp_env *e, unsigned i, const char *name)
{
	rp_data[i].env = e;
	rp_data[i].name = name;
	e->jobs[i].work = rp_work;
	e->jobs[i].done = rp_done;
	e->jobs[i].data = &rp_data[i];
	rule_pool_submit(e->pool, &e->lanes[name[0] - 'A'], &e->jobs[i]);
}

/* Jobs first.. named by the words of names ("A2 A3 B1"), submitted in
 * order; the names must outlive the jobs (string literals). */
static void rp_submit_all(struct rp_env *e, unsigned first, const char *names)
{
	static char words[RP_JOBS][4];
	const char *p = names;
	unsigned i = first;

	while (*p && i < RP_JOBS) {
		size_t n = strcspn(p, " ");

		snprintf(words[i], sizeof(words[i]), "%.*s", (int)n, p);
		rp_submit(e, i, words[i]);
		i++;
		p += n;
		p += *p == ' ';
	}
}

static void rp_wait_held(struct rp_env *e)
{
	pthread_mutex_lock(&e->mu);
	while (!e->held)
		pthread_cond_wait(&e->cv, &e->mu);
	pthread_mutex_unlock(&e->mu);
}

static void rp_release(struct rp_env *e)
{
	pthread_mutex_lock(&e->mu);
	e->released = true;
	pthread_cond_broadcast(&e->cv);
	pthread_mutex_unlock(&e->mu);
}

static void rp_run_until(struct rp_env *e, unsigned ndone)
{
	while (e->ndone < ndone)
		uv_run(&e->loop, UV_RUN_ONCE);
}

/* One thread: while A1 runs, A2 A3 B1 C1 come in; A1's lane goes to the
 * back of the line when A1 ends, so B and C run before A's next. */
TEST(rule_pool_lanes_take_turns)
{
	struct rp_env *e = calloc(1, sizeof(*e));

	ASSERT(e);
	ASSERT(rp_open(e, 1));
	e->hold = "A1";
	rp_submit(e, 0, "A1");
	rp_wait_held(e);
	rp_submit_all(e, 1, "A2 A3 B1 C1 B2");
	rp_release(e);
	rp_run_until(e, 6);
	printf("  ran: %s\n", e->ran);
	ASSERT_STREQ(e->ran, "A1 B1 C1 A2 B2 A3 ");
	ASSERT_STREQ(e->done, "A1 B1 C1 A2 B2 A3 ");
}

/* Two threads: A1 holds one; A2 waits behind it, never on the other
 * thread, which runs B's jobs meanwhile. */
TEST(rule_pool_a_lane_holds_one_thread)
{
	struct rp_env *e = calloc(1, sizeof(*e));

	ASSERT(e);
	ASSERT(rp_open(e, 2));
	e->hold = "A1";
	rp_submit(e, 0, "A1");
	rp_wait_held(e);
	rp_submit_all(e, 1, "A2 B1 B2 B3");
	rp_run_until(e, 3);
	ASSERT_STREQ(e->done, "B1 B2 B3 ");
	pthread_mutex_lock(&e->mu);
	ASSERT(strstr(e->ran, "A2") == NULL);
	pthread_mutex_unlock(&e->mu);
	rp_release(e);
	rp_run_until(e, 5);
	ASSERT_STREQ(e->done, "B1 B2 B3 A1 A2 ");
}

/* Many lanes on two threads: never more than two jobs at once, each job's
 * CPU time measured on its thread, every done function run once. */
TEST(rule_pool_measures_cpu_and_runs_every_job)
{
	struct rp_env *e = calloc(1, sizeof(*e));
	struct rule_pool_stats st;

	ASSERT(e);
	ASSERT(rp_open(e, 2));
	e->spin = true;
	rp_submit_all(e, 0, "A1 B1 C1 D1 A2 B2 C2 D2");
	rp_run_until(e, 8);
	ASSERT(atomic_load(&e->most) <= 2);
	rule_pool_stats(e->pool, &st);
	ASSERT_EQ(st.threads, 2u);
	ASSERT_EQ(st.submitted, 8u);
	ASSERT_EQ(st.done, 8u);
	ASSERT_EQ(st.waiting, 0u);
	ASSERT_EQ(st.running, 0u);
	ASSERT(st.cpu_ns >= 8 * 2000000L);
	ASSERT_EQ(e->cpu_short, 0u);
}

/* Closing right after submitting: every job runs and its done function
 * runs, before the close callback. */
TEST(rule_pool_close_finishes_what_was_submitted)
{
	struct rp_env *e = calloc(1, sizeof(*e));
	bool closed = false;

	ASSERT(e);
	ASSERT(rp_open(e, 2));
	rp_submit_all(e, 0, "A1 A2 B1 A3 C1");
	rule_pool_close(e->pool, rp_closed, &closed);
	e->pool = NULL;
	ASSERT_EQ(e->ndone, 5u);
	while (!closed && uv_run(&e->loop, UV_RUN_ONCE))
		;
	ASSERT(closed);
	/* lane A's jobs in their order */
	ASSERT(strstr(e->done, "A1") < strstr(e->done, "A2"));
	ASSERT(strstr(e->done, "A2") < strstr(e->done, "A3"));
}
