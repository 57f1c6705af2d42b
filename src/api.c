/* api: the admin HTTP API, the views of views.h and history.h served as
 * JSON from a database worker (see api.h). */
#include "api.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "history.h"
#include "rule.h"
#include "scheduler.h"
#include "views.h"

#define API_ANSWER_MAX ((size_t)16 << 20) /* the listener's answer cap */

/* j->code: 0 or a VIEWS_E* code; the check's "disabled or being polled"
 * has its own, since the scheduler's codes overlap the views'. */
#define API_EBUSY (-100)

enum api_kind { AK_OFFERS, AK_POLLS, AK_HOURS, AK_POLL, AK_POSTBACKS, AK_POSTBACK, AK_LEAD, AK_CHECK };

/* Query parameters, by the CLI's option names. */
enum {
	AP_OFFER = 1 << 0, AP_VARIANT = 1 << 1, AP_OUTCOME = 1 << 2, AP_FAILED = 1 << 3,
	AP_FAILING = 1 << 4, AP_SINCE = 1 << 5, AP_ADVERTISER = 1 << 6, AP_ERRORS = 1 << 7,
	AP_LEAD = 1 << 8, AP_BEFORE = 1 << 9, AP_LIMIT = 1 << 10,
};

#define AP_PAGE (AP_BEFORE | AP_LIMIT)

static const struct {
	const char *name;
	unsigned bit;
} api_params[] = {
	{ "offer", AP_OFFER },       { "variant", AP_VARIANT }, { "outcome", AP_OUTCOME },
	{ "failed", AP_FAILED },     { "failing", AP_FAILING }, { "since", AP_SINCE },
	{ "advertiser", AP_ADVERTISER }, { "errors", AP_ERRORS }, { "lead", AP_LEAD },
	{ "before", AP_BEFORE },     { "limit", AP_LIMIT },
};

/* The route table: "polls/hourly" comes before "polls/{run}" so that it
 * is never read as a run id. */
static const struct {
	unsigned methods;
	const char *pattern;
	enum api_kind kind;
	unsigned params;
	const char *id; /* the path parameter, or NULL */
} api_table[API_NROUTES] = {
	{ LISTENER_GET, "/admin/api/offers", AK_OFFERS, AP_OFFER | AP_FAILING | AP_PAGE, NULL },
	{ LISTENER_GET, "/admin/api/polls", AK_POLLS,
	  AP_OFFER | AP_VARIANT | AP_OUTCOME | AP_FAILED | AP_SINCE | AP_PAGE, NULL },
	{ LISTENER_GET, "/admin/api/polls/hourly", AK_HOURS, 0, NULL },
	{ LISTENER_GET, "/admin/api/polls/{run}", AK_POLL, 0, "run" },
	{ LISTENER_GET, "/admin/api/postbacks", AK_POSTBACKS,
	  AP_ADVERTISER | AP_ERRORS | AP_SINCE | AP_LEAD | AP_PAGE, NULL },
	{ LISTENER_GET, "/admin/api/postbacks/{id}", AK_POSTBACK, 0, "id" },
	{ LISTENER_GET, "/admin/api/leads/{id}", AK_LEAD, 0, "id" },
	{ LISTENER_POST, "/admin/api/offers/{offer}/check", AK_CHECK, AP_VARIANT, "offer" },
};

/* One request on its way through a database worker. */
struct api_job {
	struct db_job job;
	struct listener_req *req;
	enum api_kind kind;
	struct views_filter f;
	char variant[16]; /* f's strings, copied out of the request */
	char outcome[32];
	int64_t id;
	int code; /* what the view returned */
	struct buf out;
};

static void api__job_free(struct api_job *j)
{
	buf_release(&j->out);
	free(j);
}

/* A positive decimal id, nothing else. */
static int api__id(const char *s, size_t len, int64_t *out)
{
	int64_t n = 0;
	size_t i;

	if (!len || len > 18)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		n = n * 10 + (s[i] - '0');
	}
	if (n <= 0)
		return -1;
	*out = n;
	return 0;
}

static int api__flag(const char *v, bool *out)
{
	if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0)
		*out = true;
	else if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0)
		*out = false;
	else
		return -1;
	return 0;
}

/* Reads the query into j->f: only the parameters in allowed. Returns 0, or
 * -1 with msg naming the parameter. */
static int api__query(struct listener_req *req, unsigned allowed, struct api_job *j, char *msg,
		      size_t msglen)
{
	const struct listener_form *q = listener_req_query_form(req);
	struct views_filter *f = &j->f;
	size_t i, k;

	for (i = 0; q && i < q->n; i++) {
		const char *name = q->kv[i].name, *v = q->kv[i].value;
		unsigned bit = 0;
		int64_t n;

		for (k = 0; k < sizeof(api_params) / sizeof(api_params[0]); k++)
			if (strcmp(api_params[k].name, name) == 0)
				bit = api_params[k].bit;
		if (!(bit & allowed) || strlen(name) != q->kv[i].name_len) {
			snprintf(msg, msglen, "unknown parameter '%.64s'", name);
			return -1;
		}
		if (strlen(v) != q->kv[i].value_len || !*v)
			goto bad;
		switch (bit) {
		case AP_FAILED:
		case AP_FAILING:
			if (api__flag(v, &f->failed) < 0)
				goto bad;
			break;
		case AP_ERRORS:
			if (api__flag(v, &f->errors) < 0)
				goto bad;
			break;
		case AP_SINCE:
			if (views_since_parse(v, (int64_t)time(NULL), &f->since) < 0) {
				snprintf(msg, msglen,
					 "since '%.64s' is not an ISO-8601 time or an age (30m, 2h, 7d)",
					 v);
				return -1;
			}
			break;
		case AP_VARIANT:
			if (rule_variant_parse(v) < 0) {
				snprintf(msg, msglen,
					 "variant '%.64s' is not processing, accepted or dates", v);
				return -1;
			}
			snprintf(j->variant, sizeof(j->variant), "%s", v);
			f->variant = j->variant;
			break;
		case AP_OUTCOME:
			if (strlen(v) >= sizeof(j->outcome))
				goto bad;
			snprintf(j->outcome, sizeof(j->outcome), "%s", v);
			f->outcome = j->outcome;
			break;
		case AP_LIMIT:
			if (api__id(v, strlen(v), &n) < 0 || n > VIEWS_LIMIT_MAX) {
				snprintf(msg, msglen, "limit '%.64s' is not a number in 1..%d", v,
					 VIEWS_LIMIT_MAX);
				return -1;
			}
			f->limit = (int)n;
			break;
		default:
			if (api__id(v, strlen(v), &n) < 0)
				goto bad;
			if (bit == AP_OFFER)
				f->offer = n;
			else if (bit == AP_ADVERTISER)
				f->advertiser = n;
			else if (bit == AP_LEAD)
				f->lead = n;
			else
				f->before = n;
		}
		continue;
bad:
		snprintf(msg, msglen, "%s '%.64s' is not %s", name, v,
			 bit & (AP_FAILED | AP_FAILING | AP_ERRORS) ? "1, true, 0 or false"
								      : "a valid value");
		return -1;
	}
	if (views_filter_check(f, msg, msglen) < 0)
		return -1;
	return 0;
}

/* ------------------------------------------------------------ the worker */

static int api__run(PGconn *c, struct db_job *job)
{
	struct api_job *j = job->data;
	const struct views_filter *f = &j->f;
	char *err = job->err;
	size_t el = sizeof(job->err);

	switch (j->kind) {
	case AK_OFFERS:
		j->code = views_offers(c, f, VIEWS_JSON, &j->out, err, el);
		break;
	case AK_POLLS:
		j->code = views_polls(c, f, VIEWS_JSON, &j->out, err, el);
		break;
	case AK_HOURS:
		j->code = views_poll_hours(c, 0, VIEWS_JSON, &j->out, err, el);
		break;
	case AK_POLL:
		j->code = views_poll(c, j->id, VIEWS_JSON, &j->out, err, el);
		break;
	case AK_POSTBACKS:
		j->code = views_postbacks(c, f, VIEWS_JSON, &j->out, err, el);
		break;
	case AK_POSTBACK:
		j->code = views_postback(c, j->id, VIEWS_JSON, &j->out, err, el);
		break;
	case AK_LEAD:
		j->code = history_lead_show(c, j->id, true, &j->out, err, el);
		if (j->code == HISTORY_ENOTFOUND)
			j->code = VIEWS_ENOTFOUND;
		else if (j->code < 0)
			j->code = VIEWS_EFAIL;
		break;
	case AK_CHECK:
		j->code = scheduler_sql_due_now(c, j->id, (enum rule_variant)rule_variant_parse(j->variant),
						err, el);
		if (j->code == SCHED_ENOTFOUND)
			j->code = VIEWS_ENOTFOUND;
		else if (j->code == SCHED_EBUSY)
			j->code = API_EBUSY;
		if (j->code == 0 && buf_addf(&j->out, "{\"queued\":true,\"offer\":%" PRId64
					     ",\"variant\":\"%s\"}", j->id, j->variant) < 0) {
			snprintf(err, el, "out of memory");
			j->code = VIEWS_EFAIL;
		}
		break;
	}
	/* a failed statement on a broken connection is DB_EDOWN for the pool */
	return j->code == VIEWS_EFAIL || j->code == -1 ? DB_EFAIL : DB_OK;
}

static void api__done(struct db_job *job)
{
	struct api_job *j = job->data;
	static const char down[] =
		"{\"ok\":false,\"error\":\"database unreachable: try again later\"}";

	if (job->status == DB_EDOWN || job->status == DB_ECLOSED)
		listener_respond(j->req, 503, "application/json", down, sizeof(down) - 1,
				 "Retry-After: 5\r\n");
	else if (job->status != DB_OK)
		listener_respond_error(j->req, 500, job->err);
	else if (j->code == VIEWS_EINVAL)
		listener_respond_error(j->req, 400, job->err);
	else if (j->code == VIEWS_ENOTFOUND)
		listener_respond_error(j->req, 404, job->err);
	else if (j->code == API_EBUSY)
		listener_respond_error(j->req, 409, job->err);
	else
		listener_respond(j->req, j->kind == AK_CHECK ? 202 : 200, "application/json",
				 j->out.p ? j->out.p : "", j->out.len, "Cache-Control: no-store\r\n");
	api__job_free(j);
}

/* ------------------------------------------------------------- the loop */

/* True when req may use the API; otherwise it has been answered. */
static bool api__allowed(struct listener_req *req, const struct api *a)
{
	static const char closed[] = "{\"ok\":false,\"error\":\"the admin API is closed: "
				     "set LEADSYNC_ADMIN_TOKEN to open it\"}";
	static const char denied[] = "{\"ok\":false,\"error\":\"missing or wrong bearer token\"}";

	if (!a->token || !*a->token) {
		listener_respond(req, 403, "application/json", closed, sizeof(closed) - 1, NULL);
		return false;
	}
	if (!listener_req_bearer_is(req, a->token)) {
		listener_respond(req, 401, "application/json", denied, sizeof(denied) - 1,
				 "WWW-Authenticate: Bearer realm=\"leadsync\"\r\n");
		return false;
	}
	return true;
}

static void api__handle(struct listener_req *req, void *data)
{
	const struct api_route *r = data;
	struct api *a = r->api;
	struct api_job *j;
	char msg[256];

	if (!api__allowed(req, a))
		return;
	j = calloc(1, sizeof(*j));
	if (!j) {
		listener_respond_error(req, 500, "out of memory");
		return;
	}
	buf_init(&j->out, API_ANSWER_MAX);
	j->req = req;
	j->kind = api_table[r->row].kind;
	if (api_table[r->row].id) {
		size_t len;
		const char *v = listener_req_param(req, api_table[r->row].id, &len);

		if (!v || api__id(v, len, &j->id) < 0) {
			snprintf(msg, sizeof(msg), "%s '%.64s' is not an id", api_table[r->row].id,
				 v ? v : "");
			goto bad;
		}
	}
	if (api__query(req, api_table[r->row].params, j, msg, sizeof(msg)) < 0)
		goto bad;
	if (j->kind == AK_CHECK && !j->f.variant) {
		snprintf(msg, sizeof(msg), "variant is missing (processing, accepted or dates)");
		goto bad;
	}
	j->job.run = api__run;
	j->job.done = api__done;
	j->job.data = j;
	if (db_submit(a->db, &j->job) < 0) {
		static const char full[] =
			"{\"ok\":false,\"error\":\"database queue full: try again later\"}";

		api__job_free(j);
		listener_respond(req, 503, "application/json", full, sizeof(full) - 1,
				 "Retry-After: 5\r\n");
	}
	return;
bad:
	api__job_free(j);
	listener_respond_error(req, 400, msg);
}

size_t api_routes(struct api *a, struct listener_route *out)
{
	size_t i;

	for (i = 0; i < API_NROUTES; i++) {
		a->slot[i].api = a;
		a->slot[i].row = (int)i;
		out[i] = (struct listener_route){ api_table[i].methods, api_table[i].pattern,
						  api__handle, &a->slot[i] };
	}
	return API_NROUTES;
}
