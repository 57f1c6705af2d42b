/* test_scheduler: the scheduler's statements against each other on two
 * connections of a real PostgreSQL (issue 8 item 8: a heartbeat and a
 * release that lock overlapping schedule rows in different orders
 * deadlock). */
#define _GNU_SOURCE
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <libpq-fe.h>

#include "buf.h"
#include "import.h"
#include "scheduler.h"
#include "store.h"

#define TS_OFFERS 100
#define TS_ROUNDS 60

static const unsigned ts_iv[RULE_VARIANTS] = { 600, 10800, 3600 };

struct ts_side {
	PGconn *c;
	bool reversed;         /* keys in descending order */
	bool releases;         /* also gives the pairs back and claims them again */
	atomic_int *deadlocks;
	atomic_bool *stop;
	unsigned rounds;       /* statements run */
	char err[1024];        /* the first error that was not a deadlock */
};

/* Every pair of the offers, ascending by (offer, variant) or descending. */
static void ts_keys(struct sched_key *k, bool reversed)
{
	size_t i, n = (size_t)TS_OFFERS * RULE_VARIANTS;

	for (i = 0; i < n; i++) {
		size_t j = reversed ? n - 1 - i : i;

		k[i].offer = 1000 + (int64_t)(j / RULE_VARIANTS);
		k[i].variant = (enum rule_variant)(j % RULE_VARIANTS);
	}
}

/* A deadlock is what PostgreSQL reports as 40P01: "deadlock detected". */
static void ts_error(struct ts_side *s, const char *err)
{
	if (strstr(err, "deadlock detected"))
		atomic_fetch_add(s->deadlocks, 1);
	else if (!s->err[0])
		snprintf(s->err, sizeof(s->err), "%s", err);
}

static void *ts_main(void *arg)
{
	struct ts_side *s = arg;
	size_t n = (size_t)TS_OFFERS * RULE_VARIANTS, i;
	struct sched_key *keys = calloc(n, sizeof(*keys));
	struct sched_release *rel = calloc(n, sizeof(*rel));
	bool *alive = calloc(n, sizeof(*alive));
	char err[1024];
	unsigned r;

	if (!keys || !rel || !alive) {
		snprintf(s->err, sizeof(s->err), "out of memory");
		goto out;
	}
	ts_keys(keys, s->reversed);
	for (i = 0; i < n; i++) {
		rel[i].offer = keys[i].offer;
		rel[i].variant = keys[i].variant;
		rel[i].end = SCHED_REQUEUE; /* keeps the due time: claimable again */
	}
	/* the heartbeat-only side runs until the other is done */
	for (r = 0; (!s->releases || r < TS_ROUNDS) && !atomic_load(s->stop); r++) {
		if (scheduler_sql_heartbeat(s->c, "w1", 60, keys, n, alive, err, sizeof(err)) < 0)
			ts_error(s, err);
		if (s->releases) {
			struct sched_pair **pairs = NULL;
			size_t np = 0, k;

			if (scheduler_sql_release(s->c, "w1", rel, n, err, sizeof(err)) < 0)
				ts_error(s, err);
			if (scheduler_sql_claim(s->c, "w1", 60, (unsigned)n, ts_iv, &pairs, &np, err,
						sizeof(err)) < 0)
				ts_error(s, err);
			for (k = 0; k < np; k++)
				free(pairs[k]);
			free(pairs);
		}
		s->rounds++;
		if (s->err[0])
			break;
	}
out:
	free(keys);
	free(rel);
	free(alive);
	return NULL;
}

static bool ts_connect(const char *ci, PGconn **c)
{
	char err[1024];

	if (store_connect(ci, c, err, sizeof(err)) < 0) {
		printf("  %s\n", err);
		return false;
	}
	/* a deadlock is found after deadlock_timeout: look sooner when the
	 * server lets us (superuser), so a failing run fails fast */
	PQclear(PQexec(*c, "SET deadlock_timeout = '50ms'"));
	return true;
}

/* Heartbeats in one order against heartbeats, releases and claims in the
 * other, on two connections, over the same 300 leased pairs: with every
 * multi-row statement locking in (offer, variant) order, none deadlocks.
 * Pass or fail does not depend on timing: a run with no overlap at all
 * would pass too, so the rounds are many and the sets whole. */
TEST(scheduler_heartbeats_and_releases_never_deadlock)
{
	PGconn *c = NULL;
	char *ci = NULL, err[1024];
	struct import_stats st;
	struct ts_side a, b;
	atomic_int deadlocks = 0;
	atomic_bool stop = false;
	pthread_t ta, tb;
	struct buf imp;
	FILE *in;
	struct sched_pair **pairs = NULL;
	size_t np = 0, k;
	int i;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	buf_init(&imp, 0);
	c = test_db_migrated("ls_sched_deadlock", &ci);
	ASSERT(c);
	/* offers imported in descending id order: the table's physical order
	 * is then the reverse of the key order */
	if (buf_adds(&imp, "{\"advertiser\": {\"id\": 1, \"name\": \"Acme\","
			   " \"api_key\": \"k\"}}\n") < 0)
		goto out;
	for (i = TS_OFFERS - 1; i >= 0; i--)
		if (buf_addf(&imp, "{\"offer\": {\"id\": %d, \"advertiser\": 1, \"name\": \"O%d\","
				   " \"rule\": \"x\"}}\n", 1000 + i, i) < 0)
			goto out;
	in = fmemopen(imp.p, imp.len, "r");
	if (!in || import_run(c, in, &st, err, sizeof(err)) < 0) {
		if (in)
			fclose(in);
		test__fail(__FILE__, __LINE__, "import: %s", err);
		goto out;
	}
	fclose(in);
	if (scheduler_sql_claim(c, "w1", 60, TS_OFFERS * RULE_VARIANTS, ts_iv, &pairs, &np, err,
				sizeof(err)) < 0) {
		test__fail(__FILE__, __LINE__, "claim: %s", err);
		goto out;
	}
	for (k = 0; k < np; k++)
		free(pairs[k]);
	free(pairs);
	if (np != TS_OFFERS * RULE_VARIANTS) {
		test__fail(__FILE__, __LINE__, "claimed %zu pairs", np);
		goto out;
	}
	a.reversed = true;
	b.releases = true;
	a.deadlocks = b.deadlocks = &deadlocks;
	a.stop = b.stop = &stop;
	if (!ts_connect(ci, &a.c) || !ts_connect(ci, &b.c)) {
		test__fail(__FILE__, __LINE__, "connect");
		goto out;
	}
	pthread_create(&ta, NULL, ts_main, &a);
	pthread_create(&tb, NULL, ts_main, &b);
	pthread_join(tb, NULL);
	atomic_store(&stop, true);
	pthread_join(ta, NULL);
	if (a.err[0] || b.err[0])
		test__fail(__FILE__, __LINE__, "error: %s", a.err[0] ? a.err : b.err);
	if (atomic_load(&deadlocks))
		test__fail(__FILE__, __LINE__, "%d deadlocks in %u + %u rounds",
			   atomic_load(&deadlocks), a.rounds, b.rounds);
out:
	PQfinish(a.c);
	PQfinish(b.c);
	PQfinish(c);
	free(ci);
	buf_release(&imp);
}
