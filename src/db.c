/* db: the pool of database worker threads behind the loop (see db.h). */
#include "db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "list.h"
#include "log.h"
#include "store.h"

struct db_worker {
	struct db *d;
	uv_thread_t thread;
	bool started;
	unsigned idx;
	PGconn *conn;
	uint64_t retry_at; /* ms (uv_hrtime), next connect attempt */
	uint64_t delay;    /* ms, back-off after the next failure */
	enum store_fault fault; /* of the last connect attempt, logged */
	char fault_msg[1024]; /* the configuration fault logged last */
	struct db_job **batch;
	struct db_job **rerun;
};

struct db {
	uv_loop_t *loop;
	uv_async_t async;
	uv_mutex_t mu;
	uv_cond_t cond;
	/* under mu */
	struct list queue; /* db_job.link: queued, in submission order */
	size_t qlen;
	struct list done;  /* db_job.link: done, waiting for the loop */
	unsigned exited;
	unsigned up;
	bool stop;
	struct db_stats st;
	/* loop thread */
	struct metrics_hist jobs_time; /* submission to completion */
	bool closing;
	bool joined;
	db_close_cb close_cb;
	void *close_data;
	/* fixed after db_open */
	char *conninfo;
	struct db_config cfg;
	struct db_worker *w;
	unsigned nw;
};

static uint64_t db__now_ms(void)
{
	return uv_hrtime() / 1000000;
}

/* ------------------------------------------------------------ workers */

/* Takes the next job and, when it is a group job, the queued jobs of the
 * same group function after it, in queue order. Called under mu. */
static size_t db__take(struct db *d, struct db_job **out)
{
	struct db_job *j = list_entry(list_first(&d->queue), struct db_job, link);
	struct list *it, *nx;
	size_t n = 0;

	list_remove(&j->link);
	out[n++] = j;
	if (j->group) {
		list_for_each_safe(it, nx, &d->queue) {
			struct db_job *cur = list_entry(it, struct db_job, link);

			if (n >= d->cfg.group_max)
				break;
			if (cur->group == j->group) {
				list_remove(&cur->link);
				out[n++] = cur;
			}
		}
	}
	d->qlen -= n;
	return n;
}

static void db__set_up(struct db_worker *w, bool up)
{
	struct db *d = w->d;

	uv_mutex_lock(&d->mu);
	if (up && !w->conn)
		d->up++;
	else if (!up && w->conn)
		d->up--;
	if (up)
		d->st.connects++;
	uv_mutex_unlock(&d->mu);
}

/* Server messages outside a query (a connection terminated by the server)
 * go to the log as one line, not to stderr as libpq would print them. */
static void db__notice(void *arg, const char *msg)
{
	struct db_worker *w = arg;
	char q[512];

	log_warn("database notice", "worker=%u text=%s", w->idx, log_quote(q, sizeof(q), msg));
}

/* Connects when the back-off allows. Returns 0 with w->conn live, or -1
 * with a message in err. */
static int db__connect(struct db_worker *w, char *err, size_t errlen)
{
	struct db *d = w->d;
	uint64_t now = db__now_ms();
	enum store_fault fault;
	char msg[1024]; /* libpq's whole message, for the log */
	PGconn *c = NULL;

	if (w->conn)
		return 0;
	if (now < w->retry_at) {
		snprintf(err, errlen, "database unreachable (next attempt in %llu ms)",
			 (unsigned long long)(w->retry_at - now));
		return -1;
	}
	if (store_connect_fault(d->conninfo, &c, &fault, msg, sizeof(msg)) < 0) {
		size_t n = strlen(msg) < errlen ? strlen(msg) : errlen - 1;

		memcpy(err, msg, n); /* cut to the job's message size */
		err[n] = '\0';
		w->retry_at = db__now_ms() + w->delay;
		/* once per change: a wrong role or database is logged with
		 * libpq's message (masked) when it first appears or says
		 * something new, a server that is down once as unreachable */
		if (fault == STORE_FAULT_CONFIG &&
		    (w->fault != STORE_FAULT_CONFIG || strcmp(w->fault_msg, msg) != 0)) {
			char q[1200];

			log_error("database configuration is wrong", "worker=%u retry_ms=%llu error=%s",
				  w->idx, (unsigned long long)w->delay, log_quote(q, sizeof(q), msg));
			memcpy(w->fault_msg, msg, sizeof(msg));
		} else if (fault != STORE_FAULT_CONFIG && w->fault != STORE_FAULT_DOWN) {
			log_warn("database unreachable", "worker=%u retry_ms=%llu", w->idx,
				 (unsigned long long)w->delay);
		}
		w->fault = fault == STORE_FAULT_CONFIG ? STORE_FAULT_CONFIG : STORE_FAULT_DOWN;
		w->delay = w->delay * 2 < d->cfg.retry_max_ms ? w->delay * 2 : d->cfg.retry_max_ms;
		return -1;
	}
	if (w->fault != STORE_FAULT_NONE)
		log_info("database reachable again", "worker=%u", w->idx);
	w->fault = STORE_FAULT_NONE;
	w->fault_msg[0] = '\0';
	w->delay = d->cfg.retry_min_ms;
	w->retry_at = 0;
	PQsetNoticeProcessor(c, db__notice, w);
	db__set_up(w, true);
	w->conn = c;
	return 0;
}

static void db__disconnect(struct db_worker *w)
{
	if (!w->conn)
		return;
	db__set_up(w, false);
	PQfinish(w->conn);
	w->conn = NULL;
}

static void db__fail_all(struct db_job **jobs, size_t n, int status, const char *msg)
{
	size_t i;

	for (i = 0; i < n; i++) {
		jobs[i]->status = status;
		snprintf(jobs[i]->err, sizeof(jobs[i]->err), "%s", msg);
	}
}

/* One call of the jobs' function on the live connection. */
static void db__call(struct db_worker *w, struct db_job **jobs, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		jobs[i]->status = DB_EFAIL;
		snprintf(jobs[i]->err, sizeof(jobs[i]->err), "the job set no status");
	}
	if (jobs[0]->group) {
		jobs[0]->group(w->conn, jobs, n);
	} else {
		jobs[0]->err[0] = '\0';
		jobs[0]->status = jobs[0]->run(w->conn, jobs[0]);
	}
	if (PQstatus(w->conn) == CONNECTION_OK && PQtransactionStatus(w->conn) != PQTRANS_IDLE) {
		log_error("database job left a transaction open", "worker=%u", w->idx);
		PQclear(PQexec(w->conn, "ROLLBACK"));
	}
}

/* Runs what was taken. A connection found broken after the call is
 * replaced at once and the jobs that did not succeed run once more: a
 * server restarted while we were idle costs no failed request. What still
 * fails on a broken connection is DB_EDOWN. */
static void db__process(struct db_worker *w, struct db_job **jobs, size_t n)
{
	char err[DB_ERR_MAX];
	size_t i, m = 0;

	if (db__connect(w, err, sizeof(err)) < 0) {
		db__fail_all(jobs, n, DB_EDOWN, err);
		return;
	}
	db__call(w, jobs, n);
	if (PQstatus(w->conn) == CONNECTION_OK)
		return;
	db__disconnect(w);
	for (i = 0; i < n; i++)
		if (jobs[i]->status != DB_OK)
			w->rerun[m++] = jobs[i];
	if (!m)
		return;
	w->retry_at = 0;
	if (db__connect(w, err, sizeof(err)) < 0) {
		db__fail_all(w->rerun, m, DB_EDOWN, err);
		return;
	}
	db__call(w, w->rerun, m);
	if (PQstatus(w->conn) == CONNECTION_OK)
		return;
	db__disconnect(w);
	for (i = 0; i < m; i++)
		if (w->rerun[i]->status != DB_OK) {
			w->rerun[i]->status = DB_EDOWN;
			snprintf(w->rerun[i]->err, sizeof(w->rerun[i]->err),
				 "database connection lost");
		}
}

static void db__worker(void *arg)
{
	struct db_worker *w = arg;
	struct db *d = w->d;
	char err[DB_ERR_MAX];

	/* connect at start, so the first request does not pay for it */
	(void)db__connect(w, err, sizeof(err));
	for (;;) {
		size_t n, i;

		uv_mutex_lock(&d->mu);
		while (list_empty(&d->queue) && !d->stop)
			uv_cond_wait(&d->cond, &d->mu);
		if (list_empty(&d->queue)) {
			uv_mutex_unlock(&d->mu);
			break;
		}
		n = db__take(d, w->batch);
		d->st.groups++;
		uv_mutex_unlock(&d->mu);

		db__process(w, w->batch, n);

		uv_mutex_lock(&d->mu);
		for (i = 0; i < n; i++) {
			struct db_job *j = w->batch[i];

			d->st.jobs++;
			if (j->status == DB_EFAIL)
				d->st.failed++;
			else if (j->status != DB_OK)
				d->st.down++;
			list_append(&d->done, &j->link);
		}
		uv_mutex_unlock(&d->mu);
		uv_async_send(&d->async);
	}
	db__disconnect(w);
	uv_mutex_lock(&d->mu);
	d->exited++;
	uv_mutex_unlock(&d->mu);
	uv_async_send(&d->async);
}

/* ---------------------------------------------------------------- loop */

static void db__free(struct db *d)
{
	unsigned i;

	for (i = 0; i < d->nw; i++) {
		free(d->w[i].batch);
		free(d->w[i].rerun);
	}
	free(d->w);
	free(d->conninfo);
	uv_cond_destroy(&d->cond);
	uv_mutex_destroy(&d->mu);
	free(d);
}

static void db__closed_cb(uv_handle_t *h)
{
	struct db *d = h->data;

	if (d->close_cb)
		d->close_cb(d, d->close_data);
	db__free(d);
}

static void db__async_cb(uv_async_t *a)
{
	struct db *d = a->data;
	struct list done = LIST_HEAD_INIT(done), *it, *nx;
	unsigned exited, i;

	uv_mutex_lock(&d->mu);
	list_splice_tail(&done, &d->done);
	exited = d->exited;
	uv_mutex_unlock(&d->mu);
	list_for_each_safe(it, nx, &done) {
		struct db_job *j = list_entry(it, struct db_job, link);

		list_remove(&j->link);
		metrics_hist_observe(&d->jobs_time, (double)(uv_hrtime() - j->t_submit) / 1e9);
		j->done(j);
	}
	if (d->closing && !d->joined && exited == d->nw) {
		d->joined = true;
		for (i = 0; i < d->nw; i++)
			if (d->w[i].started)
				uv_thread_join(&d->w[i].thread);
		uv_close((uv_handle_t *)&d->async, db__closed_cb);
	}
}

int db_open(uv_loop_t *loop, const struct db_config *cfg, struct db **out, char *err,
	    size_t errlen)
{
	struct db *d = NULL;
	unsigned i;
	int rc = -1;

	*out = NULL;
	if (!cfg->conninfo || !*cfg->conninfo) {
		snprintf(err, errlen, "no database configured: set LEADSYNC_DB or --db");
		return -1;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		goto oom;
	d->loop = loop;
	list_init(&d->queue);
	list_init(&d->done);
	metrics_hist_init(&d->jobs_time, metrics_db_bounds, metrics_db_nbounds);
	d->cfg = *cfg;
	if (!d->cfg.workers)
		d->cfg.workers = 2;
	if (!d->cfg.queue_max)
		d->cfg.queue_max = 10000;
	if (!d->cfg.group_max)
		d->cfg.group_max = 500;
	if (!d->cfg.retry_min_ms)
		d->cfg.retry_min_ms = 100;
	if (!d->cfg.retry_max_ms)
		d->cfg.retry_max_ms = 5000;
	if (d->cfg.retry_max_ms < d->cfg.retry_min_ms)
		d->cfg.retry_max_ms = d->cfg.retry_min_ms;
	d->cfg.conninfo = NULL;
	d->conninfo = strdup(cfg->conninfo);
	d->w = calloc(d->cfg.workers, sizeof(*d->w));
	if (!d->conninfo || !d->w)
		goto oom;
	d->nw = d->cfg.workers;
	for (i = 0; i < d->nw; i++) {
		d->w[i].d = d;
		d->w[i].idx = i;
		d->w[i].delay = d->cfg.retry_min_ms;
		d->w[i].batch = calloc(d->cfg.group_max, sizeof(*d->w[i].batch));
		d->w[i].rerun = calloc(d->cfg.group_max, sizeof(*d->w[i].rerun));
		if (!d->w[i].batch || !d->w[i].rerun)
			goto oom;
	}
	if (uv_mutex_init(&d->mu) < 0) {
		snprintf(err, errlen, "cannot create a mutex");
		free(d->conninfo);
		free(d->w);
		free(d);
		return -1;
	}
	uv_cond_init(&d->cond);
	/* A connect to a host that does not answer must not hold a worker
	 * for minutes; the environment may say otherwise. */
	setenv("PGCONNECT_TIMEOUT", "5", 0);
	if (uv_async_init(loop, &d->async, db__async_cb) < 0) {
		snprintf(err, errlen, "cannot create the database wake-up handle");
		db__free(d);
		return -1;
	}
	d->async.data = d;
	for (i = 0; i < d->nw; i++) {
		if (uv_thread_create(&d->w[i].thread, db__worker, &d->w[i]) < 0) {
			snprintf(err, errlen, "cannot start database worker %u", i);
			goto fail;
		}
		d->w[i].started = true;
	}
	*out = d;
	return 0;
fail:
	/* the workers started stop once they see stop; the loop frees d */
	uv_mutex_lock(&d->mu);
	d->stop = true;
	d->exited += d->nw - i; /* the ones never started */
	uv_cond_broadcast(&d->cond);
	uv_mutex_unlock(&d->mu);
	d->closing = true;
	uv_async_send(&d->async);
	return rc;
oom:
	snprintf(err, errlen, "out of memory");
	if (d) {
		for (i = 0; d->w && i < d->cfg.workers; i++) {
			free(d->w[i].batch);
			free(d->w[i].rerun);
		}
		free(d->w);
		free(d->conninfo);
		free(d);
	}
	return -1;
}

int db_submit(struct db *d, struct db_job *job)
{
	int rc = -1;

	list_init(&job->link);
	job->t_submit = uv_hrtime();
	job->status = DB_OK;
	job->err[0] = '\0';
	uv_mutex_lock(&d->mu);
	if (d->stop || d->closing || d->qlen >= d->cfg.queue_max) {
		d->st.refused++;
		goto out;
	}
	list_append(&d->queue, &job->link);
	d->qlen++;
	uv_cond_signal(&d->cond);
	rc = 0;
out:
	uv_mutex_unlock(&d->mu);
	return rc;
}

bool db_up(const struct db *d)
{
	bool up;

	uv_mutex_lock((uv_mutex_t *)&d->mu);
	up = d->up > 0;
	uv_mutex_unlock((uv_mutex_t *)&d->mu);
	return up;
}

void db_stats(const struct db *d, struct db_stats *out)
{
	uv_mutex_lock((uv_mutex_t *)&d->mu);
	*out = d->st;
	out->queued = d->qlen;
	out->workers_up = d->up;
	uv_mutex_unlock((uv_mutex_t *)&d->mu);
}

const struct metrics_hist *db_job_times(const struct db *d)
{
	return &d->jobs_time;
}

void db_close(struct db *d, db_close_cb cb, void *data)
{
	d->closing = true;
	d->close_cb = cb;
	d->close_data = data;
	uv_mutex_lock(&d->mu);
	d->stop = true;
	uv_cond_broadcast(&d->cond);
	uv_mutex_unlock(&d->mu);
	/* the async callback joins the workers once all have exited */
	uv_async_send(&d->async);
}
