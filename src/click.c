/* click: the click redirect (see click.h): random ids, clicks inserted in
 * groups on the database workers, 302 to the landing. */
#include "click.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "buf.h"
#include "lead.h"
#include "log.h"
#include "store.h"

#define CLICK_ID_MAX (INT64_C(1) << 53)
#define CLICK_SUB_NAME_MAX 64
#define CLICK_SUB_VALUE_MAX 255
#define CLICK_UA_MAX 512

struct click_item {
	struct db_job job;
	struct listener_req *req;
	char id[37];
	int64_t offer;
	int64_t wm;       /* 0: none */
	char *subs;       /* JSON object text */
	char remote[64];
	char *ua;         /* sanitised; NULL when none */
	/* results */
	int http;
	char *location;
};

static const char click_sql[] =
	"WITH x AS MATERIALIZED ("
	" SELECT * FROM json_to_recordset($1::json)"
	"  AS x(i integer, id uuid, offer bigint, wm bigint, subs jsonb, ip inet, ua text)"
	"), o AS MATERIALIZED ("
	" SELECT x.*, f.landing_url, f.click_param FROM x"
	" JOIN offers f ON f.id = x.offer AND f.enabled AND f.landing_url IS NOT NULL"
	"), ins AS ("
	" INSERT INTO clicks (id, offer, wm, subs, ip, ua)"
	" SELECT o.id, o.offer, o.wm, o.subs, o.ip, o.ua FROM o ORDER BY o.id"
	" ON CONFLICT (id) DO NOTHING"
	")"
	" SELECT o.i, o.landing_url, o.click_param FROM o ORDER BY o.i";

int click_uuid(char out[37])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char r[16];
	size_t got = 0, i, o = 0;
	int fd;

	while (got < sizeof(r)) {
		ssize_t n = getrandom(r + got, sizeof(r) - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (got < sizeof(r)) {
		fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -1;
		while (got < sizeof(r)) {
			ssize_t n = read(fd, r + got, sizeof(r) - got);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		close(fd);
		if (got < sizeof(r))
			return -1;
	}
	r[6] = (unsigned char)((r[6] & 0x0f) | 0x40); /* version 4 */
	r[8] = (unsigned char)((r[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	for (i = 0; i < sizeof(r); i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[r[i] >> 4];
		out[o++] = hex[r[i] & 15];
	}
	out[o] = '\0';
	return 0;
}

/* The landing URL with param=id added to its query, before any fragment. */
static char *click__location(const char *landing, const char *param, const char *id)
{
	const char *hash = strchr(landing, '#');
	size_t base = hash ? (size_t)(hash - landing) : strlen(landing);
	const char *q = memchr(landing, '?', base);
	struct buf b;
	int rc;

	buf_init(&b, 8192);
	rc = buf_add(&b, landing, base);
	if (!q)
		rc |= buf_addc(&b, '?');
	else if (landing[base - 1] != '?' && landing[base - 1] != '&')
		rc |= buf_addc(&b, '&');
	rc |= buf_add_urlenc(&b, param, strlen(param));
	rc |= buf_addc(&b, '=');
	rc |= buf_adds(&b, id);
	if (hash)
		rc |= buf_adds(&b, hash);
	if (rc) {
		buf_release(&b);
		return NULL;
	}
	return buf_steal(&b);
}

/* Inserts the clicks of jobs[0..n) with one statement. Returns 0 with
 * every job decided, or -1 with every job failed. */
static int click__insert(PGconn *c, struct db_job **jobs, size_t n)
{
	struct buf in;
	const char *params[1];
	PGresult *r = NULL;
	char msg[400];
	size_t i;
	int rc = -1, k, rows;

	buf_init(&in, 0);
	rc = buf_addc(&in, '[');
	for (i = 0; i < n; i++) {
		const struct click_item *it = jobs[i]->data;

		rc |= buf_addf(&in, "%s{\"i\":%zu,\"id\":\"%s\",\"offer\":%" PRId64 ",\"wm\":", i ? "," : "",
			       i, it->id, it->offer);
		rc |= it->wm ? buf_addf(&in, "%" PRId64, it->wm) : buf_adds(&in, "null");
		rc |= buf_addf(&in, ",\"subs\":%s,\"ip\":", it->subs);
		rc |= it->remote[0] ? buf_add_json_str(&in, it->remote, strlen(it->remote))
				    : buf_adds(&in, "null");
		rc |= buf_adds(&in, ",\"ua\":");
		rc |= it->ua ? buf_add_json_str(&in, it->ua, strlen(it->ua)) : buf_adds(&in, "null");
		rc |= buf_addc(&in, '}');
	}
	rc |= buf_addc(&in, ']');
	if (rc) {
		snprintf(msg, sizeof(msg), "out of memory");
		rc = -1;
		goto fail;
	}
	params[0] = in.p;
	r = PQexecParams(c, click_sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		store_error_text(c, r, msg, sizeof(msg));
		rc = -1;
		goto fail;
	}
	for (i = 0; i < n; i++) {
		struct click_item *it = jobs[i]->data;

		it->http = 404;
		jobs[i]->status = DB_OK;
	}
	rows = PQntuples(r);
	for (k = 0; k < rows; k++) {
		size_t idx = (size_t)strtoul(PQgetvalue(r, k, 0), NULL, 10);
		struct click_item *it;

		if (idx >= n)
			continue;
		it = jobs[idx]->data;
		it->location = click__location(PQgetvalue(r, k, 1), PQgetvalue(r, k, 2), it->id);
		it->http = it->location ? 302 : 500;
	}
	rc = 0;
	goto out;
fail:
	for (i = 0; i < n; i++) {
		jobs[i]->status = DB_EFAIL;
		lead_strlcpy(jobs[i]->err, sizeof(jobs[i]->err), msg);
	}
out:
	PQclear(r);
	buf_release(&in);
	return rc;
}

/* All clicks in one statement; when it fails, one by one, so a bad click
 * fails alone. */
static void click__group(PGconn *c, struct db_job **jobs, size_t n)
{
	size_t i;

	if (click__insert(c, jobs, n) == 0 || n == 1)
		return;
	log_warn("click group failed, inserting one by one", "n=%zu error=\"%s\"", n, jobs[0]->err);
	for (i = 0; i < n && PQstatus(c) == CONNECTION_OK; i++)
		(void)click__insert(c, &jobs[i], 1);
}

static void click__free(struct click_item *it)
{
	free(it->subs);
	free(it->ua);
	free(it->location);
	free(it);
}

static void click__unavailable(struct listener_req *req, const char *msg)
{
	struct buf b;

	buf_init(&b, 256);
	if (buf_adds(&b, "{\"ok\":false,\"error\":") < 0 || buf_add_json_str(&b, msg, strlen(msg)) < 0 ||
	    buf_addc(&b, '}') < 0)
		listener_respond(req, 503, NULL, NULL, 0, "Retry-After: 5\r\n");
	else
		listener_respond(req, 503, "application/json", b.p, b.len, "Retry-After: 5\r\n");
	buf_release(&b);
}

static void click__done(struct db_job *j)
{
	struct click_item *it = j->data;
	char hdr[8300];

	if (j->status == DB_EDOWN || j->status == DB_ECLOSED) {
		click__unavailable(it->req, "database unreachable: try again later");
	} else if (j->status != DB_OK || it->http == 500) {
		log_error("click not recorded", "offer=%" PRId64 " error=\"%s\"", it->offer, j->err);
		listener_respond_error(it->req, 500, "internal error");
	} else if (it->http == 404) {
		char msg[96];

		snprintf(msg, sizeof(msg), "unknown offer %" PRId64, it->offer);
		listener_respond_error(it->req, 404, msg);
	} else if ((size_t)snprintf(hdr, sizeof(hdr), "Location: %s\r\nCache-Control: no-store\r\n",
				    it->location) >= sizeof(hdr)) {
		listener_respond_error(it->req, 500, "landing URL too long");
	} else {
		listener_respond(it->req, 302, NULL, NULL, 0, hdr);
	}
	click__free(it);
}

static bool click__id(const char *s, size_t n, int64_t *out)
{
	int64_t v = 0;
	size_t i;

	if (!s || !n || n > 16)
		return false;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > CLICK_ID_MAX)
		return false;
	*out = v;
	return true;
}

/* Every query parameter but wm, as a JSON object of strings. */
static char *click__subs(const struct listener_form *f)
{
	struct buf b;
	size_t i, kept = 0;
	int rc;

	buf_init(&b, 64 << 10);
	rc = buf_addc(&b, '{');
	for (i = 0; i < f->n && kept < CLICK_SUBS_MAX; i++) {
		const struct listener_kv *kv = &f->kv[i];
		struct buf name, value;

		if (strcmp(kv->name, "wm") == 0 || !kv->name_len)
			continue;
		buf_init(&name, 4 * CLICK_SUB_NAME_MAX + 8);
		buf_init(&value, 4 * CLICK_SUB_VALUE_MAX + 8);
		rc |= buf_add_text(&name, kv->name,
				   kv->name_len > CLICK_SUB_NAME_MAX ? CLICK_SUB_NAME_MAX : kv->name_len);
		rc |= buf_add_text(&value, kv->value,
				   kv->value_len > CLICK_SUB_VALUE_MAX ? CLICK_SUB_VALUE_MAX : kv->value_len);
		buf_cut_utf8(&name, CLICK_SUB_NAME_MAX);
		buf_cut_utf8(&value, CLICK_SUB_VALUE_MAX);
		rc |= buf_adds(&b, kept++ ? "," : "");
		rc |= buf_add_json_str(&b, name.p ? name.p : "", name.len);
		rc |= buf_addc(&b, ':');
		rc |= buf_add_json_str(&b, value.p ? value.p : "", value.len);
		buf_release(&name);
		buf_release(&value);
	}
	rc |= buf_addc(&b, '}');
	if (rc) {
		buf_release(&b);
		return NULL;
	}
	return buf_steal(&b);
}

void click_handle(struct listener_req *req, void *data)
{
	struct db *db = data;
	const struct listener_form *q = listener_req_query_form(req);
	struct click_item *it = NULL;
	const char *s, *ua;
	unsigned char addr[16];
	size_t n = 0;

	if (listener_req_method(req) == LISTENER_HEAD) {
		static const char msg[] = "{\"ok\":false,\"error\":\"a click is a GET\"}";

		listener_respond(req, 405, "application/json", msg, sizeof(msg) - 1, "Allow: GET\r\n");
		return;
	}
	it = calloc(1, sizeof(*it));
	if (!it)
		goto oom;
	it->req = req;
	s = listener_req_param(req, "offer", &n);
	if (!click__id(s, n, &it->offer)) {
		listener_respond_error(req, 404, "unknown offer");
		goto out;
	}
	s = listener_form_get(q, "wm", &n);
	if (s && n && !click__id(s, n, &it->wm)) {
		listener_respond_error(req, 400, "'wm' must be a positive integer");
		goto out;
	}
	if (click_uuid(it->id) < 0) {
		listener_respond_error(req, 500, "no randomness for a click id");
		goto out;
	}
	it->subs = click__subs(q);
	if (!it->subs)
		goto oom;
	s = listener_req_remote(req);
	if (inet_pton(AF_INET, s, addr) == 1 || inet_pton(AF_INET6, s, addr) == 1)
		snprintf(it->remote, sizeof(it->remote), "%s", s);
	ua = listener_req_header(req, "user-agent");
	if (ua && *ua) {
		struct buf b;

		buf_init(&b, 4 * CLICK_UA_MAX + 8);
		if (buf_add_text(&b, ua, strlen(ua) > CLICK_UA_MAX ? CLICK_UA_MAX : strlen(ua)) < 0) {
			buf_release(&b);
			goto oom;
		}
		buf_cut_utf8(&b, CLICK_UA_MAX);
		it->ua = buf_steal(&b);
		if (!it->ua)
			goto oom;
	}
	it->job.group = click__group;
	it->job.done = click__done;
	it->job.data = it;
	if (db_submit(db, &it->job) < 0) {
		click__unavailable(req, "too busy: try again later");
		goto out;
	}
	return;
oom:
	listener_respond_error(req, 500, "out of memory");
out:
	if (it)
		click__free(it);
}

bool click_uuid_parse(const char *s, char out[37])
{
	size_t i;

	if (strlen(s) != 36)
		return false;
	for (i = 0; i < 36; i++) {
		char ch = s[i];

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (ch != '-')
				return false;
		} else if (ch >= 'A' && ch <= 'F') {
			ch = (char)(ch - 'A' + 'a');
		} else if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) {
			return false;
		}
		out[i] = ch;
	}
	out[36] = '\0';
	return true;
}
