/* store: synchronous libpq helpers for the CLI: connect, migrate, run a
 * statement and say what went wrong. */
#include "store.h"

#include <ctype.h>
#include <errno.h>
#include <libpq-events.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mask.h"

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

int store_zone_known(PGconn *c, const char *zone, char *err, size_t errlen)
{
	const char *params[1] = { zone && *zone ? zone : "UTC" };
	PGresult *r = store_query(c, "time zone",
				  "SELECT count(*) FROM pg_timezone_names WHERE name = $1", 1,
				  params, err, errlen);
	int known;

	if (!r)
		return -1;
	known = strcmp(PQgetvalue(r, 0, 0), "0") != 0;
	PQclear(r);
	return known;
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
	/* 42P05: the session has it already (prepared when this connection
	 * could not remember it: out of memory, or full): it is there to use */
	if (PQresultStatus(r) != PGRES_COMMAND_OK && strcmp(store_sqlstate(r), "42P05") != 0) {
		snprintf(err, errlen, "prepare %s: %s%s", what, store_error_text(c, r, msg, sizeof(msg)),
			 strcmp(store_sqlstate(r), "42P01") == 0 ? " (run 'leadsync migrate')" : "");
		PQclear(r);
		return -1;
	}
	PQclear(r);
	if (p && p->n < STORE_PREPARED_MAX && (p->name[p->n] = strdup(name)))
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

/* ------------------------------------------------- connect, and why not */

static bool store__is_uri(const char *s)
{
	return strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0;
}

/* What libpq reads as a connection string rather than a database name
 * (as expand_dbname decides). */
static bool store__is_conninfo(const char *s)
{
	return store__is_uri(s) || strchr(s, '=');
}

static int store__secret(struct mask *m, const char *p, size_t n)
{
	char *v;
	int rc;

	while (n && isspace((unsigned char)p[n - 1]))
		n--;
	if (!n)
		return 0;
	v = strndup(p, n);
	if (!v)
		return -1;
	rc = mask_add(m, v);
	free(v);
	return rc;
}

/* Where the next " name =" of a key=value string starts after p. */
static const char *store__next_key(const char *p)
{
	for (; *p; p++) {
		const char *q = p;

		if (!isspace((unsigned char)*p))
			continue;
		while (isspace((unsigned char)*q))
			q++;
		if (!isalpha((unsigned char)*q) && *q != '_')
			continue;
		while (isalnum((unsigned char)*q) || *q == '_')
			q++;
		while (isspace((unsigned char)*q))
			q++;
		if (*q == '=')
			return p;
	}
	return p;
}

/* The passwords of conninfo, read the way a person wrote them, so that a
 * string libpq cannot parse is masked too: each credential-looking key's
 * value (up to its closing quote, or the next "name =", or in a URI the
 * next '&'), and a URI's user:pass@. Then, when libpq can parse it, the
 * values it reads. */
static int store__secrets(const char *ci, struct mask *m)
{
	bool uri = store__is_uri(ci);
	PQconninfoOption *opts, *o;
	const char *p;
	int rc = 0;

	for (p = ci; *p; p++) {
		const char *k = p, *v, *e;
		char name[64];
		size_t n;

		if ((p > ci && !isspace((unsigned char)p[-1]) &&
		     !(uri && (p[-1] == '?' || p[-1] == '&'))) ||
		    (!isalpha((unsigned char)*p) && *p != '_'))
			continue;
		while (isalnum((unsigned char)*p) || *p == '_')
			p++;
		n = (size_t)(p - k);
		v = p;
		while (isspace((unsigned char)*v))
			v++;
		if (*v != '=' || n >= sizeof(name)) {
			p--;
			continue;
		}
		memcpy(name, k, n);
		name[n] = '\0';
		v++;
		while (!uri && isspace((unsigned char)*v))
			v++;
		if (uri) {
			e = v + strcspn(v, "&#");
		} else if (*v == '\'') {
			for (e = ++v; *e && *e != '\''; e++)
				if (*e == '\\' && e[1])
					e++;
		} else {
			e = store__next_key(v);
		}
		if (mask_name(name))
			rc |= store__secret(m, v, (size_t)(e - v));
		p = *e ? e : e - 1;
	}
	if (uri) {
		const char *a = strstr(ci, "://") + 3, *at = a + strcspn(a, "@/"), *colon;

		/* as libpq reads it: user:pass@ before the first '/'; and in a
		 * broken URI, before the last '@' ahead of the query */
		if (*at != '@') {
			const char *q = a + strcspn(a, "?"), *x;

			for (x = a, at = NULL; x < q; x++)
				if (*x == '@')
					at = x;
		}
		colon = at ? memchr(a, ':', (size_t)(at - a)) : NULL;
		if (colon)
			rc |= store__secret(m, colon + 1, (size_t)(at - colon - 1));
	}
	opts = store__is_conninfo(ci) ? PQconninfoParse(ci, NULL) : NULL;
	for (o = opts; o && o->keyword; o++)
		if (o->val && *o->val && mask_name(o->keyword))
			rc |= mask_add(m, o->val);
	PQconninfoFree(opts);
	return rc ? -1 : 0;
}

/* Whether s holds the n bytes at p. */
static bool store__holds(const char *s, const char *p, size_t n)
{
	for (; *s; s++)
		if (strncmp(s, p, n) == 0)
			return true;
	return false;
}

const char *store_mask_conninfo(const char *conninfo, const char *text, char *out, size_t outlen)
{
	struct mask m;
	struct buf a, b;
	const char *p, *q;
	size_t i;
	int rc = 0;

	if (!outlen)
		return out;
	mask_init(&m);
	buf_init(&a, 0);
	buf_init(&b, 0);
	rc |= store__secrets(conninfo, &m);
	rc |= mask_text(&m, text, strlen(text), MASK_TEXT, &a);
	rc |= buf_addc(&a, '\0');
	/* libpq quotes the piece it stumbled on ("missing \"=\" after \"ret\""):
	 * a piece of a password is hidden too */
	for (p = a.p; rc == 0 && p && *p; p = q) {
		bool secret = false;

		q = strchr(p, '"');
		if (!q || !strchr(q + 1, '"')) {
			rc |= buf_adds(&b, p);
			break;
		}
		rc |= buf_add(&b, p, (size_t)(q - p + 1));
		p = q + 1;
		q = strchr(p, '"');
		for (i = 0; i < m.n && q > p; i++)
			if (store__holds(m.values[i], p, (size_t)(q - p)))
				secret = true;
		rc |= secret ? buf_adds(&b, "***") : buf_add(&b, p, (size_t)(q - p));
		rc |= buf_addc(&b, '"');
		q++;
	}
	if (rc == 0 && buf_addc(&b, '\0') == 0)
		snprintf(out, outlen, "%s", b.p);
	else
		snprintf(out, outlen, "(message hidden: out of memory while masking it)");
	buf_release(&a);
	buf_release(&b);
	mask_release(&m);
	return out;
}

/* The SQLSTATE in a message written at PQERRORS_VERBOSE ("FATAL:  3D000:
 * database ..."), the last one when libpq tried several hosts, into
 * code[6]; and the message with the codes and LOCATION lines taken out,
 * as libpq writes it by default, into out. */
static void store__verbose_split(const char *msg, char code[6], char *out, size_t outlen)
{
	size_t o = 0;
	const char *p = msg;

	code[0] = '\0';
	while (*p && o + 1 < outlen) {
		size_t k;

		if (strncmp(p, "\nLOCATION:", 10) == 0) {
			p += 1 + strcspn(p + 1, "\n");
			continue;
		}
		if (strncmp(p, ":  ", 3) == 0) {
			for (k = 0; k < 5 && (isdigit((unsigned char)p[3 + k]) ||
					      isupper((unsigned char)p[3 + k]));
			     k++)
				;
			if (k == 5 && p[8] == ':' && p[9] == ' ') {
				memcpy(code, p + 3, 5);
				code[5] = '\0';
				for (k = 0; k < 3 && o + 1 < outlen; k++)
					out[o++] = ":  "[k];
				p += 10;
				continue;
			}
		}
		out[o++] = *p++;
	}
	out[o] = '\0';
}

/* The connect timeout libpq applies to each host (connect_timeout, or
 * PGCONNECT_TIMEOUT), in ms, times the number of hosts: libpq's own wait
 * moves to the next host on a timeout, which a caller polling cannot ask
 * for, so the whole list gets that much. 0: none. */
static long store__timeout_ms(PGconn *c)
{
	PQconninfoOption *opts = PQconninfo(c), *o;
	long t = 0, hosts = 1;

	for (o = opts; o && o->keyword; o++) {
		if (!o->val)
			continue;
		if (strcmp(o->keyword, "connect_timeout") == 0) {
			t = strtol(o->val, NULL, 10);
		} else if (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0) {
			long n = 1;
			const char *s;

			for (s = o->val; *s; s++)
				n += *s == ',';
			if (n > hosts)
				hosts = n;
		}
	}
	PQconninfoFree(opts);
	if (t <= 0)
		return 0;
	return (t < 2 ? 2 : t) * 1000 * hosts; /* libpq's minimum is 2 s */
}

/* Drives PQconnectPoll to its end, as PQconnectdb does. 0 connected, -1
 * failed, -2 timed out. */
static int store__poll(PGconn *c)
{
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	long limit = store__timeout_ms(c);
	struct timespec now, end;

	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += limit / 1000;
	end.tv_nsec += (limit % 1000) * 1000000;
	if (end.tv_nsec >= 1000000000) {
		end.tv_sec++;
		end.tv_nsec -= 1000000000;
	}
	for (;;) {
		struct pollfd pfd;
		int ms = -1, r;

		if (st == PGRES_POLLING_OK)
			return 0;
		if (st == PGRES_POLLING_FAILED)
			return -1;
		pfd.fd = PQsocket(c);
		pfd.events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
		pfd.revents = 0;
		if (pfd.fd < 0)
			return -1;
		if (limit) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			ms = (int)((end.tv_sec - now.tv_sec) * 1000 +
				   (end.tv_nsec - now.tv_nsec) / 1000000);
			if (ms <= 0)
				return -2;
		}
		r = poll(&pfd, 1, ms);
		if (r < 0 && errno != EINTR)
			return -1;
		if (r == 0)
			return -2;
		if (r > 0)
			st = PQconnectPoll(c);
	}
}

/* Why the server (or libpq) refused what we asked for, by SQLSTATE; NULL
 * when it is not a configuration fault. */
static const char *store__config_why(const char *code)
{
	if (strcmp(code, "28000") == 0)
		return "the role is unknown or not allowed in, SQLSTATE 28000";
	if (strcmp(code, "28P01") == 0)
		return "the password is wrong, SQLSTATE 28P01";
	if (strcmp(code, "3D000") == 0)
		return "the database does not exist, SQLSTATE 3D000";
	return NULL;
}

int store_connect_fault(const char *conninfo, PGconn **out, enum store_fault *fault, char *err,
			size_t errlen)
{
	const char *keys[] = { "dbname", "fallback_application_name", "client_encoding", NULL };
	const char *vals[] = { conninfo, "leadsync", "UTF8", NULL };
	enum store_fault f = STORE_FAULT_DOWN;
	char msg[1024], plain[1024], masked[1024], code[6] = "";
	const char *why = NULL;
	PQconninfoOption *opts;
	char *perr = NULL;
	PGconn *c = NULL;
	int rc = -1, pr;

	*out = NULL;
	/* a string libpq cannot read: say so now, not as an unreachable server */
	if (store__is_conninfo(conninfo)) {
		opts = PQconninfoParse(conninfo, &perr);
		PQconninfoFree(opts);
		if (!opts) {
			snprintf(msg, sizeof(msg), "%s", perr ? perr : "out of memory");
			PQfreemem(perr);
			store__oneline(msg);
			store__trim(msg);
			f = STORE_FAULT_CONFIG;
			snprintf(err, errlen,
				 "cannot connect to the database: wrong configuration (invalid "
				 "connection string): %s",
				 store_mask_conninfo(conninfo, msg, masked, sizeof(masked)));
			goto out;
		}
	}
	/* expand_dbname: conninfo may be a key=value string or a URI. The
	 * entries after it override it: the code needs UTF-8 text. Polled
	 * here rather than PQconnectdbParams() so that the server's error
	 * carries its SQLSTATE (verbose), which says a wrong role from a
	 * server that is down whatever the language of the message. */
	c = PQconnectStartParams(keys, vals, 1);
	if (!c) {
		snprintf(err, errlen, "cannot connect to the database: out of memory");
		goto out;
	}
	PQsetErrorVerbosity(c, PQERRORS_VERBOSE);
	pr = PQstatus(c) == CONNECTION_BAD ? -1 : store__poll(c);
	if (pr == -2) {
		snprintf(err, errlen, "cannot connect to the database: timeout expired");
		goto out;
	}
	if (pr < 0 || PQstatus(c) != CONNECTION_OK) {
		store__verbose_split(PQerrorMessage(c), code, plain, sizeof(plain));
		store__oneline(plain);
		store__trim(plain);
		why = store__config_why(code);
		if (!why && PQconnectionNeedsPassword(c))
			why = "the server asks for a password and none is set";
		if (why)
			f = STORE_FAULT_CONFIG;
		snprintf(err, errlen, "cannot connect to the database: %s%s%s%s",
			 why ? "wrong configuration (" : "", why ? why : "", why ? "): " : "",
			 store_mask_conninfo(conninfo, *plain ? plain : "unknown error", masked,
					     sizeof(masked)));
		goto out;
	}
	PQsetErrorVerbosity(c, PQERRORS_DEFAULT);
	f = STORE_FAULT_NONE;
	if (store_exec(c, "session setup", "SET TIME ZONE 'UTC'", 0, NULL, err, errlen) < 0 ||
	    store_exec(c, "session setup", "SET client_min_messages = warning", 0, NULL, err,
		       errlen) < 0) {
		f = STORE_FAULT_DOWN;
		goto out;
	}
	*out = c;
	c = NULL;
	rc = 0;
out:
	if (fault)
		*fault = f;
	PQfinish(c);
	return rc;
}

int store_connect(const char *conninfo, PGconn **out, char *err, size_t errlen)
{
	return store_connect_fault(conninfo, out, NULL, err, errlen);
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
