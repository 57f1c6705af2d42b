/* runner: runs every registered test, runs the cleanups each test
 * deferred, checks for leaks, and prints one line per failure and, always
 * last, the closing line "N passed, N failed"; exits 1 on any failure or
 * leak. An argument runs only the tests whose name contains it. */
#include "test.h"

#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define RUNNER_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RUNNER_LSAN 1
#endif
#endif
#ifdef RUNNER_LSAN
#include <sanitizer/lsan_interface.h>
#endif

struct test_case {
	const char *name;
	const char *file;
	test_fn fn;
	size_t seq;
};

static struct test_case tests[2048];
static size_t ntests;
static bool cur_failed;
static const char *cur_name;

struct cleanup {
	test_cleanup_fn fn;
	void *arg;
};

/* The running test's cleanups, oldest first; grown as needed. */
static struct cleanup *cleanups;
static size_t ncleanups, cleanups_cap;

void test_defer(test_cleanup_fn fn, void *arg)
{
	if (!cur_name) {
		fprintf(stderr, "test_defer called outside a test\n");
		abort();
	}
	if (ncleanups == cleanups_cap) {
		size_t cap = cleanups_cap ? cleanups_cap * 2 : 64;
		struct cleanup *v = realloc(cleanups, cap * sizeof(*v));

		if (!v) {
			/* cannot keep the promise: clean up now rather than leak */
			fn(arg);
			test__fail(__FILE__, __LINE__, "test_defer: out of memory");
			return;
		}
		cleanups = v;
		cleanups_cap = cap;
	}
	cleanups[ncleanups].fn = fn;
	cleanups[ncleanups].arg = arg;
	ncleanups++;
}

bool test_undefer(test_cleanup_fn fn, void *arg)
{
	size_t i;

	if (!cur_name) {
		fprintf(stderr, "test_undefer called outside a test\n");
		abort();
	}
	for (i = ncleanups; i-- > 0;)
		if (cleanups[i].fn == fn && cleanups[i].arg == arg) {
			memmove(&cleanups[i], &cleanups[i + 1],
				(ncleanups - i - 1) * sizeof(cleanups[0]));
			ncleanups--;
			return true;
		}
	return false;
}

void *test_defer_free(void *p)
{
	test_defer(free, p);
	return p;
}

static bool unwinding;

/* Newest first, as a test would release them by hand. A cleanup may defer
 * more (they run too) or record a failure (the test then fails); an
 * assert that fails inside a cleanup does not start another round. */
void test__unwind(void)
{
	if (unwinding)
		return;
	unwinding = true;
	while (ncleanups) {
		struct cleanup c = cleanups[--ncleanups];

		c.fn(c.arg);
	}
	unwinding = false;
}

static void run_cleanups(void)
{
	test__unwind();
	free(cleanups);
	cleanups = NULL;
	cleanups_cap = 0;
}

/* Hidden tests that prove the runner's promises (test_runner.c runs them
 * in a child): each fails or leaks on purpose. */
static bool hidden(const char *name)
{
	if (strncmp(name, "selftest_", 9) != 0)
		return false;
	if (strstr(name, "_leak"))
		return !getenv("TEST_SELFTEST_LEAK");
	return !getenv("TEST_SELFTEST_FAIL");
}

/* The leak check the sanitizer would run at exit, run here so that its
 * report comes before the summary and a leak counts as a failure. 1: leaks
 * found (reported on stderr). */
static int leak_check(void)
{
#ifdef RUNNER_LSAN
	fflush(stdout);
	return __lsan_do_recoverable_leak_check() ? 1 : 0;
#else
	return 0;
#endif
}

void test__register(const char *name, test_fn fn, const char *file)
{
	if (ntests == sizeof(tests) / sizeof(tests[0])) {
		fprintf(stderr, "too many tests: raise the table in tests/runner.c\n");
		abort();
	}
	tests[ntests].name = name;
	tests[ntests].file = file;
	tests[ntests].fn = fn;
	tests[ntests].seq = ntests;
	ntests++;
}

void test__fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	cur_failed = true;
	fprintf(stdout, "FAIL %s: %s:%d: ", cur_name, file, line);
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

bool test__failed(void)
{
	return cur_failed;
}

static int cmp_case(const void *a, const void *b)
{
	const struct test_case *x = a, *y = b;
	int c = strcmp(x->file, y->file);

	return c ? c : (x->seq < y->seq ? -1 : x->seq > y->seq);
}

int main(int argc, char **argv)
{
	size_t i, passed = 0, failed = 0;
	bool verbose = getenv("TEST_VERBOSE") != NULL;
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	/* The daemon's info lines would drown the failures; TEST_VERBOSE
	 * shows them. */
	if (!verbose)
		log_level = LOG_WARN;
	qsort(tests, ntests, sizeof(tests[0]), cmp_case);
	for (i = 0; i < ntests; i++) {
		struct timespec t0, t1;

		if (argc > 1 && !strstr(tests[i].name, argv[1]))
			continue;
		if (hidden(tests[i].name))
			continue;
		cur_failed = false;
		cur_name = tests[i].name;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		tests[i].fn();
		run_cleanups();
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (cur_failed)
			failed++;
		else
			passed++;
		if (verbose || cur_failed)
			printf("%s %s (%.0f ms)\n", cur_failed ? "not ok" : "ok", cur_name,
			       (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
	}
	cur_name = "leak check";
	if (leak_check()) {
		printf("FAIL leak check: LeakSanitizer found leaks (its report is above, on stderr)\n");
		failed++;
	}
	cur_name = NULL;
	printf("%zu passed, %zu failed\n", passed, failed);
	rc = failed ? 1 : 0;
#ifdef RUNNER_LSAN
	/* The sanitizer's own check at exit would repeat the report after the
	 * summary: the check above has done its work. */
	fflush(stdout);
	fflush(stderr);
	_exit(rc);
#else
	return rc;
#endif
}
