/* daemon: `leadsync run`: the loop, the database pool, the listener and
 * its routes, signals and the graceful stop (see daemon.h). */
#include "daemon.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_page.h"
#include "api.h"
#include "click.h"
#include "db.h"
#include "intake.h"
#include "log.h"
#include "metrics.h"
#include "postback.h"
#include "store.h"
#include "timers.h"

#define DAEMON_NROUTES (8 + ADMIN_PAGE_NROUTES + API_NROUTES)

/* What /readyz answers: 503 until the database pool first holds a live
 * connection, 200 while serving, 503 again from the stop signal on. */
enum daemon_phase { DAEMON_STARTING, DAEMON_SERVING, DAEMON_DRAINING };

struct daemon {
	uv_loop_t *loop;
	struct db *db;
	struct listener *l;
	struct postback *pb;
	struct timers *timers;
	struct poller *poller;
	struct intake intake;
	struct api api;
	char *token;
	struct listener_route routes[DAEMON_NROUTES];
	bool stopping;
	enum daemon_phase phase;
	void (*stop_cb)(void *data);
	void *stop_data;
};

/* ------------------------------------------------------------- healthz */

struct daemon_health {
	struct db_job job;
	struct listener_req *req;
};

static int daemon__health_run(PGconn *c, struct db_job *j)
{
	PGresult *r = PQexec(c, "SELECT 1");
	int rc = PQresultStatus(r) == PGRES_TUPLES_OK ? DB_OK : DB_EFAIL;

	if (rc != DB_OK)
		snprintf(j->err, sizeof(j->err), "%s", PQerrorMessage(c));
	PQclear(r);
	return rc;
}

/* The answer comes from the loop once the database answered: a 200 says
 * both are up. */
static void daemon__health_answer(struct listener_req *req, bool up)
{
	static const char ok[] = "{\"ok\":true,\"loop\":\"up\",\"db\":\"up\"}";
	static const char down[] =
		"{\"ok\":false,\"loop\":\"up\",\"db\":\"down\",\"error\":\"database unreachable\"}";

	if (up)
		listener_respond(req, 200, "application/json", ok, sizeof(ok) - 1,
				 "Cache-Control: no-store\r\n");
	else
		listener_respond(req, 503, "application/json", down, sizeof(down) - 1,
				 "Retry-After: 5\r\nCache-Control: no-store\r\n");
}

static void daemon__health_done(struct db_job *j)
{
	struct daemon_health *h = j->data;

	daemon__health_answer(h->req, j->status == DB_OK);
	free(h);
}

static void daemon__health(struct listener_req *req, void *data)
{
	struct daemon *d = data;
	struct daemon_health *h = calloc(1, sizeof(*h));

	if (!h) {
		listener_respond_error(req, 500, "out of memory");
		return;
	}
	h->req = req;
	h->job.run = daemon__health_run;
	h->job.done = daemon__health_done;
	h->job.data = h;
	if (db_submit(d->db, &h->job) < 0) {
		free(h);
		daemon__health_answer(req, false);
	}
}

/* -------------------------------------------------------- readyz, metrics */

static enum daemon_phase daemon__phase(struct daemon *d)
{
	if (d->phase == DAEMON_STARTING && db_up(d->db))
		d->phase = DAEMON_SERVING;
	return d->phase;
}

static void daemon__ready(struct listener_req *req, void *data)
{
	static const char *const body[] = {
		[DAEMON_STARTING] = "{\"ok\":false,\"state\":\"starting\"}",
		[DAEMON_SERVING] = "{\"ok\":true,\"state\":\"serving\"}",
		[DAEMON_DRAINING] = "{\"ok\":false,\"state\":\"draining\"}",
	};
	enum daemon_phase ph = daemon__phase(data);

	listener_respond(req, ph == DAEMON_SERVING ? 200 : 503, "application/json", body[ph],
			 strlen(body[ph]), "Cache-Control: no-store\r\n");
}

#define DAEMON_METRICS_MAX ((size_t)16 << 20)

/* Snapshots of every module's counters, rendered at once (loop thread). */
static void daemon__metrics(struct listener_req *req, void *data)
{
	struct daemon *d = data;
	struct metrics_source src = { 0 };
	struct poller_stats pst;
	struct http_client_stats hst;
	struct db_stats dst;
	struct listener_stats lst;
	struct postback_stats bst;
	struct timers_stats tst;
	struct buf out;

	if (d->poller) {
		poller_stats(d->poller, &pst);
		src.poller = &pst;
		src.polls = poller_counts(d->poller, &src.npolls);
		if (poller_http(d->poller)) {
			http_client_stats(poller_http(d->poller), &hst);
			src.http = &hst;
			src.hosts = http_client_hosts(poller_http(d->poller), &src.nhosts);
		}
	}
	db_stats(d->db, &dst);
	src.db = &dst;
	src.db_jobs = db_job_times(d->db);
	src.db_up = db_up(d->db);
	if (d->l) {
		listener_stats(d->l, &lst);
		src.listener = &lst;
	}
	postback_stats(d->pb, &bst);
	src.postback = &bst;
	src.postbacks = postback_counts(d->pb, &src.npostbacks);
	if (d->timers) {
		timers_stats(d->timers, &tst);
		src.timers = &tst;
	}
	src.ready = daemon__phase(d) == DAEMON_SERVING;
	buf_init(&out, DAEMON_METRICS_MAX);
	if (metrics_render(&out, &src) < 0)
		listener_respond_error(req, 500, "metrics too large");
	else
		listener_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", out.p,
				 out.len, "Cache-Control: no-store\r\n");
	buf_release(&out);
}

/* ---------------------------------------------------------------- stop */

void daemon_drain(struct daemon *d)
{
	d->phase = DAEMON_DRAINING;
}

static void daemon__free(struct daemon *d)
{
	free(d->token);
	free(d);
}

static void daemon__db_closed(struct db *db, void *data)
{
	struct daemon *d = data;
	void (*cb)(void *) = d->stop_cb;
	void *cb_data = d->stop_data;

	daemon__free(d);
	if (cb)
		cb(cb_data);
}

static void daemon__timers_closed(void *data)
{
	struct daemon *d = data;

	db_close(d->db, daemon__db_closed, d);
}

static void daemon__pb_closed(void *data)
{
	struct daemon *d = data;
	struct timers *t = d->timers;
	struct poller *p = d->poller;

	if (p) { /* in-flight polls finish (or are cut at the deadline) first */
		d->poller = NULL;
		poller_stop(p, daemon__pb_closed, d);
		return;
	}

	/* the poller stops here, before the database it writes to */
	d->timers = NULL;
	if (t)
		timers_close(t, daemon__timers_closed, d);
	else
		db_close(d->db, daemon__db_closed, d);
}

static void daemon__listener_closed(struct listener *l, void *data)
{
	struct daemon *d = data;

	d->l = NULL;
	postback_close(d->pb, daemon__pb_closed, d);
}

void daemon_stop(struct daemon *d, void (*cb)(void *data), void *data)
{
	d->stopping = true;
	d->phase = DAEMON_DRAINING;
	d->stop_cb = cb;
	d->stop_data = data;
	log_info("stopping: answering what is in flight", "component=%s", "daemon");
	listener_close(d->l, daemon__listener_closed, d);
}

/* --------------------------------------------------------------- start */

/* The checks that need no loop: the rules folder, a database that
 * answers and holds every migration, and a time zone it knows. They run
 * before anything is started, so a daemon that cannot start has scheduled
 * no work and written nothing. */
static int daemon__preflight(const struct daemon_config *cfg, char *err, size_t errlen)
{
	PGconn *c = NULL;
	int rc = -1;

	if (cfg->poller) {
		const char *rules = cfg->poller->rules_dir ? cfg->poller->rules_dir : "./rules";
		DIR *dir;

		dir = opendir(rules);
		if (!dir) {
			snprintf(err, errlen, "rules: cannot open folder '%s': %s", rules,
				 strerror(errno));
			goto out;
		}
		closedir(dir);
	}
	/* as db_open() does: a host that does not answer fails the start in
	 * 5 s unless the environment says otherwise. Any connect failure
	 * stops the start (exit 1; a supervisor restarts a database merely
	 * down): a wrong configuration (store_connect_fault) reads "wrong
	 * configuration (why)" with libpq's message, so it is not mistaken
	 * for one that is down. Once running, db.c retries both. */
	setenv("PGCONNECT_TIMEOUT", "5", 0);
	if (store_connect(cfg->db, &c, err, errlen) < 0 || store_check_migrated(c, err, errlen) < 0)
		goto out;
	/* PostgreSQL decides every zone (the dates variant's days): it must
	 * know this one */
	if (cfg->poller) {
		const char *tz = cfg->poller->tz && *cfg->poller->tz ? cfg->poller->tz : "UTC";
		int known = store_zone_known(c, tz, err, errlen);

		if (known < 0)
			goto out;
		if (!known) {
			snprintf(err, errlen, "tz: unknown time zone '%s'", tz);
			goto out;
		}
	}
	rc = 0;
out:
	PQfinish(c);
	return rc;
}

/* Closes what a failed start had started. The timers are stopped at once,
 * before the loop turns again, so none of their rounds runs; the rest
 * closes in the usual order from the loop. */
static void daemon__abort(struct daemon *d)
{
	d->stop_cb = NULL;
	if (d->timers) {
		timers_close(d->timers, NULL, NULL);
		d->timers = NULL;
	}
	if (d->l)
		listener_close(d->l, daemon__listener_closed, d);
	else
		postback_close(d->pb, daemon__pb_closed, d);
}

int daemon_start(uv_loop_t *loop, const struct daemon_config *cfg, struct daemon **out,
		 char *err, size_t errlen)
{
	struct db_config dc = { 0 };
	struct postback_config pc = { 0 };
	struct listener_config lc = { 0 };
	struct daemon *d;
	char msg[512];

	*out = NULL;
	if (daemon__preflight(cfg, err, errlen) < 0)
		return -1;
	d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	d->loop = loop;
	if (cfg->admin_token && *cfg->admin_token) {
		d->token = strdup(cfg->admin_token);
		if (!d->token) {
			snprintf(err, errlen, "out of memory");
			daemon__free(d);
			return -1;
		}
	}
	dc.conninfo = cfg->db;
	dc.workers = cfg->db_workers ? cfg->db_workers : 2;
	dc.queue_max = cfg->db_queue ? cfg->db_queue : 20000;
	dc.group_max = cfg->commit_batch ? cfg->commit_batch : 500;
	if (db_open(loop, &dc, &d->db, err, errlen) < 0) {
		daemon__free(d);
		return -1;
	}
	pc.db = d->db;
	pc.signature_window_s = cfg->signature_window_s;
	if (postback_open(loop, &pc, &d->pb, err, errlen) < 0) {
		db_close(d->db, NULL, NULL);
		daemon__free(d);
		return -1;
	}
	d->intake.db = d->db;
	d->intake.token = d->token;
	d->routes[0] = (struct listener_route){ LISTENER_GET, "/healthz", daemon__health, d };
	d->routes[1] = (struct listener_route){ LISTENER_POST, "/api/leads", intake_handle, &d->intake };
	d->routes[2] = (struct listener_route){ LISTENER_GET, "/click/{offer}", click_handle, d->db };
	d->routes[3] = (struct listener_route){ LISTENER_GET | LISTENER_POST, "/{api_key}/s2s",
						postback_handle, d->pb };
	d->routes[4] = (struct listener_route){ LISTENER_POST, "/{api_key}", postback_handle, d->pb };
	d->routes[5] = (struct listener_route){ LISTENER_GET, "/readyz", daemon__ready, d };
	d->routes[6] = (struct listener_route){ LISTENER_GET, "/metrics", daemon__metrics, d };
	/* the operator page: static, public; its data calls carry the token */
	memcpy(&d->routes[7], admin_page_routes, sizeof(admin_page_routes));
	lc.addr = cfg->listen ? cfg->listen : "127.0.0.1:8080";
	lc.routes = d->routes;
	d->api.db = d->db;
	d->api.token = d->token;
	lc.nroutes = 7 + ADMIN_PAGE_NROUTES +
		     api_routes(&d->api, &d->routes[7 + ADMIN_PAGE_NROUTES]);
	lc.limits = cfg->limits;
	lc.refused = postback_refused;
	lc.refused_data = d->pb;
	/* the socket is bound before any timer or poller exists: a port in use
	 * stops the start with nothing scheduled (connections wait in the
	 * backlog until the loop runs) */
	if (listener_start(loop, &lc, &d->l, msg, sizeof(msg)) < 0) {
		snprintf(err, errlen, "%s", msg);
		d->l = NULL;
		daemon__abort(d);
		return -1;
	}
	if (cfg->timers && timers_start(loop, d->db, cfg->timers, &d->timers, err, errlen) < 0) {
		d->timers = NULL;
		daemon__abort(d);
		return -1;
	}
	/* last: its scheduler claims pairs as soon as the loop runs */
	if (cfg->poller) {
		struct poller_config poc = *cfg->poller;

		poc.db = d->db;
		if (poller_start(loop, &poc, &d->poller, err, errlen) < 0) {
			d->poller = NULL;
			daemon__abort(d);
			return -1;
		}
	}
	*out = d;
	return 0;
}

int daemon_port(const struct daemon *d)
{
	return listener_port(d->l);
}

/* ----------------------------------------------------------------- run */

struct daemon_main {
	uv_signal_t term, intr, hup;
	uv_timer_t drain;
	uint64_t drain_ms;
	struct daemon *d;
	bool draining;
	bool stopping;
};

static void daemon__signal_closed(uv_handle_t *h)
{
}

static void daemon__stopped(void *data)
{
	struct daemon_main *m = data;

	m->d = NULL;
	uv_close((uv_handle_t *)&m->term, daemon__signal_closed);
	uv_close((uv_handle_t *)&m->intr, daemon__signal_closed);
	uv_close((uv_handle_t *)&m->hup, daemon__signal_closed);
	uv_close((uv_handle_t *)&m->drain, daemon__signal_closed);
	log_info("stopped", "component=%s", "daemon");
}

/* SIGHUP: reload the rules; one that no longer loads keeps its version. */
static void daemon__hup(uv_signal_t *s, int signum)
{
	struct daemon_main *m = s->data;

	if (m->d && m->d->poller && !m->stopping)
		log_info("signal: rules reloaded", "failed=%d", poller_reload_rules(m->d->poller));
}

static void daemon__stop_now(struct daemon_main *m, int signum)
{
	m->stopping = true;
	uv_timer_stop(&m->drain);
	log_info("signal: stopping", "signal=%d", signum);
	daemon_stop(m->d, daemon__stopped, m);
}

static void daemon__drained(uv_timer_t *t)
{
	daemon__stop_now(t->data, 0);
}

/* The first signal drains for drain_ms (/readyz answers 503, all else
 * goes on) then stops; a signal while draining stops at once, gracefully;
 * one while stopping exits. */
static void daemon__signal(uv_signal_t *s, int signum)
{
	struct daemon_main *m = s->data;

	if (m->stopping) {
		log_warn("second signal: exiting now", "signal=%d", signum);
		exit(1);
	}
	if (m->draining || !m->drain_ms) {
		daemon__stop_now(m, signum);
		return;
	}
	m->draining = true;
	daemon_drain(m->d);
	log_info("signal: draining", "signal=%d drain_ms=%" PRIu64, signum, m->drain_ms);
	uv_timer_start(&m->drain, daemon__drained, m->drain_ms, 0);
}

int daemon_run(const struct settings *s)
{
	struct daemon_config cfg = { 0 };
	struct daemon_main m = { 0 };
	struct timers_config tc;
	struct poller_config poc;
	uv_loop_t loop;
	char err[512];
	int rc = 1;

	signal(SIGPIPE, SIG_IGN);
	if (uv_loop_init(&loop) < 0) {
		log_error("cannot start the event loop", "component=%s", "daemon");
		return 1;
	}
	cfg.db = s->db;
	cfg.listen = s->listen;
	cfg.limits.max_connections = (unsigned)s->max_connections;
	cfg.limits.max_connections_per_ip = (unsigned)s->max_connections_per_ip;
	cfg.admin_token = s->admin_token;
	cfg.db_workers = (unsigned)s->db_workers;
	cfg.db_queue = (size_t)s->db_queue;
	cfg.commit_batch = (size_t)s->commit_batch;
	cfg.signature_window_s = (unsigned)s->postback_signature_window;
	timers_config_from_settings(s, &tc);
	cfg.timers = &tc;
	poller_config_from_settings(&poc, s);
	cfg.poller = &poc;
	if (daemon_start(&loop, &cfg, &m.d, err, sizeof(err)) < 0) {
		char q[600];

		log_error("cannot start", "error=%s", log_quote(q, sizeof(q), err));
		uv_run(&loop, UV_RUN_DEFAULT); /* closes what had started */
		goto out;
	}
	uv_signal_init(&loop, &m.term);
	uv_signal_init(&loop, &m.intr);
	uv_signal_init(&loop, &m.hup);
	uv_timer_init(&loop, &m.drain);
	m.drain_ms = (uint64_t)s->drain * 1000;
	m.term.data = m.intr.data = m.hup.data = m.drain.data = &m;
	uv_signal_start(&m.hup, daemon__hup, SIGHUP);
	uv_signal_start(&m.term, daemon__signal, SIGTERM);
	uv_signal_start(&m.intr, daemon__signal, SIGINT);
	log_info("listening", "addr=%s port=%d intake=%s", cfg.listen, daemon_port(m.d),
		 cfg.admin_token && *cfg.admin_token ? "on" : "off");
	uv_run(&loop, UV_RUN_DEFAULT);
	rc = 0;
out:
	if (uv_loop_close(&loop) != 0)
		log_warn("event loop closed with handles open", "component=%s", "daemon");
	return rc;
}
