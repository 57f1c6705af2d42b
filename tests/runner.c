/* runner: runs every registered test, prints one line per failure and the
 * closing line "N passed, N failed"; exits 1 on any failure. An argument
 * runs only the tests whose name contains it. */
#include "test.h"

#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

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
		cur_failed = false;
		cur_name = tests[i].name;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		tests[i].fn();
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (cur_failed)
			failed++;
		else
			passed++;
		if (verbose || cur_failed)
			printf("%s %s (%.0f ms)\n", cur_failed ? "not ok" : "ok", cur_name,
			       (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
	}
	printf("%zu passed, %zu failed\n", passed, failed);
	return failed ? 1 : 0;
}
