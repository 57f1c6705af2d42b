/* test_runner: the runner's own promises, checked by running this binary
 * again in a child with the hidden selftest_* tests switched on: a failed
 * test releases what it deferred, a leak is a failure, and either way the
 * last line of the output is the summary and the exit status is 1. */
#define _GNU_SOURCE
#include "test.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void kill_child(void *arg)
{
	pid_t pid = (pid_t)(intptr_t)arg;

	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static void remove_dir(void *arg)
{
	rmdir(arg);
	free(arg);
}

struct stack_fixture {
	unsigned magic;
};

/* Run at the failed assert, while the fixture's frame still stands. */
static void check_stack_fixture(void *arg)
{
	const struct stack_fixture *f = arg;

	printf("stack fixture %s\n", f->magic == 0xC0FFEEu ? "intact" : "overwritten");
}

/* Hidden (TEST_SELFTEST_FAIL=1): makes a buffer, a child, a temp dir and a
 * fixture on its stack, defers their release, then fails half-way as
 * asserts do. */
TEST(selftest_fail_cleans_up)
{
	char tmpl[] = "/tmp/leadsync-selftest-XXXXXX";
	char *buf = test_defer_free(malloc(4096));
	struct stack_fixture fx = { 0xC0FFEEu };
	char *dir;
	pid_t pid;

	test_defer(check_stack_fixture, &fx);

	ASSERT(buf);
	memset(buf, 'x', 4096);
	dir = mkdtemp(tmpl);
	ASSERT(dir);
	dir = strdup(dir);
	ASSERT(dir);
	test_defer(remove_dir, dir);
	printf("selftest dir %s\n", dir);
	pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		pause();
		_exit(0);
	}
	test_defer(kill_child, (void *)(intptr_t)pid);
	ASSERT_EQ(1 + 1, 3); /* fails here, as asserts do, with all of it made */
}

static void *volatile selftest_sink;

/* On a thread of its own, so no stale copy of the pointer stays on a
 * stack the leak check scans. */
static void *lose_a_block(void *arg)
{
	selftest_sink = malloc(777);
	selftest_sink = NULL;
	return NULL;
}

/* Hidden (TEST_SELFTEST_LEAK=1): passes, but leaks one block. */
TEST(selftest_leak_is_a_failure)
{
	pthread_t t;

	ASSERT_EQ(pthread_create(&t, NULL, lose_a_block, NULL), 0);
	pthread_join(t, NULL);
}

/* The last non-empty line of s, copied into out. */
static void last_line(const char *s, char *out, size_t n)
{
	size_t len = strlen(s), end, start;

	while (len && s[len - 1] == '\n')
		len--;
	end = len;
	start = end;
	while (start && s[start - 1] != '\n')
		start--;
	snprintf(out, n, "%.*s", (int)(end - start), s + start);
}

static int run_self(const char *env, char **out, char **err)
{
	char *const argv[] = { "/proc/self/exe", "selftest_", NULL };
	const char *const envv[] = { env, NULL };

	return test_run(argv, envv, NULL, out, err);
}

TEST(runner_failed_test_cleans_up_and_ends_with_the_summary)
{
	char *out = NULL, *err = NULL, last[128];
	const char *dir;
	struct stat st;
	int rc;

	rc = run_self("TEST_SELFTEST_FAIL=1", &out, &err);
	test_defer_free(out);
	test_defer_free(err);
	ASSERT(out && err);
	ASSERT_EQ(rc, 1);
	ASSERT_CONTAINS(out, "FAIL selftest_fail_cleans_up");
	ASSERT_CONTAINS(out, "stack fixture intact");
	last_line(out, last, sizeof(last));
	ASSERT_STREQ(last, "0 passed, 1 failed");
	ASSERT(!strstr(err, "LeakSanitizer"));
	ASSERT(!strstr(err, "ERROR"));
	/* the temp dir it made is gone: its cleanup ran */
	dir = strstr(out, "selftest dir ");
	ASSERT(dir);
	dir += strlen("selftest dir ");
	{
		char path[128];

		snprintf(path, sizeof(path), "%.*s", (int)strcspn(dir, "\n"), dir);
		ASSERT(stat(path, &st) != 0);
	}
}

TEST(runner_leak_is_counted_and_reported_before_the_summary)
{
	char *out = NULL, *err = NULL, last[128];
	int rc;

	rc = run_self("TEST_SELFTEST_LEAK=1", &out, &err);
	test_defer_free(out);
	test_defer_free(err);
	ASSERT(out && err);
	ASSERT_EQ(rc, 1);
	ASSERT_CONTAINS(err, "LeakSanitizer");
	ASSERT_CONTAINS(err, "777 byte");
	ASSERT_CONTAINS(out, "FAIL leak check");
	last_line(out, last, sizeof(last));
	ASSERT_STREQ(last, "1 passed, 1 failed");
}
