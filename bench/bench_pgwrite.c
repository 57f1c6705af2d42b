/* bench_pgwrite: PostgreSQL's own rate for the poller's writes, without
 * leadsync: the ceiling a poll pass is held to (issue 10). C threads, one
 * libpq connection each, take offers from a shared counter and, per batch
 * of --batch leads, run the poller's page select and the poller's batch
 * write (the texts of include/poll_sql.h, the payloads built by the
 * poller's own poll_sql_change()) with a --change share of the leads
 * changed: status 2 <-> 3 (processing <-> callback), so that a second run
 * over the same database changes as many. No CRM, no rule, no loop: what
 * is left is what PostgreSQL does for the pass.
 *
 *   bench_pgwrite --db CONNINFO --offers N --leads M [--batch 100]
 *       [--change 0.2] [--connections 2] [--worker NAME] [--seed]
 *       [--design new|old]
 *
 * The database is seeded already (bench/sec_pass.py does it), or by a
 * run with --seed, which only seeds and exits: offers 1..N (rule "bench") with M leads each in status 2, ext
 * 'E<id>', ids (offer-1)*M+1 .. offer*M, and the offers' processing rows
 * of poll_schedule leased to --worker. --design old runs the statements
 * the poller ran before issue 10 (BEGIN; lease check; lock read of the
 * batch's leads; the write with `checked` set on every lead asked;
 * COMMIT), kept here only to show both designs' figures side by side.
 *
 * Prints one JSON line: {"batches", "leads", "changes", "seconds",
 * "leads_per_s", "changes_per_s", "wal_bytes", "n_tup_upd",
 * "n_tup_hot_upd", "hot_pct", "design"}. wal_bytes and the update counts
 * are the whole server's over the run (run it alone). */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "buf.h"
#include "lead.h"
#include "poll_sql.h"
#include "store.h"

static const char *opt_db;
static long opt_offers, opt_leads, opt_batch = 100, opt_conns = 2;
static double opt_change = 0.2;
static const char *opt_worker = "bench";
static int opt_seed, opt_old;

static atomic_long next_offer;
static atomic_long tot_batches, tot_leads, tot_changes;
static atomic_int failed;

/* The pre-issue-10 write (poller.c before it): the lead rows re-read under
 * lock and compared in C, then this statement, in one transaction. */
static const char old_lock_sql[] =
	"SELECT " POLL_LEAD_COLS " FROM leads l WHERE l.id = ANY($1::bigint[])"
	" ORDER BY l.id FOR NO KEY UPDATE";
static const char old_lease_sql[] =
	"SELECT 1 FROM poll_schedule WHERE offer = $1 AND variant = $2 AND lease_owner = $3"
	" FOR KEY SHARE";
static const char old_write_sql[] =
	"WITH r AS ("
	" INSERT INTO poll_runs (" POLL_RUN_COLS ")"
	" VALUES ($1, $2, $3, to_timestamp($4::double precision / 1000000),"
	"  to_timestamp($5::double precision / 1000000), $6, $7, $8, $9, $10, $11, $12, $13, $14,"
	"  $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, 0)" /* rule_cpu_ms */
	" RETURNING id"
	"), u AS ("
	" UPDATE leads l SET" LEAD_STORE_SET ", checked = now()"
	" FROM json_to_recordset($25::json) AS x(" LEAD_STORE_RECORD ")"
	" WHERE l.id = x.id AND x.id = ANY($27::bigint[])"
	"), k AS ("
	" UPDATE leads l SET checked = now() WHERE l.id IN (SELECT id FROM leads"
	"  WHERE id = ANY($28::bigint[]) ORDER BY id FOR NO KEY UPDATE)"
	"), h AS ("
	" " LEAD_STORE_HISTORY_INSERT " SELECT x.lead, 'poll', r.id, x.before, x.after"
	" FROM r, json_to_recordset($26::json) AS x(" LEAD_STORE_HISTORY_RECORD ")"
	" WHERE x.lead = ANY($27::bigint[])"
	")"
	" SELECT id FROM r";

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int64_t wall_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* The old design's statements, unprepared as the old poller ran them
 * (store_query, as it did). */
static PGresult *q_old(PGconn *c, const char *sql, int n, const char *const *p)
{
	char err[1024];
	PGresult *r = store_query(c, "old design", sql, n, p, err, sizeof(err));

	if (!r) {
		fprintf(stderr, "bench_pgwrite: %s\n", err);
		atomic_store(&failed, 1);
	}
	return r;
}

/* The poller's statements, prepared per connection under the poller's
 * names, as the poller runs them (store_query_prepared). */
static PGresult *q(PGconn *c, const char *name, const char *sql, int n, const char *const *p)
{
	char err[1024];
	PGresult *r = store_query_prepared(c, name, name, sql, n, p, err, sizeof(err));

	if (!r) {
		fprintf(stderr, "bench_pgwrite: %s\n", err);
		atomic_store(&failed, 1);
	}
	return r;
}

static int ids_arr(struct buf *b, const struct lead *l, const size_t *idx, size_t n)
{
	size_t i;
	int e = buf_addc(b, '{');

	for (i = 0; i < n; i++)
		e |= buf_addf(b, "%s%" PRId64, i ? "," : "", l[idx[i]].id);
	return e | buf_addc(b, '}');
}

/* One batch's write: changed[] indexes into leads; after[] their new
 * state. Returns the leads written, or -1. */
static long write_batch(PGconn *c, int64_t offer, const struct lead *leads, size_t n,
			const size_t *changed, const struct lead *after, size_t nchg,
			const char *upd, const char *hist, int64_t t0)
{
	char num[14][24];
	const char *p[28];
	PGresult *r;
	long written = -1;
	int i;

	snprintf(num[0], 24, "%" PRId64, offer);
	snprintf(num[1], 24, "%" PRId64, t0);
	snprintf(num[2], 24, "%" PRId64, wall_us());
	snprintf(num[3], 24, "%zu", n);
	for (i = 0; i < 28; i++)
		p[i] = "0";
	p[0] = num[0];
	p[1] = "processing";
	p[2] = opt_worker;
	p[3] = num[1];
	p[4] = num[2];
	p[5] = "GET";
	p[6] = "http://127.0.0.1:1/orders?ids=...";
	p[7] = "200";
	p[8] = "4000";
	p[9] = num[3];
	p[15] = "1";
	p[16] = "ok";
	p[17] = NULL;
	p[18] = "[...]";
	p[19] = "false";
	p[21] = NULL;
	p[22] = "application/json";
	if (!opt_old) {
		if (!nchg) {
			r = q(c, "leadsync_poll_row", POLL_SQL_ROW, POLL_SQL_ROW_PARAMS, p);
			written = r ? 0 : -1;
			PQclear(r);
			return written;
		}
		p[25] = upd;
		p[26] = hist;
		p[27] = "poll";
		r = q(c, "leadsync_poll_write", POLL_SQL_WRITE, POLL_SQL_WRITE_PARAMS, p);
		if (!r)
			return -1;
		if (strcmp(PQgetvalue(r, 0, 0), "0") == 0) {
			fprintf(stderr, "bench_pgwrite: offer %" PRId64 ": lease lost (seeded for"
				" worker '%s'?)\n", offer, opt_worker);
			atomic_store(&failed, 1);
		} else {
			const char *s = PQgetvalue(r, 0, 2);

			written = *s && strcmp(s, "{}") != 0;
			for (; *s; s++)
				written += *s == ',';
		}
		PQclear(r);
		return written;
	}
	/* the old design */
	{
		struct buf all, chg, other;
		size_t *idx = malloc((n + 1) * sizeof(*idx)), *oth = malloc((n + 1) * sizeof(*oth));
		size_t i2, j = 0, no = 0;
		const char *lp[3] = { num[0], "processing", opt_worker };
		const char *ap;

		buf_init(&all, 0);
		buf_init(&chg, 0);
		buf_init(&other, 0);
		for (i2 = 0; i2 < n; i2++) {
			idx[i2] = i2;
			if (j < nchg && changed[j] == i2)
				j++;
			else
				oth[no++] = i2;
		}
		if (ids_arr(&all, leads, idx, n) < 0 || ids_arr(&chg, leads, changed, nchg) < 0 ||
		    ids_arr(&other, leads, oth, no) < 0)
			goto old_out;
		PQclear(q_old(c, "BEGIN", 0, NULL));
		PQclear(q_old(c, old_lease_sql, 3, lp));
		ap = all.p;
		PQclear(q_old(c, old_lock_sql, 1, &ap));
		snprintf(num[4], 24, "%zu", nchg);
		p[10] = num[4];
		p[24] = nchg ? upd : "[]";
		p[25] = nchg ? hist : "[]";
		p[26] = chg.p;
		p[27] = other.p;
		PQclear(q_old(c, old_write_sql, 28, p));
		PQclear(q_old(c, "COMMIT", 0, NULL));
		written = atomic_load(&failed) ? -1 : (long)nchg;
	old_out:
		(void)after;
		free(idx);
		free(oth);
		buf_release(&all);
		buf_release(&chg);
		buf_release(&other);
		return written;
	}
}

static void *worker(void *arg)
{
	PGconn *c = PQconnectdb(opt_db);
	struct lead *after = malloc((size_t)opt_batch * sizeof(*after));
	size_t *changed = malloc((size_t)opt_batch * sizeof(*changed));
	struct buf upd, hist, bj, aj;

	(void)arg;
	buf_init(&upd, 0);
	buf_init(&hist, 0);
	buf_init(&bj, 0);
	buf_init(&aj, 0);
	if (PQstatus(c) != CONNECTION_OK || !after || !changed) {
		fprintf(stderr, "bench_pgwrite: %s", PQerrorMessage(c));
		atomic_store(&failed, 1);
		goto out;
	}
	for (;;) {
		long o = atomic_fetch_add(&next_offer, 1);
		int64_t cursor = 0;
		bool first = true;

		if (o > opt_offers || atomic_load(&failed))
			break;
		for (;;) {
			char a[24], b[24], cc[24];
			const char *p[4] = { a, b, cc, first ? "true" : "false" };
			int64_t t0 = wall_us();
			PGresult *r;
			struct lead *leads;
			size_t n, i, nchg = 0;
			long w;

			snprintf(a, sizeof(a), "%ld", o);
			snprintf(b, sizeof(b), "%" PRId64, cursor);
			snprintf(cc, sizeof(cc), "%ld", opt_batch);
			first = false;
			r = q(c, "leadsync_poll_sel_processing", POLL_SQL_SEL_PROCESSING, 4, p);
			if (!r)
				goto out;
			n = (size_t)PQntuples(r);
			if (!n) {
				PQclear(r);
				break;
			}
			leads = malloc(n * sizeof(*leads));
			uint32_t *xmin = malloc(n * sizeof(*xmin));

			buf_reset(&upd);
			buf_reset(&hist);
			if (!leads || !xmin || buf_addc(&upd, '[') < 0 || buf_addc(&hist, '[') < 0) {
				atomic_store(&failed, 1);
				PQclear(r);
				free(leads);
				free(xmin);
				goto out;
			}
			for (i = 0; i < n; i++) {
				if (poll_sql_lead_row(r, (int)i, &leads[i], &xmin[i]) < 0)
					atomic_store(&failed, 1);
				/* spread evenly: lead i changes when floor((i+1)c) > floor(ic) */
				if ((long)((double)(i + 1) * opt_change) > (long)((double)i * opt_change)) {
					int d;

					after[nchg] = leads[i];
					after[nchg].status = leads[i].status == 3 ? 2 : 3;
					d = poll_sql_change(&upd, &hist, &leads[i], &after[nchg], xmin[i],
							    nchg == 0, &bj, &aj);
					if (d < 0)
						atomic_store(&failed, 1);
					if (d > 0)
						changed[nchg++] = i;
				}
			}
			PQclear(r);
			if (buf_addc(&upd, ']') < 0 || buf_addc(&hist, ']') < 0)
				atomic_store(&failed, 1);
			cursor = leads[n - 1].id;
			w = atomic_load(&failed) ? -1 : write_batch(c, o, leads, n, changed, after, nchg,
								    upd.p, hist.p, t0);
			free(leads);
			free(xmin);
			if (w < 0)
				goto out;
			atomic_fetch_add(&tot_batches, 1);
			atomic_fetch_add(&tot_leads, (long)n);
			atomic_fetch_add(&tot_changes, w);
			if ((long)n < opt_batch)
				break;
		}
	}
out:
	buf_release(&upd);
	buf_release(&hist);
	buf_release(&bj);
	buf_release(&aj);
	free(after);
	free(changed);
	PQfinish(c);
	return NULL;
}

static int seed(PGconn *c)
{
	char sql[2048];
	PGresult *r;
	int ok;

	snprintf(sql, sizeof(sql),
		 "INSERT INTO advertisers (id, name, api_key) VALUES (1, 'bench', 'k-bench')"
		 " ON CONFLICT DO NOTHING;"
		 "INSERT INTO offers (id, advertiser, name, rule)"
		 " SELECT o, 1, 'O' || o, 'bench' FROM generate_series(1, %ld) o;"
		 "INSERT INTO leads (id, offer, ext, status, created)"
		 " SELECT (o - 1) * %ld + i, o, 'E' || ((o - 1) * %ld + i), 2,"
		 "  now() - interval '1 day' FROM generate_series(1, %ld) o, generate_series(1, %ld) i;"
		 "SELECT setval(pg_get_serial_sequence('leads', 'id'), %ld * %ld);"
		 "UPDATE poll_schedule SET lease_owner = '%s', lease_until = now() + interval '1 day'"
		 " WHERE variant = 'processing'",
		 opt_offers, opt_leads, opt_leads, opt_offers, opt_leads, opt_offers, opt_leads,
		 opt_worker);
	r = PQexec(c, sql);
	ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
	PQclear(r);
	if (ok) { /* as after an import: statistics known, pages all-visible */
		r = PQexec(c, "VACUUM ANALYZE");
		ok = PQresultStatus(r) == PGRES_COMMAND_OK;
		PQclear(r);
	}
	if (!ok)
		fprintf(stderr, "bench_pgwrite: seed: %s", PQerrorMessage(c));
	return ok ? 0 : -1;
}

/* The server's WAL position and the leads' update counts. */
static int server_counts(PGconn *c, char *lsn, size_t lsnlen, long long *upd, long long *hot)
{
	PGresult *r = PQexec(c, "SELECT pg_current_wal_lsn()::text, coalesce(n_tup_upd, 0),"
				" coalesce(n_tup_hot_upd, 0) FROM pg_stat_user_tables"
				" WHERE relname = 'leads'");
	int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;

	if (ok) {
		snprintf(lsn, lsnlen, "%s", PQgetvalue(r, 0, 0));
		*upd = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
		*hot = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
	}
	PQclear(r);
	return ok ? 0 : -1;
}

static int usage(void)
{
	fprintf(stderr, "usage: bench_pgwrite --db CONNINFO --offers N --leads M [--batch 100]\n"
			"       [--change 0.2] [--connections 2] [--worker NAME] [--seed]\n"
			"       [--design new|old]\n");
	return 2;
}

int main(int argc, char **argv)
{
	pthread_t th[64];
	char lsn0[64], lsn1[64], sql[256];
	long long u0, h0, u1, h1, wal = 0;
	double t0, secs;
	PGconn *c;
	PGresult *r;
	long i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--seed") == 0) {
			opt_seed = 1;
			continue;
		}
		if (!v)
			return usage();
		if (strcmp(a, "--db") == 0)
			opt_db = v;
		else if (strcmp(a, "--offers") == 0)
			opt_offers = strtol(v, NULL, 10);
		else if (strcmp(a, "--leads") == 0)
			opt_leads = strtol(v, NULL, 10);
		else if (strcmp(a, "--batch") == 0)
			opt_batch = strtol(v, NULL, 10);
		else if (strcmp(a, "--change") == 0)
			opt_change = strtod(v, NULL);
		else if (strcmp(a, "--connections") == 0)
			opt_conns = strtol(v, NULL, 10);
		else if (strcmp(a, "--worker") == 0)
			opt_worker = v;
		else if (strcmp(a, "--design") == 0 && (strcmp(v, "new") == 0 || strcmp(v, "old") == 0))
			opt_old = strcmp(v, "old") == 0;
		else
			return usage();
		i++;
	}
	if (!opt_db || opt_offers < 1 || opt_leads < 1 || opt_batch < 1 || opt_conns < 1 ||
	    opt_conns > 64 || opt_change < 0 || opt_change > 1 || strchr(opt_worker, '\''))
		return usage();
	c = PQconnectdb(opt_db);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "bench_pgwrite: %s", PQerrorMessage(c));
		PQfinish(c);
		return 1;
	}
	if (opt_seed) {
		int rc = seed(c) < 0 ? 1 : 0;

		PQfinish(c);
		return rc;
	}
	if (server_counts(c, lsn0, sizeof(lsn0), &u0, &h0) < 0) {
		fprintf(stderr, "bench_pgwrite: %s", PQerrorMessage(c));
		PQfinish(c);
		return 1;
	}
	atomic_store(&next_offer, 1);
	t0 = now_s();
	for (i = 0; i < opt_conns; i++)
		if (pthread_create(&th[i], NULL, worker, NULL) != 0) {
			atomic_store(&failed, 1);
			break;
		}
	opt_conns = i;
	for (i = 0; i < opt_conns; i++)
		pthread_join(th[i], NULL);
	secs = now_s() - t0;
	/* the backends flush their table counts when they end; a moment later
	 * they are in pg_stat_user_tables */
	PQclear(PQexec(c, "SELECT pg_stat_clear_snapshot()"));
	usleep(1200 * 1000);
	PQclear(PQexec(c, "SELECT pg_stat_clear_snapshot()"));
	if (server_counts(c, lsn1, sizeof(lsn1), &u1, &h1) == 0) {
		snprintf(sql, sizeof(sql), "SELECT pg_wal_lsn_diff('%s', '%s')::bigint", lsn1, lsn0);
		r = PQexec(c, sql);
		if (PQresultStatus(r) == PGRES_TUPLES_OK)
			wal = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		PQclear(r);
	}
	PQfinish(c);
	if (atomic_load(&failed))
		return 1;
	printf("{\"batches\": %ld, \"leads\": %ld, \"changes\": %ld, \"seconds\": %.3f,"
	       " \"leads_per_s\": %.1f, \"changes_per_s\": %.1f, \"wal_bytes\": %lld,"
	       " \"n_tup_upd\": %lld, \"n_tup_hot_upd\": %lld, \"hot_pct\": %.1f,"
	       " \"design\": \"%s\"}\n",
	       atomic_load(&tot_batches), atomic_load(&tot_leads), atomic_load(&tot_changes), secs,
	       (double)atomic_load(&tot_leads) / secs, (double)atomic_load(&tot_changes) / secs, wal,
	       u1 - u0, h1 - h0, u1 > u0 ? 100.0 * (double)(h1 - h0) / (double)(u1 - u0) : 0.0,
	       opt_old ? "old" : "new");
	return 0;
}
