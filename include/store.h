/* store: synchronous PostgreSQL access for the CLI (connect, migrate) and
 * the small libpq helpers the other synchronous modules share (import,
 * history). The daemon's non-blocking database work lives elsewhere.
 *
 * Errors: every function returns 0 (or a result) on success and -1 (or
 * NULL) on failure with a one-line message in err, written in the style
 * "migration 001_schema.sql: ERROR: relation \"x\" already exists". err is
 * written only on failure.
 *
 * Migrations are migrations/NNN_name.sql, embedded into the binary at build
 * time (scripts/embed.sh generates the table below) and applied
 * in name order, each in its own transaction together with its row in
 * schema_migrations. A migration must not contain BEGIN/COMMIT or anything
 * that cannot run in a transaction block (CREATE INDEX CONCURRENTLY). */
#ifndef LEADSYNC_STORE_H
#define LEADSYNC_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

struct store_migration {
	const char *name; /* "001_schema.sql" */
	const char *sql;
};

/* The embedded migrations in order, ended by a { NULL, NULL } row
 * (generated: build/gen/migrations.c). */
extern const struct store_migration store_migrations[];
extern const size_t store_migrations_count;

/* Opens a connection (conninfo: key=value string or URI) and sets the
 * session up: UTF-8 client encoding, UTC time zone, quiet notices. On
 * success *out is the connection (the caller PQfinish()es it); on failure
 * *out is NULL and err says why, without the password. */
__attribute__((warn_unused_result))
int store_connect(const char *conninfo, PGconn **out, char *err, size_t errlen);

/* Why a connection failed: the database may come back by itself (down),
 * or it will not until someone changes the configuration. */
enum store_fault {
	STORE_FAULT_NONE,
	STORE_FAULT_DOWN,   /* refused, no such socket, timeout, host unknown */
	STORE_FAULT_CONFIG, /* invalid connection string, no password to give,
			     * or the server refused the session: SQLSTATE 28000
			     * (role unknown or not allowed), 28P01 (password),
			     * 3D000 (no such database) */
};

/* store_connect() that says which fault failed it (*fault may be NULL).
 * A configuration fault's message reads "cannot connect to the database:
 * wrong configuration (why): libpq's message"; a down one "cannot
 * connect to the database: libpq's message". Either way any password of
 * conninfo (a password= value, a URI's user:pass@) reads "***". */
__attribute__((warn_unused_result))
int store_connect_fault(const char *conninfo, PGconn **out, enum store_fault *fault, char *err,
			size_t errlen);

/* Copies text (a libpq message about conninfo) into out with every
 * password of conninfo masked as "***": the values of credential-looking
 * keys (password=, sslpassword=, also in a URI's query), a URI's
 * user:pass@, and any quoted piece of text that is part of one, found
 * even in a string libpq cannot parse. Returns out. */
const char *store_mask_conninfo(const char *conninfo, const char *text, char *out, size_t outlen);

/* Applies the embedded migrations that schema_migrations does not list.
 * *applied is the number applied now (0: up to date). Safe to run from
 * several processes at once: a session advisory lock serialises them and
 * the later ones find nothing to do. On failure the migrations applied
 * before the failing one stay applied; the failing one left nothing. */
__attribute__((warn_unused_result))
int store_migrate(PGconn *c, int *applied, char *err, size_t errlen);

/* Checks, without changing anything, that every embedded migration is
 * applied (`leadsync run` refuses to start on an older schema). Fails with
 * "the database lacks migration 004_x.sql (run 'leadsync migrate')". */
__attribute__((warn_unused_result))
int store_check_migrated(PGconn *c, char *err, size_t errlen);

/* store_migrate() with an explicit list of n migrations (tests). */
__attribute__((warn_unused_result))
int store_migrate_list(PGconn *c, const struct store_migration *list, size_t n, int *applied,
		       char *err, size_t errlen);

/* Writes the error of r (or, when r is NULL or has none, of c) as one line
 * "ERROR: message: detail" into out (truncated to len; always terminated).
 * Returns out. */
const char *store_error_text(const PGconn *c, const PGresult *r, char *out, size_t len);

/* SQLSTATE of r ("23505"), or "" when there is none. */
const char *store_sqlstate(const PGresult *r);

/* Runs sql (text parameters, may be NULL for n == 0; a NULL parameter is
 * SQL NULL). Returns the result when it is PGRES_COMMAND_OK or
 * PGRES_TUPLES_OK (the caller PQclear()s it), else NULL with
 * "what: ERROR: ..." in err; what names the statement for the message. A
 * missing table adds "(run 'leadsync migrate')". */
__attribute__((warn_unused_result))
PGresult *store_query(PGconn *c, const char *what, const char *sql, int n,
		      const char *const *params, char *err, size_t errlen);

/* Prepares sql on c under name, once per connection: the connection
 * remembers the names it has prepared (libpq instance data, gone with the
 * PGconn, so a connection made after a reconnect prepares again). name is
 * compared by its text; at most STORE_PREPARED_MAX names per connection.
 * Planning a large statement can cost more than running it on a small
 * batch, so the hot statements (a poll batch's select and write, a
 * postback group's) are prepared. 0, or -1 with "prepare what: ..." in
 * err. */
#define STORE_PREPARED_MAX 32
__attribute__((warn_unused_result))
int store_prepare(PGconn *c, const char *name, const char *what, const char *sql, int n,
		  char *err, size_t errlen);

/* store_query() through the statement prepared under name (preparing it
 * first when this connection has not). */
__attribute__((warn_unused_result))
PGresult *store_query_prepared(PGconn *c, const char *name, const char *what, const char *sql,
			       int n, const char *const *params, char *err, size_t errlen);

/* Whether PostgreSQL knows zone as a time zone name (pg_timezone_names,
 * names only: no abbreviations or POSIX specs; NULL and "" read as "UTC").
 * The daemon leaves every zone rule to PostgreSQL, so this is the check
 * for a configured zone. 1 known, 0 unknown, -1 with err set. The view
 * reads every zone file (about 0.1 s): for start and import, not a hot
 * path. */
__attribute__((warn_unused_result))
int store_zone_known(PGconn *c, const char *zone, char *err, size_t errlen);

/* store_query() for statements whose result is not needed. */
__attribute__((warn_unused_result))
int store_exec(PGconn *c, const char *what, const char *sql, int n, const char *const *params,
	       char *err, size_t errlen);

#endif
