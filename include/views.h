/* views: the operator's views of what leadsync did (issue 9): offer health,
 * poll runs, incoming postbacks. One implementation serves the CLI
 * (`leadsync offers`, `history`, `postbacks`) and the admin HTTP API: each
 * view is one function that reads the database and appends its answer to
 * a caller's buffer, as JSON or as a plain aligned table for people.
 *
 * Model. Lists are newest first (highest id first; offers by offer id) and
 * paged by keyset: a page holds at most limit rows (offers: limit offers,
 * each with its variants' rows) with an id below f->before; the next page
 * is asked with before = the last id of this one. Single views (one poll
 * run, one postback) are one object.
 *
 * JSON. A list is one array of flat objects, compact, no trailing newline;
 * a single view one object. Keys are the columns below; times are ISO-8601
 * UTC strings to the second ("2026-11-20T10:00:00Z"), anything unset null.
 * Keys may be added, never renamed (the API serves this text as it is).
 *   offers:  offer, name, advertiser, rule, enabled, variant, last_run,
 *            last_run_at, last_outcome, last_ok, next_due,
 *            consecutive_failures, last_error, leads_waiting (leads in the
 *            variant's statuses: processing 2-4, accepted 6-9, dates every
 *            open one), lease_owner, lease_until (null when no live lease)
 *   polls:   id, offer, offer_name, variant, worker, started, finished,
 *            duration_ms, method, url, http_status, bytes, content_type,
 *            outcome, error, leads_asked, leads_changed, leads_unknown,
 *            leads_refused, leads_unrecognised, leads_skipped,
 *            leads_no_ext, pages, caught_up, missed
 *   poll:    the same plus rule, notes, answer_head and "changed": the
 *            lead_history rows with this run as source (source poll or
 *            dates), oldest first, at most VIEWS_CHANGES_MAX:
 *            [{"lead", "at", "source", "source_id", "before", "after"}]
 *   postbacks: id, at, remote, method, path, query, advertiser,
 *            advertiser_name, http_status, outcome, error, lead
 *   postback: the same plus body and "changed" (its lead_history rows,
 *            source postback or chargeback), as for a poll run.
 *
 * Text: a table with a header line for lists (long cells cut, a last line
 * naming the next page's --before when the page is full), "name value"
 * lines and indented blocks for single views. For people; not a contract.
 *
 * Secrets. What the poller and the postback log store is already masked;
 * the views mask again, on the way out, with the same rules (mask.h): the
 * offer's secret_params and credential-looking params (poll runs, offers),
 * the advertiser's api key (postbacks), credential-looking query
 * parameters, so a row written before a secret was declared does not
 * show it either.
 *
 * Errors: 0, or VIEWS_EINVAL (a filter is wrong: the message names it),
 * VIEWS_ENOTFOUND (no such run or postback), VIEWS_EFAIL (the database,
 * or out is full), with a one-line message in err. out may then hold part
 * of an answer: callers discard it.
 *
 * Threads. No globals, no printing: any thread may call these with its
 * own PGconn (a database worker of db.h for the API, the CLI's own
 * connection). Each call runs its statements on c, outside any transaction
 * of the caller's, and leaves c idle. */
#ifndef LEADSYNC_VIEWS_H
#define LEADSYNC_VIEWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "buf.h"

#define VIEWS_LIMIT_DEFAULT 50
#define VIEWS_LIMIT_MAX 1000
#define VIEWS_CHANGES_MAX 1000 /* lead_history rows in one single view */

enum {
	VIEWS_EFAIL = -1,
	VIEWS_EINVAL = -2,
	VIEWS_ENOTFOUND = -3,
};

enum views_format { VIEWS_JSON, VIEWS_TEXT };

/* Which rows. A field 0 (or NULL, false) does not filter; each view reads
 * the fields its header line above names and ignores the others. */
struct views_filter {
	int64_t offer;       /* offers, polls */
	const char *variant; /* polls: processing, accepted or dates */
	const char *outcome; /* polls: one of poll_outcome_name()'s words */
	bool failed;         /* polls: outcome neither ok nor caught_up;
			      * offers: variants with consecutive failures */
	int64_t since;       /* polls: started, postbacks: at, >= this (UNIX s) */
	int64_t advertiser;  /* postbacks */
	bool errors;         /* postbacks: answered 4xx or 5xx */
	int64_t lead;        /* postbacks */
	int64_t before;      /* keyset: ids below this only */
	int limit;           /* rows (offers: offers); 0: VIEWS_LIMIT_DEFAULT;
			      * above VIEWS_LIMIT_MAX: VIEWS_LIMIT_MAX */
};

/* Checks f's words (variant, outcome) and combinations (outcome with
 * failed) without the database: 0, or VIEWS_EINVAL with err naming the
 * field. Every view checks its filter this way first. */
__attribute__((warn_unused_result))
int views_filter_check(const struct views_filter *f, char *err, size_t errlen);

/* Offer health: one row per offer (that names a rule) and variant. */
__attribute__((warn_unused_result))
int views_offers(PGconn *c, const struct views_filter *f, enum views_format fmt,
		 struct buf *out, char *err, size_t errlen);

/* Poll runs (poll_runs rows). */
__attribute__((warn_unused_result))
int views_polls(PGconn *c, const struct views_filter *f, enum views_format fmt,
		struct buf *out, char *err, size_t errlen);

/* One poll run whole, with the leads it changed. */
__attribute__((warn_unused_result))
int views_poll(PGconn *c, int64_t run, enum views_format fmt, struct buf *out, char *err,
	       size_t errlen);

/* The incoming-postback log (postbacks_in rows). */
__attribute__((warn_unused_result))
int views_postbacks(PGconn *c, const struct views_filter *f, enum views_format fmt,
		    struct buf *out, char *err, size_t errlen);

/* One incoming postback whole, with the lead changes it made. */
__attribute__((warn_unused_result))
int views_postback(PGconn *c, int64_t id, enum views_format fmt, struct buf *out, char *err,
		   size_t errlen);

/* Poll outcomes per hour over the 24 hours up to now (UNIX seconds; 0:
 * the database's now()): the hour now falls in and the 23 before it.
 * JSON: [{"hour": "2026-12-02T06:00:00Z", "outcome": "ok", "count": 12},
 * ...], oldest hour first, then by outcome; an hour without runs has no
 * row. Text: a table of the same. */
__attribute__((warn_unused_result))
int views_poll_hours(PGconn *c, int64_t now, enum views_format fmt, struct buf *out, char *err,
		     size_t errlen);

/* A --since value: an ISO-8601 time (lead_time_parse), or an age before
 * now: a whole number and s, m, h or d ("30m", "2h", "7d"). Returns 0 and
 * *out (UNIX seconds), or -1. Pure. */
__attribute__((warn_unused_result))
int views_since_parse(const char *s, int64_t now, int64_t *out);

#endif
