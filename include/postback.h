/* postback: S2S postbacks from advertisers (DESIGN.md "Push", seed 000)
 * and the incoming-postback log.
 *
 * Routes (the daemon's table points them at postback_handle with the
 * struct postback as data):
 *   GET  /{api_key}/s2s?click_id=…&request_id=…&action=…&status=…
 *        [&price=…][&customer_id=…]
 *   POST /{api_key}/s2s   the same parameters as a JSON object or a form
 *   POST /{api_key}       the same, as a JSON object (a form is taken too)
 * A POST body's fields win over the query's; JSON values may be strings or
 * numbers ("request_id": 94583). HEAD is refused (405): a postback is
 * never recorded by a request that must not have side effects.
 *
 * Checks, in this order (the first that fails answers):
 *   403 unknown api key: the advertiser is looked up by key and the key
 *       compared in constant time;
 *   403 "source address not allowed", "signature missing", "signature
 *       mismatch", "signature expired": the advertiser's optional networks
 *       and signature ("Authentication" below);
 *   400 the request itself: malformed JSON, a value that is not valid UTF-8
 *       or holds NUL, a field too long, click_id not a UUID, price not an
 *       amount, missing parameters ("missing 'request_id', 'action'").
 *       Required: click_id, request_id, action, status; for status
 *       activate or deactivate (recurring customers) click_id, customer_id,
 *       status;
 *   404 unknown click_id; 403 a click of another advertiser's offer;
 *   404 deactivate of an unknown customer;
 *   400 unknown status word (quoted): the offer's status_words first, then
 *       seed 000's table (status_postback); unknown action (the goal's code);
 *       'price' missing for a percent goal; 'customer_id' missing for a
 *       recurring goal; activate/deactivate on an offer without a
 *       recurring goal;
 *   409 the lead refuses the change (lead_apply: e.g. approved -> hold, a
 *       deleted lead), the request_id belongs to another click or goal, a
 *       recurring lead of a customer that is not active.
 *
 * Meaning. hold (and its synonyms) -> status 2; approved -> accept (status
 * 6, payouts from the goal: fixed, or percent of price; computed when the
 * lead is approved, by lead_apply's approval mechanics, not at hold);
 * rejected -> 5 with the reason the word implies, else the offer's. An
 * offer word meaning 1..4 reads as hold, 6..11 as approved, 12 is refused. request_id is unique per
 * offer (the click's): a new one creates the lead (goal = action, base =
 * price, curr = the goal's currency, click, customer_id); a known one is
 * updated under its row lock; a status the lead already has is a duplicate
 * (200, "duplicate":true, nothing written but the log row, price ignored).
 * An approved lead that gets a rejected word is a chargeback: cancelled
 * with source 'chargeback'. activate/deactivate upsert the customer of the
 * click's offer (customers table); a second activate is a duplicate.
 *
 * Answers: 200 {"ok":true,"lead":N,"duplicate":false} (for customers
 * "lead":null plus "customer_id" and "active"), else {"ok":false,
 * "error":"..."}. 200 is sent only after the commit. Database unreachable:
 * 503 with Retry-After. An unexpected database error: 500.
 *
 * Authentication (pbauth.h, migration 010). The resolve query that looks
 * the advertiser up by key also matches the peer (pbauth_addr) against its
 * postback_sources (cidr[], parsed by PostgreSQL when written) and returns
 * its postback_secret, so neither costs a round trip or a cache that could
 * go stale. The signature header is parsed on the loop and its canonical
 * string copied only when the header is there; the worker checks it with
 * the secret (pbauth_check; the window is signature_window_s) and the copy
 * is freed once the postback is answered. A refusal is answered 403 with
 * the reason as the error, logged with outcome "forbidden", counted, and
 * logged as a line ("postback refused") at most once per second with the
 * count since the last. The secret goes into no answer, row or line.
 *
 * Group commit: each postback is a db job of one group function, so the
 * postbacks queued together are resolved with one query, applied in C
 * (lead_apply), written with one statement and committed once; each is
 * then answered on its own. A unique-key race with another transaction
 * retries the group; any other failure runs the group's postbacks one by
 * one, so one bad postback fails alone (500) and the others commit.
 *
 * The log (postbacks_in): one row per request, good or bad, with its time,
 * remote address, method, path with the key replaced by three asterisks,
 * query and body (cut to POSTBACK_LOG_QUERY_MAX / POSTBACK_LOG_BODY_MAX
 * bytes, bytes that are not UTF-8 written as \xNN), advertiser, HTTP
 * status, outcome (created, updated, chargeback, duplicate, activated,
 * deactivated, refused, invalid, forbidden, error, unavailable), error text
 * and lead.
 * It is written in the same transaction as the change it records; when the
 * change fails, it is written alone; while the database is unreachable, the
 * rows of the 503s wait in memory (up to backlog_max rows and
 * backlog_bytes_max bytes; past that the newest are lost) and are
 * written when it is back. Requests the listener refuses itself (413 and
 * the like, 503 at the connection cap with outcome unavailable) are logged
 * through postback_refused().
 *
 * Loop thread only, except where db.h says otherwise. */
#ifndef LEADSYNC_POSTBACK_H
#define LEADSYNC_POSTBACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "db.h"
#include "listener.h"

#define POSTBACK_LOG_QUERY_MAX 4096
#define POSTBACK_LOG_BODY_MAX 8192

struct postback;

struct postback_config {
	struct db *db;
	size_t backlog_max;      /* log rows kept while the database is down [10000] */
	size_t backlog_bytes_max; /* and the memory they may hold [32 MiB] */
	unsigned retry_after_s;  /* Retry-After of a 503 [5] */
	unsigned signature_window_s; /* a signature's t may be this far from the
	                              * clock (pbauth.h) [300] */
	unsigned close_deadline_ms; /* at close, the backlog is written until
	                             * this long has passed [10000] */
};

struct postback_stats {
	uint64_t requests;  /* handled */
	uint64_t ok;        /* answered 200 */
	uint64_t invalid;   /* answered 4xx */
	uint64_t unavailable; /* answered 503 */
	uint64_t errors;    /* answered 500 */
	uint64_t backlog;   /* gauge: log rows waiting for the database */
	uint64_t log_lost;  /* log rows dropped: backlog full, or left at close */
	uint64_t leads_checked; /* answered 200 naming a lead */
	uint64_t leads_changed; /* of which not a duplicate: the lead was created
	                         * or changed */
};

/* Answers by (outcome, HTTP status), for /metrics. Outcomes are the log's
 * (created, updated, ..., unavailable); the table holds at most
 * POSTBACK_COUNTS_MAX rows, the last of which is "other" once it fills
 * (it never does with today's outcomes and codes). */
#define POSTBACK_COUNTS_MAX 64
struct postback_count {
	const char *outcome; /* static */
	int code;
	uint64_t n;
};

/* Returns 0 and *out, or -1 with err set. */
__attribute__((warn_unused_result))
int postback_open(uv_loop_t *loop, const struct postback_config *cfg, struct postback **out,
		  char *err, size_t errlen);

/* The route handler; data is the struct postback. */
void postback_handle(struct listener_req *req, void *data);

/* For the listener's refused hook (data: the struct postback): requests to
 * the postback routes that the listener answered itself (413 body too
 * large, 431, 408, 400 unparsable, 503 at the connection cap when the
 * request line had arrived) get their log row too. */
void postback_refused(const struct listener_refusal *r, void *data);

void postback_stats(const struct postback *p, struct postback_stats *out);
/* The table, *n rows in order of first use; valid until the loop turns. */
const struct postback_count *postback_counts(const struct postback *p, size_t *n);

/* Call after the listener has closed (no request in flight): waits for the
 * log rows being written, then writes the backlog in turns (as much as the
 * database queue takes, each turn after the last) while the database is up
 * and each turn writes rows; only when the database is down, a turn writes
 * nothing, or close_deadline_ms has passed are the rows left dropped
 * (log_lost, one log line with the count). Then frees p. cb (may be NULL)
 * runs from the loop, never from within postback_close(). */
void postback_close(struct postback *p, void (*cb)(void *data), void *data);

/* The parameters of one postback, read from the request alone (no
 * database, no socket): what postback_handle does first, and what the
 * fuzz target tests/fuzz/postback.c drives. */
#define POSTBACK_NPARAMS 6
struct postback_params {
	/* click_id (as 8-4-4-4-12, lower case, once checked), request_id,
	 * action, status, price, customer_id: malloc'd, NULL when absent */
	char *v[POSTBACK_NPARAMS];
	int64_t price; /* cents, when price is given */
	int cust;      /* 0; 1 activate, 2 deactivate (the status word) */
	int status;    /* 0, or the answer the request itself earns (400, 500) */
	char err[256]; /* its message */
};

/* Reads pp (zeroed first) from a request: for a POST with a body, the body
 * as JSON (by content_type, else by its first byte) or as a form, which
 * body_form(ud) gives (parsed once, by the caller; NULL: out of memory);
 * then the query's pairs. A body's fields win over the query's. Checks
 * what the request alone can get wrong (UTF-8, lengths, missing
 * parameters, click_id a UUID, price an amount); the first problem sets
 * status and err. postback_params_release() frees the values. */
void postback_params_parse(struct postback_params *pp, bool post, const char *content_type,
			   const char *body, size_t blen,
			   const struct listener_form *(*body_form)(void *ud), void *ud,
			   const struct listener_form *query);
void postback_params_release(struct postback_params *pp);

/* Tests only: while above 0, a postback commit that succeeded is reported
 * to the daemon as lost with its connection (the backend is terminated
 * after COMMIT), and so is the lookup that learns the fate of a commit in
 * doubt; each such loss takes one off. The daemon never sets it. */
extern _Atomic int postback_test_lose_commit;

#endif
