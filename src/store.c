/* store: synchronous libpq helpers for the CLI: connect, migrate, run a
 * statement and say what went wrong. */
#include "store.h"

#include <libpq-events.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "leadsync" in ASCII: the advisory lock key of store_migrate(). */
#define STORE_MIGRATE_LOCK "x'6c65616473796e63'::bigint"

static void store__oneline(char *s)
{
	for (; *s; s++)
		if (*s == '\n' || *s == '\r' || *s == '\t')
			*s = ' ';
}

static void store__trim(char *s)
{
	size_t n = strlen(s);

	while (n && (s[n - 1] == ' ' || s[n - 1] == '\n'))
		s[--n] = '\0';
}

const char *store_error_text(const PGconn *c, const PGresult *r, char *out, size_t len)
{
	const char *sev = r ? PQresultErrorField(r, PG_DIAG_SEVERITY) : NULL;
	const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *detail = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL) : NULL;

	if (!len)
		return out;
	if (msg)
		snprintf(out, len, "%s: %s%s%s", sev ? sev : "ERROR", msg, detail ? ": " : "",
			 detail ? detail : "");
	else if (r && *PQresultErrorMessage(r))
		snprintf(out, len, "%s", PQresultErrorMessage(r));
	else if (c && *PQerrorMessage(c))
		snprintf(out, len, "%s", PQerrorMessage(c));
	else
		snprintf(out, len, "unknown database error");
	store__oneline(out);
	store__trim(out);
	return out;
}

const char *store_sqlstate(const PGresult *r)
{
	const char *s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

	return s ? s : "";
}

PGresult *store_query(PGconn *c, const char *what, const char *sql, int n,
		      const char *const *params, char *err, size_t errlen)
{
	PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);
	char msg[768];

	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return r;
	/* undefined_table: most likely a database that was never migrated */
	snprintf(err, errlen, "%s: %s%s", what, store_error_text(c, r, msg, sizeof(msg)),
		 strcmp(store_sqlstate(r), "42P01") == 0 ? " (run 'leadsync migrate')" : "");
	PQclear(r);
	return NULL;
}

/* The names prepared on one connection (instance data). */
struct store_prepared {
	size_t n;
	char *name[STORE_PREPARED_MAX];
};

static void store__prepared_forget(struct store_prepared *p)
{
	while (p && p->n)
		free(p->name[--p->n]);
}

static int store__conn_event(PGEventId id, void *info, void *pass)
{
	(void)pass;
	if (id == PGEVT_CONNRESET) {
		/* a reset connection is a new session: nothing is prepared */
		PGEventConnReset *e = info;

		store__prepared_forget(PQinstanceData(e->conn, store__conn_event));
	} else if (id == PGEVT_CONNDESTROY) {
		PGEventConnDestroy *e = info;
		struct store_prepared *p = PQinstanceData(e->conn, store__conn_event);

		store__prepared_forget(p);
		free(p);
	}
	return 1;
}

static struct store_prepared *store__prepared(PGconn *c)
{
	struct store_prepared *p = PQinstanceData(c, store__conn_event);

	if (p)
		return p;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	if (!PQregisterEventProc(c, store__conn_event, "leadsync store", NULL) ||
	    !PQsetInstanceData(c, store__conn_event, p)) {
		free(p);
		return NULL;
	}
	return p;
}

int store_prepare(PGconn *c, const char *name, const char *what, const char *sql, int n,
		  char *err, size_t errlen)
{
	struct store_prepared *p = store__prepared(c);
	char msg[768];
	PGresult *r;
	size_t i;

	for (i = 0; p && i < p->n; i++)
		if (strcmp(p->name[i], name) == 0)
			return 0;
	r = PQprepare(c, name, sql, n, NULL);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		snprintf(err, errlen, "prepare %s: %s%s", what, store_error_text(c, r, msg, sizeof(msg)),
			 strcmp(store_sqlstate(r), "42P01") == 0 ? " (run 'leadsync migrate')" : "");
		PQclear(r);
		return -1;
	}
	PQclear(r);
	/* not remembered (out of memory, or full): the next call prepares
	 * again, which the server refuses as a duplicate: deallocate first */
	if (!p || p->n == STORE_PREPARED_MAX || !(p->name[p->n] = strdup(name))) {
		char dealloc[160];

		snprintf(dealloc, sizeof(dealloc), "DEALLOCATE \"%s\"", name);
		PQclear(PQexec(c, dealloc));
		return 0;
	}
	p->n++;
	return 0;
}

PGresult *store_query_prepared(PGconn *c, const char *name, const char *what, const char *sql,
			       int n, const char *const *params, char *err, size_t errlen)
{
	PGresult *r;
	ExecStatusType st;
	char msg[768];

	if (store_prepare(c, name, what, sql, n, err, errlen) < 0)
		return NULL;
	r = PQexecPrepared(c, name, n, params, NULL, NULL, 0);
	st = PQresultStatus(r);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return r;
	snprintf(err, errlen, "%s: %s", what, store_error_text(c, r, msg, sizeof(msg)));
	/* 26000: the session lost its statements (DISCARD ALL by a pooler):
	 * forget them all, so the next call prepares again */
	if (strcmp(store_sqlstate(r), "26000") == 0)
		store__prepared_forget(PQinstanceData(c, store__conn_event));
	PQclear(r);
	return NULL;
}

int store_exec(PGconn *c, const char *what, const char *sql, int n, const char *const *params,
	       char *err, size_t errlen)
{
	PGresult *r = store_query(c, what, sql, n, params, err, errlen);

	PQclear(r);
	return r ? 0 : -1;
}

int store_connect(const char *conninfo, PGconn **out, char *err, size_t errlen)
{
	const char *keys[] = { "dbname", "fallback_application_name", "client_encoding", NULL };
	const char *vals[] = { conninfo, "leadsync", "UTF8", NULL };
	char msg[512];
	PGconn *c;
	int rc = -1;

	*out = NULL;
	/* expand_dbname: conninfo may be a key=value string or a URI. The
	 * entries after it override it: the code needs UTF-8 text. */
	c = PQconnectdbParams(keys, vals, 1);
	if (!c) {
		snprintf(err, errlen, "cannot connect to the database: out of memory");
		goto out;
	}
	if (PQstatus(c) != CONNECTION_OK) {
		snprintf(err, errlen, "cannot connect to the database: %s",
			 store_error_text(c, NULL, msg, sizeof(msg)));
		goto out;
	}
	if (store_exec(c, "session setup", "SET TIME ZONE 'UTC'", 0, NULL, err, errlen) < 0 ||
	    store_exec(c, "session setup", "SET client_min_messages = warning", 0, NULL, err,
		       errlen) < 0)
		goto out;
	*out = c;
	c = NULL;
	rc = 0;
out:
	PQfinish(c);
	return rc;
}

/* Line of the 1-based character position pos in sql (PostgreSQL counts
 * characters, not bytes). */
static int store__line_of(const char *sql, long pos)
{
	int line = 1;
	long ch = 0;

	for (; *sql && ch < pos - 1; sql++) {
		if (((unsigned char)*sql & 0xC0) != 0x80)
			ch++;
		if (*sql == '\n')
			line++;
	}
	return line;
}

static bool store__applied(PGresult *done, const char *name)
{
	int i, n = PQntuples(done);

	for (i = 0; i < n; i++)
		if (strcmp(PQgetvalue(done, i, 0), name) == 0)
			return true;
	return false;
}

static int store__apply(PGconn *c, const struct store_migration *m, char *err, size_t errlen)
{
	const char *params[1] = { m->name };
	char msg[768];
	PGresult *r = NULL;
	const char *pos;
	int rc = -1;

	if (store_exec(c, m->name, "BEGIN", 0, NULL, err, errlen) < 0)
		goto out;
	r = PQexec(c, m->sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
		pos = PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION);
		store_error_text(c, r, msg, sizeof(msg));
		if (pos)
			snprintf(err, errlen, "migration %s: %s (line %d)", m->name, msg,
				 store__line_of(m->sql, strtol(pos, NULL, 10)));
		else
			snprintf(err, errlen, "migration %s: %s", m->name, msg);
		goto rollback;
	}
	if (PQtransactionStatus(c) != PQTRANS_INTRANS) {
		snprintf(err, errlen, "migration %s: it ends the transaction (no BEGIN/COMMIT in migrations)",
			 m->name);
		goto rollback;
	}
	if (store_exec(c, m->name, "INSERT INTO schema_migrations (name) VALUES ($1)", 1, params,
		       err, errlen) < 0)
		goto rollback;
	if (store_exec(c, m->name, "COMMIT", 0, NULL, err, errlen) < 0)
		goto rollback;
	rc = 0;
	goto out;
rollback:
	if (PQtransactionStatus(c) != PQTRANS_IDLE)
		PQclear(PQexec(c, "ROLLBACK"));
out:
	PQclear(r);
	return rc;
}

int store_migrate_list(PGconn *c, const struct store_migration *list, size_t n, int *applied,
		       char *err, size_t errlen)
{
	PGresult *done = NULL;
	bool locked = false;
	size_t i;
	int rc = -1;

	*applied = 0;
	if (store_exec(c, "migrate: lock", "SELECT pg_advisory_lock(" STORE_MIGRATE_LOCK ")", 0,
		       NULL, err, errlen) < 0)
		goto out;
	locked = true;
	if (store_exec(c, "migrate: schema_migrations",
		       "CREATE TABLE IF NOT EXISTS schema_migrations ("
		       " name text PRIMARY KEY,"
		       " applied timestamptz NOT NULL DEFAULT now())",
		       0, NULL, err, errlen) < 0)
		goto out;
	done = store_query(c, "migrate: schema_migrations", "SELECT name FROM schema_migrations", 0,
			   NULL, err, errlen);
	if (!done)
		goto out;
	for (i = 0; i < n; i++) {
		if (!list[i].name || !list[i].sql) {
			snprintf(err, errlen, "migration %zu has no name or text", i + 1);
			goto out;
		}
		if (i && strcmp(list[i - 1].name, list[i].name) >= 0) {
			snprintf(err, errlen, "migration '%s' is out of order after '%s'", list[i].name,
				 list[i - 1].name);
			goto out;
		}
	}
	for (i = 0; i < n; i++) {
		if (store__applied(done, list[i].name))
			continue;
		if (store__apply(c, &list[i], err, errlen) < 0)
			goto out;
		(*applied)++;
	}
	rc = 0;
out:
	PQclear(done);
	if (locked)
		PQclear(PQexec(c, "SELECT pg_advisory_unlock(" STORE_MIGRATE_LOCK ")"));
	return rc;
}

int store_migrate(PGconn *c, int *applied, char *err, size_t errlen)
{
	return store_migrate_list(c, store_migrations, store_migrations_count, applied, err, errlen);
}

int store_check_migrated(PGconn *c, char *err, size_t errlen)
{
	PGresult *done;
	size_t i;
	int rc = -1;

	/* a database never migrated has no such table: store_query() then
	 * says to run 'leadsync migrate' */
	done = store_query(c, "check migrations", "SELECT name FROM schema_migrations", 0, NULL,
			   err, errlen);
	if (!done)
		return -1;
	for (i = 0; i < store_migrations_count; i++)
		if (!store__applied(done, store_migrations[i].name)) {
			snprintf(err, errlen,
				 "the database lacks migration %s (run 'leadsync migrate')",
				 store_migrations[i].name);
			goto out;
		}
	rc = 0;
out:
	PQclear(done);
	return rc;
}
