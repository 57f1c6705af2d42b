/* intake: POST /api/leads, leads written by import's own code on a
 * database worker (see intake.h). */
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
	char *lines; /* JSON lines: {"lead": {...}} */
	size_t len;
	size_t n;    /* leads */
	int64_t *ids;
	size_t nids;
};

static void intake__free(struct intake_item *it)
{
	free(it->lines);
	free(it->ids);
	free(it);
}

/* import's "line N: ..." names the Nth lead of the request. */
static void intake__message(const char *err, char *out, size_t len)
{
	if (strncmp(err, "line ", 5) == 0)
		snprintf(out, len, "lead %s", err + 5);
	else
		snprintf(out, len, "%s", err);
}

static int intake__run(PGconn *c, struct db_job *j)
{
	struct intake_item *it = j->data;
	struct import_stats st;
	char err[DB_ERR_MAX];
	FILE *f = fmemopen(it->lines, it->len, "r");
	int rc;

	if (!f) {
		snprintf(j->err, sizeof(j->err), "out of memory");
		return DB_EFAIL;
	}
	rc = import_run_ids(c, f, &st, it->ids, it->n, &it->nids, err, sizeof(err));
	fclose(f);
	if (rc < 0) {
		intake__message(err, j->err, sizeof(j->err));
		return DB_EFAIL;
	}
	return DB_OK;
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

/* Appends {"lead": x} as one line. */
static int intake__line(struct buf *b, const cJSON *x)
{
	char *s = cJSON_PrintUnformatted(x);
	int rc;

	if (!s)
		return -1;
	rc = buf_adds(b, "{\"lead\":") | buf_adds(b, s) | buf_adds(b, "}\n");
	cJSON_free(s);
	return rc ? -1 : 0;
}

void intake_handle(struct listener_req *req, void *data)
{
	const struct intake *in = data;
	struct intake_item *it = NULL;
	cJSON *root = NULL;
	const cJSON *x;
	const char *body, *end = NULL;
	size_t blen = 0, i = 0;
	struct buf b;
	char msg[128];

	buf_init(&b, 0);
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
	root = cJSON_ParseWithLengthOpts(body, blen, &end, 0);
	if (!root) {
		snprintf(msg, sizeof(msg), "malformed JSON at byte %zu",
			 end && end >= body ? (size_t)(end - body) + 1 : 1);
		listener_respond_error(req, 400, msg);
		goto out;
	}
	if (cJSON_IsObject(root)) {
		if (intake__line(&b, root) < 0)
			goto oom;
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
			if (intake__line(&b, x) < 0)
				goto oom;
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
	it->ids = calloc(i, sizeof(*it->ids));
	it->len = b.len;
	it->lines = buf_steal(&b);
	if (!it->ids || !it->lines)
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
	buf_release(&b);
}
