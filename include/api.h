/* api: the admin HTTP API (issue 9 item 2), the operator's views as JSON
 * under /admin/api/ on the daemon's listener. Each route runs the same
 * function as the CLI (views.h, history.h) on a database worker (db.h)
 * and answers from the loop thread with what it wrote, byte for byte.
 *
 * Routes (api_routes() fills them in, in this match order):
 *   GET  /admin/api/offers[?failing=1&offer=N]           views_offers
 *   GET  /admin/api/polls[?offer=&variant=&outcome=&failed=1&since=]
 *                                                        views_polls
 *   GET  /admin/api/polls/hourly                         views_poll_hours
 *   GET  /admin/api/polls/{run}                          views_poll
 *   GET  /admin/api/postbacks[?advertiser=&errors=1&since=&lead=]
 *                                                        views_postbacks
 *   GET  /admin/api/postbacks/{id}                       views_postback
 *   GET  /admin/api/leads/{id}       exactly `leadsync lead show ID --json`
 *   POST /admin/api/offers/{offer}/check?variant=V      poll the pair now
 * Lists also take before=ID and limit=N (keyset paging, as the CLI's
 * --before and --limit). Query parameters carry the CLI's option names;
 * flags take 1/true or 0/false; since an ISO-8601 time or an age (30m).
 * A parameter the route does not know, or a bad value, is 400 naming it.
 *
 * check makes the pair due now (scheduler_sql_due_now): the scheduler of
 * this daemon, or of any daemon on the database, claims it at its next
 * tick (1 s by default) and polls it as usual, writing its poll_runs row.
 * 202 {"queued":true,"offer":N,"variant":"V"}; 404 for an unknown offer or
 * one that names no rule; 409 when the offer is disabled or the pair is
 * being polled right now; 400 for a variant that is not processing,
 * accepted or dates.
 *
 * Auth: every route needs "Authorization: Bearer <LEADSYNC_ADMIN_TOKEN>",
 * compared in constant time (listener_req_bearer_is): missing or wrong is
 * 401 with "WWW-Authenticate: Bearer"; with no token set the API is
 * closed: 403. The token is never logged.
 *
 * Answers: 200 application/json (the view's text), Cache-Control:
 * no-store; errors {"ok":false,"error":"..."}: 400 bad parameter, 404 no
 * such run/postback/lead, 500 database error, 503 (Retry-After) database
 * unreachable. Loop thread only. */
#ifndef LEADSYNC_API_H
#define LEADSYNC_API_H

#include "db.h"
#include "listener.h"

#define API_NROUTES 8

struct api;

/* One route's data: its row of the route table, and the API it belongs
 * to (private). */
struct api_route {
	struct api *api;
	int row;
};

/* The routes' data; must outlive the listener. token NULL or "": closed.
 * The caller sets db and token; api_routes() sets the rest. */
struct api {
	struct db *db;
	const char *token;
	struct api_route slot[API_NROUTES];
};

/* Fills out[0 .. API_NROUTES) with the API's routes on a. Returns
 * API_NROUTES. */
size_t api_routes(struct api *a, struct listener_route *out);

#endif
