/* test_torture: the allocation-failure runs (tests/torture/torture.c, built
 * as build/test/torture with malloc & co. wrapped) as one test of the
 * suite: a sample of every sweep (every n up to 40, then about 120 spread
 * over the rest), so `make test` stays quick; `make torture` runs every n.
 * A crash, a Lua panic, a failure without a message, a wrong result or a
 * leak in any run fails it. */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>

TEST(torture_allocation_failures_sample)
{
	char bin[] = "build/test/torture", sample[] = "--sample";
	char *argv[] = { bin, sample, NULL };
	const char *env[] = { "ASAN_OPTIONS=detect_leaks=1", NULL };
	char *out = NULL, *err = NULL;
	int rc = test_run(argv, env, NULL, &out, &err);

	test_defer(free, out);
	test_defer(free, err);
	if (rc != 0 || !out || !strstr(out, " passed, 0 failed\n"))
		test__fail(__FILE__, __LINE__, "build/test/torture --sample: exit %d\n%s%s", rc,
			   out ? out : "", err ? err : "");
	ASSERT(out && strstr(out, "torture rule "));
}
