/* test_store: migrations against a real PostgreSQL (store.c, migrations/). */
#include "test.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "store.h"

/* First value of the first row of sql, malloc'd; NULL when there is none
 * or the query fails. */
static char *store_t_value(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	char *v = NULL;

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) && !PQgetisnull(r, 0, 0))
		v = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	return v;
}

static bool store_t_is(PGconn *c, const char *sql, const char *want)
{
	char *v = store_t_value(c, sql);
	bool ok = v && strcmp(v, want) == 0;

	if (!ok)
		printf("  %s: got %s, want %s\n", sql, v ? v : "(null)", want);
	free(v);
	return ok;
}

static PGconn *store_t_connect(const char *db)
{
	char *ci = test_db_fresh(db);
	char err[512];
	PGconn *c = NULL;

	if (!ci)
		return NULL;
	if (store_connect(ci, &c, err, sizeof(err)) < 0)
		test__fail(__FILE__, __LINE__, "connect: %s", err);
	free(ci);
	return c;
}

TEST(store_migrate_applies_all_then_nothing)
{
	PGconn *c = store_t_connect("ls_store_migrate");
	char err[1024], nmig[24];
	int applied = -1;

	ASSERT(c);
	ASSERT(store_migrations_count >= 1);
	ASSERT_STREQ(store_migrations[0].name, "001_schema.sql");
	ASSERT(store_migrations[store_migrations_count].name == NULL);
	ASSERT_EQ(store_migrate(c, &applied, err, sizeof(err)), 0);
	ASSERT_EQ(applied, (int)store_migrations_count);
	snprintf(nmig, sizeof(nmig), "%zu", store_migrations_count);
	ASSERT(store_t_is(c, "SELECT count(*) FROM schema_migrations", nmig));
	ASSERT(store_t_is(c, "SELECT count(*) FROM currencies WHERE iso IN ('USD','EUR','RUB',"
			     "'UAH','KZT','BYN','GBP','PLN','TRY','INR','BRL')",
			  "11"));
	ASSERT(store_t_is(c, "SELECT count(*) >= 20 FROM currencies", "t"));
	ASSERT(store_t_is(c, "SELECT id FROM currencies WHERE iso = 'USD'", "840"));
	ASSERT(store_t_is(c, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND"
			     " tablename IN ('advertisers','offers','currencies','goals','clicks',"
			     "'customers','leads','lead_history','poll_schedule','poll_runs',"
			     "'postbacks_in')",
			  "11"));
	ASSERT_EQ(store_migrate(c, &applied, err, sizeof(err)), 0);
	ASSERT_EQ(applied, 0);
	snprintf(nmig, sizeof(nmig), "%zu", store_migrations_count);
	ASSERT(store_t_is(c, "SELECT count(*) FROM schema_migrations", nmig));
	PQfinish(c);
}

struct store_t_worker {
	const char *conninfo;
	int rc, applied;
	char err[512];
};

static void *store_t_migrate_thread(void *arg)
{
	struct store_t_worker *w = arg;
	PGconn *c = NULL;

	w->rc = store_connect(w->conninfo, &c, w->err, sizeof(w->err));
	if (w->rc == 0)
		w->rc = store_migrate(c, &w->applied, w->err, sizeof(w->err));
	PQfinish(c);
	return NULL;
}

TEST(store_migrate_concurrently_applies_once)
{
	char *ci = test_db_fresh("ls_store_concurrent");
	struct store_t_worker w[3];
	pthread_t t[3];
	PGconn *c = NULL;
	char err[512], nmig[24];
	int i, total = 0;

	ASSERT(ci);
	for (i = 0; i < 3; i++) {
		w[i] = (struct store_t_worker){ .conninfo = ci, .rc = -1 };
		ASSERT_EQ(pthread_create(&t[i], NULL, store_t_migrate_thread, &w[i]), 0);
	}
	for (i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	for (i = 0; i < 3; i++) {
		if (w[i].rc != 0)
			printf("  worker %d: %s\n", i, w[i].err);
		ASSERT_EQ(w[i].rc, 0);
		total += w[i].applied;
	}
	ASSERT_EQ(total, (int)store_migrations_count);
	ASSERT_EQ(store_connect(ci, &c, err, sizeof(err)), 0);
	snprintf(nmig, sizeof(nmig), "%zu", store_migrations_count);
	ASSERT(store_t_is(c, "SELECT count(*) FROM schema_migrations", nmig));
	PQfinish(c);
	free(ci);
}

TEST(store_migrate_failure_names_the_migration_and_keeps_the_earlier)
{
	PGconn *c = store_t_connect("ls_store_fail");
	const struct store_migration bad[] = {
		{ "001_a.sql", "CREATE TABLE a (x int);" },
		{ "002_b.sql", "CREATE TABLE b (x int);\n-- then a typo\nCREATE TABL c (x int);" },
		{ "003_c.sql", "CREATE TABLE d (x int);" },
	};
	const struct store_migration fixed[] = {
		bad[0],
		{ "002_b.sql", "CREATE TABLE b (x int);" },
		bad[2],
	};
	char err[1024];
	int applied = -1;

	ASSERT(c);
	ASSERT_EQ(store_migrate_list(c, bad, 3, &applied, err, sizeof(err)), -1);
	ASSERT_EQ(applied, 1);
	if (getenv("TEST_VERBOSE"))
		printf("  %s\n", err);
	ASSERT_CONTAINS(err, "migration 002_b.sql: ERROR: syntax error at or near \"TABL\"");
	ASSERT_CONTAINS(err, "(line 3)");
	ASSERT(store_t_is(c, "SELECT to_regclass('a') IS NOT NULL", "t"));
	ASSERT(store_t_is(c, "SELECT to_regclass('b') IS NULL AND to_regclass('d') IS NULL", "t"));
	ASSERT(store_t_is(c, "SELECT string_agg(name, ',') FROM schema_migrations", "001_a.sql"));
	/* the advisory lock was let go: the same session migrates again */
	ASSERT_EQ(store_migrate_list(c, fixed, 3, &applied, err, sizeof(err)), 0);
	ASSERT_EQ(applied, 2);
	ASSERT(store_t_is(c, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'", "0"));
	PQfinish(c);
}

TEST(store_migrate_refuses_transaction_control_and_disorder)
{
	PGconn *c = store_t_connect("ls_store_refuse");
	const struct store_migration commit[] = {
		{ "001_a.sql", "CREATE TABLE a (x int); COMMIT;" },
	};
	const struct store_migration disorder[] = {
		{ "002_b.sql", "SELECT 1" },
		{ "001_a.sql", "SELECT 1" },
	};
	char err[1024];
	int applied = -1;

	ASSERT(c);
	ASSERT_EQ(store_migrate_list(c, commit, 1, &applied, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "migration 001_a.sql: it ends the transaction");
	ASSERT(store_t_is(c, "SELECT count(*) FROM schema_migrations", "0"));
	ASSERT_EQ(store_migrate_list(c, disorder, 2, &applied, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "migration '001_a.sql' is out of order after '002_b.sql'");
	ASSERT_EQ(applied, 0);
	PQfinish(c);
}

TEST(store_connect_names_the_failure)
{
	PGconn *c = (PGconn *)1;
	char err[512] = "";

	ASSERT_EQ(store_connect("host=/nonexistent-leadsync-dir port=1 dbname=x connect_timeout=2",
				&c, err, sizeof(err)),
		  -1);
	ASSERT(c == NULL);
	ASSERT_CONTAINS(err, "cannot connect to the database: ");
	ASSERT(!strchr(err, '\n'));
}

/* A password planted in each string: it must never come back. */
#define STORE_T_PW "Plant3dPw9"

/* store_connect_fault() on ci fails with fault, names why, hides the
 * password and says it on one line. */
static bool store_t_refused(const char *ci, enum store_fault want, const char *why)
{
	enum store_fault f = STORE_FAULT_NONE;
	PGconn *c = (PGconn *)1;
	char err[1024] = "";
	int rc = store_connect_fault(ci, &c, &f, err, sizeof(err));

	if (rc != -1 || c != NULL || f != want || !strstr(err, why) ||
	    strstr(err, STORE_T_PW) || strchr(err, '\n') ||
	    !strstr(err, "cannot connect to the database: ")) {
		printf("  %s\n  rc %d fault %d (want %d), err: %s\n  want: %s\n", ci, rc, (int)f,
		       (int)want, err, why);
		if (rc == 0)
			PQfinish(c);
		return false;
	}
	return true;
}

TEST(store_connect_tells_a_wrong_configuration_from_a_server_down)
{
	const char *base = getenv("LEADSYNC_TEST_PG");
	enum store_fault f = STORE_FAULT_DOWN;
	char ci[1024], err[1024];
	PGconn *c = NULL;

	ASSERT(base && *base);
	/* the server answers: SQLSTATE 28000 and 3D000 */
	snprintf(ci, sizeof(ci), "%s user=ls_nosuchrole password=" STORE_T_PW " dbname=postgres",
		 base);
	ASSERT(store_t_refused(ci, STORE_FAULT_CONFIG,
			       "wrong configuration (the role is unknown or not allowed in, SQLSTATE "
			       "28000): "));
	ASSERT(store_t_refused(ci, STORE_FAULT_CONFIG, "role \"ls_nosuchrole\" does not exist"));
	snprintf(ci, sizeof(ci), "%s password=" STORE_T_PW " dbname=ls_nosuchdb", base);
	ASSERT(store_t_refused(ci, STORE_FAULT_CONFIG,
			       "wrong configuration (the database does not exist, SQLSTATE 3D000): "));
	ASSERT(store_t_refused(ci, STORE_FAULT_CONFIG, "database \"ls_nosuchdb\" does not exist"));
	/* libpq cannot read the string: no server is asked */
	snprintf(ci, sizeof(ci), "%s password=" STORE_T_PW " dbname=postgres bogus=1", base);
	ASSERT(store_t_refused(ci, STORE_FAULT_CONFIG,
			       "wrong configuration (invalid connection string): invalid connection "
			       "option \"bogus\""));
	ASSERT(store_t_refused("host=/tmp password=" STORE_T_PW " x", STORE_FAULT_CONFIG,
			       "missing \"=\" after \"***\""));
	ASSERT(store_t_refused("postgresql://u:" STORE_T_PW "@[::1/db", STORE_FAULT_CONFIG,
			       "\"postgresql://u:***@[::1/db\""));
	/* nothing listens: down, retried by whoever calls */
	ASSERT(store_t_refused("host=/nonexistent-leadsync-dir port=1 dbname=x connect_timeout=2 "
			       "password=" STORE_T_PW,
			       STORE_FAULT_DOWN, "No such file or directory"));
	ASSERT(store_t_refused("postgresql://postgres:" STORE_T_PW "@127.0.0.1:1/x?connect_timeout=2",
			       STORE_FAULT_DOWN, "Connection refused"));
	snprintf(ci, sizeof(ci), "%s dbname=postgres", base);
	ASSERT_EQ(store_connect_fault(ci, &c, &f, err, sizeof(err)), 0);
	ASSERT_EQ((int)f, (int)STORE_FAULT_NONE);
	/* the session is as store_connect() always set it up, errors terse */
	ASSERT(store_t_is(c, "SHOW TimeZone", "UTC"));
	ASSERT_EQ((int)PQsetErrorVerbosity(c, PQERRORS_DEFAULT), (int)PQERRORS_DEFAULT);
	PQfinish(c);
}

static bool store_t_masked(const char *ci, const char *text, const char *want,
			   const char *gone)
{
	char out[512];

	store_mask_conninfo(ci, text, out, sizeof(out));
	if (strcmp(out, want) != 0 || (gone && strstr(out, gone))) {
		printf("  %s\n  got  %s\n  want %s\n", ci, out, want);
		return false;
	}
	return true;
}

TEST(store_mask_conninfo_hides_passwords_libpq_cannot_parse)
{
	/* a password with a space, unquoted: libpq quotes its second half */
	ASSERT(store_t_masked("host=h password=sec ret user=u",
			      "missing \"=\" after \"ret\" in connection info string",
			      "missing \"=\" after \"***\" in connection info string", "ret"));
	ASSERT(store_t_masked("host=h password = 'it s' user=u", "x it s y", "x *** y", "it s"));
	ASSERT(store_t_masked("host=h password='a b\\' c' user=u", "\"a b\\' c\" u",
			      "\"***\" u", "a b"));
	/* a URI's user:pass@, whole or percent-encoded, parsed or not */
	ASSERT(store_t_masked("postgresql://bob:p%40ss99@[::1",
			      "in URI: \"postgresql://bob:p%40ss99@[::1\"",
			      "in URI: \"postgresql://bob:***@[::1\"", "p%40ss99"));
	ASSERT(store_t_masked("postgresql://bob:p%40ss99@h/db", "user bob p@ss99",
			      "user bob ***", "p@ss99"));
	ASSERT(store_t_masked("postgres://h/db?user=bob&password=Qw3rty99&sslmode=x",
			      "invalid sslmode value: \"x\" Qw3rty99",
			      "invalid sslmode value: \"x\" ***", "Qw3rty99"));
	/* no password: the message is libpq's, whole */
	ASSERT(store_t_masked("host=h user=bob", "role \"bob\" does not exist",
			      "role \"bob\" does not exist", NULL));
}

TEST(store_schema_keeps_the_lead_invariants)
{
	PGconn *c = store_t_connect("ls_store_schema");
	char err[1024];
	int applied;
	size_t i;
	static const char *const refused[] = {
		"INSERT INTO leads (offer, status) VALUES (10, 13)",
		"INSERT INTO leads (offer, status) VALUES (10, 5)",
		"INSERT INTO leads (offer, status) VALUES (10, 4)",
		"INSERT INTO leads (offer, status) VALUES (10, 6)",
		"INSERT INTO leads (offer, status, reason) VALUES (10, 5, 100)",
		"INSERT INTO leads (offer, status, request_id) VALUES (10, 1, 'r1')",
		"INSERT INTO goals (offer, code, payout, currency) VALUES (10, 'g', 'cpa', 840)",
		"INSERT INTO goals (offer, code, payout, currency, wm) VALUES (10, 'g', 'percent', 840, 101)",
		"INSERT INTO offers (id, advertiser, name, rule) VALUES (11, 1, 'x', '../etc')",
	};

	ASSERT(c);
	ASSERT_EQ(store_migrate(c, &applied, err, sizeof(err)), 0);
	ASSERT_EQ(store_exec(c, "setup", "INSERT INTO advertisers (id, name, api_key) VALUES (1, 'a', 'k')",
			     0, NULL, err, sizeof(err)), 0);
	ASSERT_EQ(store_exec(c, "setup", "INSERT INTO offers (id, advertiser, name) VALUES (10, 1, 'o')",
			     0, NULL, err, sizeof(err)), 0);
	ASSERT_EQ(store_exec(c, "setup",
			     "INSERT INTO leads (offer, status, request_id) VALUES (10, 1, 'r1')", 0,
			     NULL, err, sizeof(err)), 0);
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		PGresult *r = PQexec(c, refused[i]);
		bool failed = PQresultStatus(r) == PGRES_FATAL_ERROR;

		PQclear(r);
		if (!failed)
			printf("  accepted: %s\n", refused[i]);
		ASSERT(failed);
	}
	/* an offer has its three schedule rows while it has a rule (004) */
	ASSERT(store_t_is(c, "SELECT count(*) FROM poll_schedule WHERE offer = 10", "0"));
	ASSERT_EQ(store_exec(c, "setup", "UPDATE offers SET rule = 'crm' WHERE id = 10", 0, NULL, err,
			     sizeof(err)), 0);
	ASSERT(store_t_is(c, "SELECT string_agg(variant, ',' ORDER BY variant) FROM poll_schedule"
			     " WHERE offer = 10",
			  "accepted,dates,processing"));
	PQfinish(c);
}

/* A prepared statement is prepared once per connection: the second call
 * does not prepare again (the server would refuse a duplicate name), a
 * statement the session lost (DISCARD ALL, as a pooler does) fails that
 * one call with a message and is prepared again by the next, and a new
 * connection prepares its own. */
TEST(store_query_prepared_once_per_connection)
{
	PGconn *c = store_t_connect("store_prepared"), *c2 = NULL;
	const char *sql = "SELECT $1::integer + 1";
	const char *one = "1", *five = "5";
	char err[512], *ci;
	PGresult *r;

	ASSERT(c);
	test_defer((test_cleanup_fn)PQfinish, c);
	r = store_query_prepared(c, "t_plus", "plus", sql, 1, &one, err, sizeof(err));
	ASSERT(r && strcmp(PQgetvalue(r, 0, 0), "2") == 0);
	PQclear(r);
	r = store_query_prepared(c, "t_plus", "plus", sql, 1, &five, err, sizeof(err));
	ASSERT(r && strcmp(PQgetvalue(r, 0, 0), "6") == 0);
	PQclear(r);
	ASSERT(store_t_is(c, "SELECT count(*) FROM pg_prepared_statements", "1"));

	PQclear(PQexec(c, "DISCARD ALL"));
	r = store_query_prepared(c, "t_plus", "plus", sql, 1, &one, err, sizeof(err));
	ASSERT(!r);
	ASSERT(strstr(err, "plus: ") && strstr(err, "t_plus"));
	r = store_query_prepared(c, "t_plus", "plus", sql, 1, &one, err, sizeof(err));
	ASSERT(r && strcmp(PQgetvalue(r, 0, 0), "2") == 0);
	PQclear(r);

	ci = test_defer_free(test_db_fresh("store_prepared2"));
	ASSERT(ci && store_connect(ci, &c2, err, sizeof(err)) == 0);
	test_defer((test_cleanup_fn)PQfinish, c2);
	r = store_query_prepared(c2, "t_plus", "plus", sql, 1, &five, err, sizeof(err));
	ASSERT(r && strcmp(PQgetvalue(r, 0, 0), "6") == 0);
	PQclear(r);

	/* a bad statement is a clear error, and nothing is remembered */
	ASSERT(store_prepare(c2, "t_bad", "bad one", "SELEC 1", 0, err, sizeof(err)) < 0);
	ASSERT(strstr(err, "prepare bad one: ") && strstr(err, "syntax"));
	ASSERT(store_t_is(c2, "SELECT count(*) FROM pg_prepared_statements", "1"));
}

/* Past STORE_PREPARED_MAX names a connection remembers no more, and the
 * statements still run, the first time and again. */
TEST(store_query_prepared_past_what_a_connection_remembers)
{
	PGconn *c = store_t_connect("store_prepared_many");
	const char *one = "1";
	char err[512], name[32];
	PGresult *r;
	int i, k;

	ASSERT(c);
	test_defer((test_cleanup_fn)PQfinish, c);
	for (k = 0; k < 2; k++)
		for (i = 0; i < STORE_PREPARED_MAX + 8; i++) {
			snprintf(name, sizeof(name), "t_many_%d", i);
			r = store_query_prepared(c, name, "many", "SELECT $1::integer + 1", 1, &one,
						 err, sizeof(err));
			if (!r)
				printf("  %s: %s\n", name, err);
			ASSERT(r && strcmp(PQgetvalue(r, 0, 0), "2") == 0);
			PQclear(r);
		}
}
