/* bench_pgpost: PostgreSQL's own rate for the postback path's rows, the
 * ceiling of bench/sec_postbacks.py. It runs exactly the statements a
 * postback group runs (include/postback_sql.h: BEGIN, the resolve query,
 * the one-statement write, COMMIT, both statements prepared once per
 * connection) for new hold conversions with a price, each a lead, its
 * history row and its log row, with the JSON postback.c would pass; groups
 * of `batch` postbacks, from `conns` connections at once (the daemon's
 * LEADSYNC_DB_WORKERS). Nothing of the daemon runs: no HTTP, no queue, no
 * lead_apply.
 *
 *   bench_pgpost CONNINFO TOTAL SECONDS BATCH CONNS API_KEY CLICKS PREFIX
 *
 * It stops after TOTAL postbacks or once SECONDS have passed (no group is
 * started after that), whichever comes first, so the section's time stays
 * bounded on a slow or busy machine.
 *
 * The database holds the advertiser of API_KEY, an offer with a fixed goal
 * 'lead' and CLICKS clicks of it whose ids are
 * 00000000-0000-4000-8000-%012x of 0..CLICKS-1 (sec_postbacks.py seeds
 * them). Request ids are PREFIX-<conn>-<n>. Prints one JSON object:
 * {"postbacks", "seconds", "rate", "batch", "conns", "groups"}. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <uv.h>

#include <libpq-fe.h>

#include "buf.h"
#include "postback_sql.h"
#include "store.h"

struct cfg {
	const char *conninfo, *key, *prefix;
	long total, batch, clicks;
	uint64_t stop_at; /* uv_hrtime() after which no group starts */
};

struct worker {
	const struct cfg *cfg;
	uv_thread_t th;
	int idx;
	long groups;
	int failed;
	char err[512];
};

static atomic_long next_pb; /* postbacks handed out so far */
static atomic_long done_pb; /* postbacks committed */

static int exec_ok(struct worker *w, PGconn *c, PGresult *r, const char *what)
{
	ExecStatusType st = PQresultStatus(r);
	char msg[400];

	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return 0;
	snprintf(w->err, sizeof(w->err), "%s: %s", what, store_error_text(c, r, msg, sizeof(msg)));
	return -1;
}

static void uuid_of(long n, char out[37])
{
	snprintf(out, 37, "00000000-0000-4000-8000-%012lx", n);
}

/* One group of n postbacks, numbered from first. */
static int group(struct worker *w, PGconn *c, long first, long n)
{
	const struct cfg *cf = w->cfg;
	struct buf in, newl, hist, lg;
	const char *params[5];
	PGresult *r = NULL;
	char uuid[37], rid[64], tm[32];
	struct timeval tv;
	time_t now = time(NULL);
	long i;
	int rc = -1, bad = 0;

	buf_init(&in, 0);
	buf_init(&newl, 0);
	buf_init(&hist, 0);
	buf_init(&lg, 0);
	strftime(tm, sizeof(tm), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	bad |= buf_addc(&in, '[');
	for (i = 0; i < n; i++) {
		uuid_of((first + i) % cf->clicks, uuid);
		snprintf(rid, sizeof(rid), "%s-%d-%ld", cf->prefix, w->idx, first + i);
		bad |= buf_addf(&in, "%s{\"i\":%ld,\"k\":\"%s\",\"c\":\"%s\",\"r\":\"%s\","
				"\"a\":\"lead\",\"u\":null}", i ? "," : "", i, cf->key, uuid, rid);
	}
	bad |= buf_addc(&in, ']');
	if (bad) {
		snprintf(w->err, sizeof(w->err), "out of memory");
		goto out;
	}
	r = PQexec(c, "BEGIN");
	if (exec_ok(w, c, r, "begin") < 0)
		goto out;
	PQclear(r);
	params[0] = in.p;
	r = PQexecPrepared(c, "leadsync_pb_resolve", 1, params, NULL, NULL, 0);
	if (exec_ok(w, c, r, "resolve") < 0)
		goto out;
	if (PQntuples(r) != n || PQnfields(r) != R_NCOLS || PQgetisnull(r, 0, R_NEW_ID)) {
		snprintf(w->err, sizeof(w->err), "resolve: %d rows for %ld postbacks, or no new lead "
			 "(is the database seeded?)", PQntuples(r), n);
		goto out;
	}
	gettimeofday(&tv, NULL);
	for (i = 0; i < n; i++) {
		const char *lead = PQgetvalue(r, (int)i, R_NEW_ID), *log = PQgetvalue(r, (int)i, R_LOG_ID);
		const char *goal = PQgetvalue(r, (int)i, R_GOAL), *offer = PQgetvalue(r, (int)i, R_OFFER);
		const char *adv = PQgetvalue(r, (int)i, R_ADV), *sep = i ? "," : "[";

		uuid_of((first + i) % cf->clicks, uuid);
		snprintf(rid, sizeof(rid), "%s-%d-%ld", cf->prefix, w->idx, first + i);
		/* lead_store.h's wire format: cents, seconds, 0 for none */
		bad |= buf_addf(&newl, "%s{\"id\":%s,\"status\":2,\"reason\":0,\"comment\":\"\","
				"\"track\":\"\",\"base\":3000,\"counts\":1,\"curr\":840,\"goal\":%s,"
				"\"wm\":0,\"pay\":0,\"ref\":0,\"cash_curr\":0,\"approved_at\":0,"
				"\"hold_until\":0,\"offer\":%s,\"request_id\":\"%s\","
				"\"customer_id\":null,\"click\":\"%s\",\"created\":%lld}",
				sep, lead, goal, offer, rid, uuid, (long long)now);
		bad |= buf_addf(&hist, "%s{\"lead\":%s,\"source\":\"postback\",\"source_id\":%s,"
				"\"before\":{},\"after\":{\"status\":2,\"base\":30,\"counts\":1,"
				"\"curr\":840,\"goal\":%s,"
				"\"created\":\"%s\",\"click_id\":\"%s\",\"request_id\":\"%s\"}}",
				sep, lead, log, goal, tm, uuid, rid);
		bad |= buf_addf(&lg, "%s{\"id\":%s,\"at\":%lld,\"remote\":\"127.0.0.1\",\"m\":\"GET\","
				"\"p\":\"/***/s2s\",\"q\":\"click_id=%s&request_id=%s&action=lead"
				"&status=hold&price=30\",\"body\":null,\"adv\":%s,\"st\":200,"
				"\"oc\":\"created\",\"e\":null,\"lead\":%s}",
				sep, log, (long long)tv.tv_sec * 1000000 + tv.tv_usec, uuid, rid, adv,
				lead);
	}
	bad |= buf_addc(&newl, ']') | buf_addc(&hist, ']') | buf_addc(&lg, ']');
	if (bad) {
		snprintf(w->err, sizeof(w->err), "out of memory");
		goto out;
	}
	PQclear(r);
	params[0] = newl.p;
	params[1] = "[]";
	params[2] = hist.p;
	params[3] = "[]";
	params[4] = lg.p;
	r = PQexecPrepared(c, "leadsync_pb_write", 5, params, NULL, NULL, 0);
	if (exec_ok(w, c, r, "write") < 0)
		goto out;
	PQclear(r);
	r = PQexec(c, "COMMIT");
	if (exec_ok(w, c, r, "commit") < 0)
		goto out;
	rc = 0;
out:
	PQclear(r);
	buf_release(&in);
	buf_release(&newl);
	buf_release(&hist);
	buf_release(&lg);
	return rc;
}

static void worker_main(void *arg)
{
	struct worker *w = arg;
	const struct cfg *cf = w->cfg;
	PGconn *c = NULL;

	if (store_connect(cf->conninfo, &c, w->err, sizeof(w->err)) < 0)
		goto fail;
	/* as postback.c prepares them: the same names, once per connection */
	if (store_prepare(c, "leadsync_pb_resolve", "resolve", pb_resolve_sql, 1, w->err,
			  sizeof(w->err)) < 0 ||
	    store_prepare(c, "leadsync_pb_write", "write", pb_write_sql, 5, w->err,
			  sizeof(w->err)) < 0)
		goto fail;
	for (;;) {
		long first = atomic_fetch_add(&next_pb, cf->batch), n;

		if (first >= cf->total || uv_hrtime() >= cf->stop_at)
			break;
		n = cf->total - first < cf->batch ? cf->total - first : cf->batch;
		if (group(w, c, first, n) < 0)
			goto fail;
		atomic_fetch_add(&done_pb, n);
		w->groups++;
	}
	PQfinish(c);
	return;
fail:
	w->failed = 1;
	if (c)
		PQfinish(c);
}

int main(int argc, char **argv)
{
	struct cfg cf;
	struct worker *ws;
	long conns, groups = 0;
	uint64_t t0, t1;
	int i, rc = 0;

	double secs;

	if (argc != 9) {
		fprintf(stderr, "usage: bench_pgpost CONNINFO TOTAL SECONDS BATCH CONNS API_KEY CLICKS "
			"PREFIX\n");
		return 2;
	}
	cf.conninfo = argv[1];
	cf.total = strtol(argv[2], NULL, 10);
	secs = strtod(argv[3], NULL);
	cf.batch = strtol(argv[4], NULL, 10);
	conns = strtol(argv[5], NULL, 10);
	cf.key = argv[6];
	cf.clicks = strtol(argv[7], NULL, 10);
	cf.prefix = argv[8];
	if (cf.total < 1 || !(secs > 0) || cf.batch < 1 || conns < 1 || conns > 64 || cf.clicks < 1) {
		fprintf(stderr, "bench_pgpost: TOTAL, BATCH, CLICKS >= 1, SECONDS > 0, CONNS 1..64\n");
		return 2;
	}
	ws = calloc((size_t)conns, sizeof(*ws));
	if (!ws)
		return 1;
	t0 = uv_hrtime();
	cf.stop_at = t0 + (uint64_t)(secs * 1e9);
	for (i = 0; i < conns; i++) {
		ws[i].cfg = &cf;
		ws[i].idx = i;
		if (uv_thread_create(&ws[i].th, worker_main, &ws[i]) < 0) {
			fprintf(stderr, "bench_pgpost: cannot start thread %d\n", i);
			return 1;
		}
	}
	for (i = 0; i < conns; i++) {
		uv_thread_join(&ws[i].th);
		groups += ws[i].groups;
		if (ws[i].failed) {
			fprintf(stderr, "bench_pgpost: connection %d: %s\n", i, ws[i].err);
			rc = 1;
		}
	}
	t1 = uv_hrtime();
	if (!rc) {
		double s = (double)(t1 - t0) / 1e9;
		long done = atomic_load(&done_pb);

		printf("{\"postbacks\":%ld,\"seconds\":%.3f,\"rate\":%.1f,\"batch\":%ld,\"conns\":%ld,"
		       "\"groups\":%ld}\n", done, s, (double)done / s, cf.batch, conns, groups);
	}
	free(ws);
	return rc;
}
