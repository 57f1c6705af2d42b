/* intake: POST /api/leads, leads validated and written by import's record
 * API on a database worker (see intake.h). */
#include "intake.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "import.h"
#include "lead.h"
#include "log.h"

struct intake_item {
	struct db_job job;
	struct listener_req *req;
	cJSON *root; /* the body: one lead object or an array of them */
	size_t n;    /* leads */
	int64_t *ids;
	size_t nids;
	struct import_lead lead; /* the one being read, off the worker's stack */
};

static void intake__free(struct intake_item *it)
{
	cJSON_Delete(it->root);
	free(it->ids);
	free(it);
}

/* Each lead is validated and staged in turn, then all are written in one
 * transaction; a message about a lead says which ("lead 2: ..."). */
static int intake__run(PGconn *c, struct db_job *j)
{
	struct intake_item *it = j->data;
	struct import_stats st;
	struct import *im;
	const cJSON *x;
	char err[DB_ERR_MAX - 32]; /* room for "lead N: " */
	size_t pos = 0;
	int rc = DB_EFAIL;

	im = import_begin(c, &st, err, sizeof(err));
	if (!im) {
		snprintf(j->err, sizeof(j->err), "%s", err);
		return DB_EFAIL;
	}
	x = cJSON_IsArray(it->root) ? it->root->child : it->root;
	for (; x; x = cJSON_IsArray(it->root) ? x->next : NULL) {
		pos++;
		if (import_lead_check(x, import_currency, im, 0, &it->lead, err, sizeof(err)) < 0 ||
		    import_lead_add(im, pos, &it->lead, err, sizeof(err)) < 0) {
			snprintf(j->err, sizeof(j->err), "lead %zu: %s", pos, err);
			goto out;
		}
	}
	if (import_commit(im, it->ids, it->n, &it->nids, &pos, err, sizeof(err)) < 0) {
		if (pos)
			snprintf(j->err, sizeof(j->err), "lead %zu: %s", pos, err);
		else
			snprintf(j->err, sizeof(j->err), "%s", err);
		goto out;
	}
	rc = DB_OK;
out:
	import_free(im);
	return rc;
}

static void intake__done(struct db_job *j)
{
	struct intake_item *it = j->data;
	struct buf b;
	size_t i;
	int rc;

	if (j->status == DB_EDOWN || j->status == DB_ECLOSED) {
		static const char msg[] = "{\"ok\":false,\"error\":\"database unreachable: try again later\"}";

		listener_respond(it->req, 503, "application/json", msg, sizeof(msg) - 1,
				 "Retry-After: 5\r\n");
		goto out;
	}
	if (j->status != DB_OK) {
		listener_respond_error(it->req, 400, j->err);
		goto out;
	}
	buf_init(&b, 0);
	rc = buf_adds(&b, "{\"ok\":true,\"leads\":[");
	for (i = 0; i < it->nids && i < it->n; i++)
		rc |= buf_addf(&b, "%s%" PRId64, i ? "," : "", it->ids[i]);
	rc |= buf_adds(&b, "]}");
	if (rc)
		listener_respond_error(it->req, 500, "out of memory");
	else
		listener_respond(it->req, 200, "application/json", b.p, b.len, NULL);
	log_info("leads taken in", "leads=%zu", it->nids);
	buf_release(&b);
out:
	intake__free(it);
}

void intake_handle(struct listener_req *req, void *data)
{
	const struct intake *in = data;
	struct intake_item *it = NULL;
	cJSON *root = NULL;
	const cJSON *x;
	const char *body, *end = NULL;
	size_t blen = 0, i = 0;
	char msg[128];

	if (!in->token || !*in->token) {
		listener_respond_error(req, 404, "intake is disabled: set LEADSYNC_ADMIN_TOKEN");
		goto out;
	}
	if (!listener_req_bearer_is(req, in->token)) {
		static const char m[] = "{\"ok\":false,\"error\":\"missing or wrong bearer token\"}";

		listener_respond(req, 401, "application/json", m, sizeof(m) - 1,
				 "WWW-Authenticate: Bearer\r\n");
		goto out;
	}
	body = listener_req_body(req, &blen);
	if (!buf_utf8_ok(body, blen)) {
		listener_respond_error(req, 400, "not valid UTF-8 text");
		goto out;
	}
	root = cJSON_ParseWithLengthOpts(body, blen, &end, 0);
	if (!root) {
		snprintf(msg, sizeof(msg), "malformed JSON at byte %zu",
			 end && end >= body ? (size_t)(end - body) + 1 : 1);
		listener_respond_error(req, 400, msg);
		goto out;
	}
	if (cJSON_IsObject(root)) {
		i = 1;
	} else if (cJSON_IsArray(root)) {
		cJSON_ArrayForEach(x, root) {
			if (++i > INTAKE_MAX_LEADS) {
				snprintf(msg, sizeof(msg), "more than %d leads in one request",
					 INTAKE_MAX_LEADS);
				listener_respond_error(req, 400, msg);
				goto out;
			}
			if (!cJSON_IsObject(x)) {
				snprintf(msg, sizeof(msg), "lead %zu: a lead must be a JSON object", i);
				listener_respond_error(req, 400, msg);
				goto out;
			}
		}
	}
	if (!i) {
		listener_respond_error(req, 400, "send a lead object or an array of them");
		goto out;
	}
	it = calloc(1, sizeof(*it));
	if (!it)
		goto oom;
	it->req = req;
	it->n = i;
	it->root = root;
	root = NULL;
	it->ids = calloc(i, sizeof(*it->ids));
	if (!it->ids)
		goto oom;
	it->job.run = intake__run;
	it->job.done = intake__done;
	it->job.data = it;
	if (db_submit(in->db, &it->job) < 0) {
		static const char m[] = "{\"ok\":false,\"error\":\"too busy: try again later\"}";

		listener_respond(req, 503, "application/json", m, sizeof(m) - 1, "Retry-After: 5\r\n");
		goto out;
	}
	it = NULL;
	goto out;
oom:
	listener_respond_error(req, 500, "out of memory");
out:
	if (it)
		intake__free(it);
	cJSON_Delete(root);
}
