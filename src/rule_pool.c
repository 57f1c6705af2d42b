/* rule_pool: a fixed set of threads with a round-robin line of lanes
 * (see rule_pool.h). One mutex guards the line, the lanes' queues and the
 * finished list; the threads sleep on one condition variable; finished
 * jobs reach the loop through one uv_async_t (libuv coalesces its sends,
 * so the loop drains the whole finished list per wake-up). */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "rule_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct rule_pool {
	uv_loop_t *loop;
	uv_async_t async;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t *tids;
	unsigned nthreads;
	bool stop;
	struct list line; /* lanes with waiting jobs and none running, in turn order */
	struct list done; /* finished jobs, in finishing order, for the loop */
	struct rule_pool_stats st;
	void (*close_cb)(void *);
	void *close_data;
};

/* The CPUs this process may run on (its affinity mask: taskset, a
 * container's cpuset), else the CPUs online. */
unsigned rule_pool_cores(void)
{
	cpu_set_t set;
	long n = -1;

	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		n = CPU_COUNT(&set);
	if (n < 1)
		n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		return 1;
	return n > RULE_POOL_THREADS_MAX ? RULE_POOL_THREADS_MAX : (unsigned)n;
}

static int64_t rule_pool__cpu_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
		return 0;
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}


static void *rule_pool__thread(void *arg)
{
	struct rule_pool *pool = arg;
	struct rule_pool_lane *lane;
	struct rule_pool_job *job;
	int64_t t0;

	pthread_mutex_lock(&pool->mu);
	for (;;) {
		while (list_empty(&pool->line) && !pool->stop)
			pthread_cond_wait(&pool->cv, &pool->mu);
		if (list_empty(&pool->line))
			break; /* stopping, and every job submitted has started */
		lane = list_entry(list_first(&pool->line), struct rule_pool_lane, link);
		list_remove(&lane->link);
		job = list_entry(list_first(&lane->waiting), struct rule_pool_job, link);
		list_remove(&job->link);
		lane->running = true;
		pool->st.waiting--;
		pool->st.running++;
		pthread_mutex_unlock(&pool->mu);

		t0 = rule_pool__cpu_ns();
		job->work(job);
		job->cpu_ns = rule_pool__cpu_ns() - t0;

		pthread_mutex_lock(&pool->mu);
		lane->running = false;
		lane->jobs++;
		if (!list_empty(&lane->waiting))
			list_append(&pool->line, &lane->link); /* to the back of the line */
		list_append(&pool->done, &job->link);
		pool->st.running--;
		pool->st.cpu_ns += job->cpu_ns;
		if (!list_empty(&lane->waiting))
			pthread_cond_signal(&pool->cv);
		pthread_mutex_unlock(&pool->mu);
		uv_async_send(&pool->async);
		pthread_mutex_lock(&pool->mu);
	}
	pthread_mutex_unlock(&pool->mu);
	return NULL;
}

/* On the loop: runs the done functions of the finished jobs. */
static void rule_pool__drain(struct rule_pool *pool)
{
	struct list done = LIST_HEAD_INIT(done), *it, *nx;

	pthread_mutex_lock(&pool->mu);
	list_splice_tail(&done, &pool->done);
	pthread_mutex_unlock(&pool->mu);
	list_for_each_safe(it, nx, &done) {
		struct rule_pool_job *job = list_entry(it, struct rule_pool_job, link);

		list_remove(&job->link);
		pool->st.done++;
		job->done(job);
	}
}

static void rule_pool__async_cb(uv_async_t *a)
{
	rule_pool__drain(a->data);
}

int rule_pool_start(uv_loop_t *loop, unsigned threads, struct rule_pool **out, char *err,
		    size_t errlen)
{
	struct rule_pool *pool;
	unsigned i;
	int rc;

	*out = NULL;
	if (!threads)
		threads = rule_pool_cores();
	if (threads > RULE_POOL_THREADS_MAX)
		threads = RULE_POOL_THREADS_MAX;
	pool = calloc(1, sizeof(*pool));
	if (!pool || !(pool->tids = calloc(threads, sizeof(*pool->tids)))) {
		free(pool);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pool->loop = loop;
	list_init(&pool->line);
	list_init(&pool->done);
	pthread_mutex_init(&pool->mu, NULL);
	pthread_cond_init(&pool->cv, NULL);
	if ((rc = uv_async_init(loop, &pool->async, rule_pool__async_cb)) < 0) {
		snprintf(err, errlen, "rule threads: %s", uv_strerror(rc));
		goto fail;
	}
	pool->async.data = pool;
	for (i = 0; i < threads; i++) {
		if ((rc = pthread_create(&pool->tids[i], NULL, rule_pool__thread, pool)) != 0) {
			snprintf(err, errlen, "rule threads: cannot start thread %u of %u: %s", i + 1,
				 threads, strerror(rc));
			break;
		}
		pool->nthreads++;
	}
	pool->st.threads = pool->nthreads;
	if (pool->nthreads == threads) {
		*out = pool;
		return 0;
	}
	/* fewer threads than asked: a configuration the operator should see */
	rule_pool_close(pool, NULL, NULL);
	return -1;
fail:
	pthread_cond_destroy(&pool->cv);
	pthread_mutex_destroy(&pool->mu);
	free(pool->tids);
	free(pool);
	return -1;
}

void rule_pool_lane_init(struct rule_pool_lane *lane)
{
	memset(lane, 0, sizeof(*lane));
	list_init(&lane->waiting);
	list_init(&lane->link);
}

void rule_pool_submit(struct rule_pool *pool, struct rule_pool_lane *lane,
		      struct rule_pool_job *job)
{
	job->lane = lane;
	job->cpu_ns = 0;
	list_init(&job->link);
	pthread_mutex_lock(&pool->mu);
	list_append(&lane->waiting, &job->link);
	pool->st.submitted++;
	pool->st.waiting++;
	if (!lane->running && !list_linked(&lane->link)) {
		list_append(&pool->line, &lane->link);
		pthread_cond_signal(&pool->cv);
	}
	pthread_mutex_unlock(&pool->mu);
}

void rule_pool_stats(struct rule_pool *pool, struct rule_pool_stats *out)
{
	pthread_mutex_lock(&pool->mu);
	*out = pool->st;
	pthread_mutex_unlock(&pool->mu);
}

static void rule_pool__closed(uv_handle_t *h)
{
	struct rule_pool *pool = h->data;
	void (*cb)(void *) = pool->close_cb;
	void *data = pool->close_data;

	pthread_cond_destroy(&pool->cv);
	pthread_mutex_destroy(&pool->mu);
	free(pool->tids);
	free(pool);
	if (cb)
		cb(data);
}

void rule_pool_close(struct rule_pool *pool, void (*cb)(void *data), void *data)
{
	unsigned i;

	pthread_mutex_lock(&pool->mu);
	pool->stop = true;
	pthread_cond_broadcast(&pool->cv);
	pthread_mutex_unlock(&pool->mu);
	/* A job's work is bounded by the rule's own limits (time_ms per call),
	 * so joining waits at most that long. */
	for (i = 0; i < pool->nthreads; i++)
		pthread_join(pool->tids[i], NULL);
	rule_pool__drain(pool);
	pool->close_cb = cb;
	pool->close_data = data;
	uv_close((uv_handle_t *)&pool->async, rule_pool__closed);
}
