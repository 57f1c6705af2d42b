/* test.h: the test runner's API. A test is `TEST(name) { ... }` in any file
 * under tests/; it registers itself at start-up, so adding a test is adding
 * a function. Asserts record the failure with file and line and return from
 * the test; what the test made is released by the cleanups it deferred.
 * Tests run in file-link order, then by registration order. Tests named
 * selftest_* are hidden: they fail or leak on purpose, and run only when
 * TEST_SELFTEST_FAIL=1 or TEST_SELFTEST_LEAK=1 is set (see test_runner.c).
 *
 * Time: a test never asserts that something took less than a while, or
 * that a wait was "enough". Timers, rates, holds and leases are driven by a
 * clock the test moves (http_client's limits.clock_us, the scheduler's and
 * timers' `now` parameters) or asserted by order and count; waits for
 * another process are bounded only to stop a hung run. */
#ifndef LEADSYNC_TEST_H
#define LEADSYNC_TEST_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

typedef void (*test_fn)(void);
void test__register(const char *name, test_fn fn, const char *file);
void test__fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
bool test__failed(void);
void test__unwind(void);

/* Cleanup. An assert returns from the test at once, so whatever the test
 * made (a child process, a server, a loop, a temp dir, a buffer) is handed
 * to test_defer as soon as it exists. Pending cleanups run newest first,
 * fn(arg), when an ASSERT fails (before it returns, so arg may point into
 * the failing function's frame or its callers': a fixture on the stack is
 * fine) and after the test returns, pass or fail. test_undefer drops a
 * pending cleanup (the first that matches fn and arg), for a fixture's own
 * close function; it returns whether one was pending. A fixture on the
 * stack must be closed, or undeferred, before its function returns.
 * Calling them outside a test is a bug (the runner aborts). */
typedef void (*test_cleanup_fn)(void *arg);
void test_defer(test_cleanup_fn fn, void *arg);
bool test_undefer(test_cleanup_fn fn, void *arg);
/* test_defer(free, p); returns p, so `char *s = test_defer_free(f(...))`. */
void *test_defer_free(void *p);

#define TEST(name)                                                          \
	static void test_##name(void);                                      \
	__attribute__((constructor)) static void test_reg_##name(void)      \
	{                                                                   \
		test__register(#name, test_##name, __FILE__);               \
	}                                                                   \
	static void test_##name(void)

#define ASSERT(c)                                                           \
	do {                                                                \
		if (!(c)) {                                                 \
			test__fail(__FILE__, __LINE__, "assertion failed: %s", #c); \
			test__unwind();                                     \
			return;                                             \
		}                                                           \
	} while (0)

#define ASSERT_EQ(a, b)                                                     \
	do {                                                                \
		long long a_ = (long long)(a), b_ = (long long)(b);         \
		if (a_ != b_) {                                             \
			test__fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_, b_); \
			test__unwind();                                     \
			return;                                             \
		}                                                           \
	} while (0)

#define ASSERT_STREQ(a, b)                                                  \
	do {                                                                \
		const char *a_ = (a), *b_ = (b);                            \
		if (!a_ || !b_ || strcmp(a_, b_) != 0) {                    \
			test__fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b, \
				   a_ ? a_ : "(null)", b_ ? b_ : "(null)");   \
			test__unwind();                                     \
			return;                                             \
		}                                                           \
	} while (0)

#define ASSERT_CONTAINS(hay, needle)                                        \
	do {                                                                \
		const char *h_ = (hay), *n_ = (needle);                     \
		if (!h_ || !strstr(h_, n_)) {                               \
			test__fail(__FILE__, __LINE__, "%s contains \"%s\": got \"%s\"", #hay, n_, \
				   h_ ? h_ : "(null)");                      \
			test__unwind();                                     \
			return;                                             \
		}                                                           \
	} while (0)

/* Helpers for integration tests (tests/helpers.c). */

/* A fresh, empty database on the test PostgreSQL (LEADSYNC_TEST_PG names
 * the server, set by scripts/test.sh). Returns a malloc'd libpq conninfo,
 * or NULL after recording a failure. */
char *test_db_fresh(const char *name);
/* A fresh database with every migration applied: returns an open
 * connection (and, when conninfo is not NULL, the malloc'd conninfo), or
 * NULL after recording a failure. PGconn is opaque here: include
 * libpq-fe.h to use it. */
struct pg_conn;
struct pg_conn *test_db_migrated(const char *name, char **conninfo);
/* The first value of the first row of sql on c, malloc'd ("" for SQL
 * NULL); NULL when there is no row or the query failed (printed). */
char *test_sql_value(struct pg_conn *c, const char *sql);
/* True when sql's first value is want; prints what it got otherwise. */
bool test_sql_is(struct pg_conn *c, const char *sql, const char *want);
/* Runs sql; true when it worked (printed otherwise). */
bool test_sql_exec(struct pg_conn *c, const char *sql);
/* Runs argv (argv[0] a path), feeding `in` (may be NULL) on stdin. Output
 * and error are captured into malloc'd strings; returns the exit status,
 * or -1. */
int test_run(char *const argv[], const char *const env[], const char *in,
	     char **out, char **err);
/* Writes s to a fresh temporary file; returns its malloc'd path. */
char *test_tmpfile(const char *s);
/* The whole file at path (up to 16 MB), malloc'd and NUL-terminated;
 * NULL when it cannot be read. */
char *test_slurp(const char *path);

#endif
