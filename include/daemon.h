/* daemon: `leadsync run`: one libuv loop holding the database pool, the
 * HTTP listener and its routes, and (later) the CRM poller.
 *
 * Routes, in match order:
 *   GET  /healthz               200 {"ok":true,"loop":"up","db":"up"} when the
 *                               database answers a query now (the answer
 *                               comes from the loop), else 503 with
 *                               Retry-After
 *   POST /api/leads             lead intake (intake.h)
 *   GET  /click/{offer}         click redirect (click.h)
 *   GET|POST /{api_key}/s2s     postbacks (postback.h)
 *   POST /{api_key}             postbacks with a JSON body
 *   GET  /readyz                200 {"ok":true,"state":"serving"}; 503 with
 *                               "starting" until the database pool first
 *                               connects, "draining" from the stop on
 *   GET  /metrics               Prometheus text format 0.0.4 (metrics.h);
 *                               no token: bind the listener where only the
 *                               scraper and the advertisers reach it
 *   /admin/api/...              the admin API (api.h), behind the token
 *
 * Stop (SIGTERM, SIGINT, or daemon_stop()): the listener stops accepting
 * and answers what is in flight (each postback after its commit), the
 * postback log's backlog is written (postback_close: dropped only with the
 * database down or past its deadline), the database workers finish
 * their queue and disconnect, and the loop ends. A second signal while
 * stopping exits at once. SIGPIPE is ignored. With the drain setting,
 * the first signal only drains (daemon_drain) for that long, then stops;
 * a second signal while draining stops at once.
 *
 * daemon_start()/daemon_stop() run the same pieces on a caller's loop
 * (tests run them in-process); daemon_run() is the whole program. Loop
 * thread only. */
#ifndef LEADSYNC_DAEMON_H
#define LEADSYNC_DAEMON_H

#include <stddef.h>
#include <uv.h>

#include "listener.h"
#include "poller.h"
#include "settings.h"
#include "timers.h"

struct daemon;

struct daemon_config {
	const char *db;          /* libpq conninfo; required */
	const char *listen;      /* "host:port"; port 0 picks one */
	const char *admin_token; /* NULL or "": intake and admin API closed */
	unsigned db_workers;     /* [2] */
	size_t db_queue;         /* [20000] */
	size_t commit_batch;     /* [500] */
	unsigned signature_window_s; /* postback signatures (pbauth.h) [300] */
	struct listener_limits limits; /* 0 fields: the listener's defaults */
	const struct timers_config *timers; /* hold expiry, reject-after, pruning
	                                     * (timers.h); NULL: none (tests) */
	const struct poller_config *poller; /* CRM polling (poller.h; its db is
	                                     * the daemon's pool); NULL: none */
};

/* Starts the pool and the listener on loop (strings are copied). Returns 0
 * and *out, or -1 with err set (what was started is closed by the loop).
 *
 * Start order: every check that can fail comes before any work is
 * scheduled, so a start that fails has written nothing. First, without the
 * loop: the poller's rules folder, the database (it answers, and holds
 * every embedded migration) and the poller's time zone (PostgreSQL knows
 * it: pg_timezone_names). Then the pool, the
 * postback log and the listener's socket (bound: a port in use fails
 * here). The timers and the poller come last; a poller that cannot start
 * stops the timers before their first round. */
__attribute__((warn_unused_result))
int daemon_start(uv_loop_t *loop, const struct daemon_config *cfg, struct daemon **out,
		 char *err, size_t errlen);

/* The port the listener bound. */
int daemon_port(const struct daemon *d);

/* /readyz answers 503 "draining" from now on; everything else goes on
 * (the stop that follows is daemon_stop). */
void daemon_drain(struct daemon *d);

/* Graceful stop as above; cb (may be NULL) runs from the loop when all is
 * closed, and d is freed after it. Call once. */
void daemon_stop(struct daemon *d, void (*cb)(void *data), void *data);

/* `leadsync run`: daemon_start() from the settings, signals, the loop until
 * stopped. Returns the exit code: 0 after a clean stop, 1 when it could
 * not start (logged as "cannot start" with the reason; nothing written). */
int daemon_run(const struct settings *s);

#endif
