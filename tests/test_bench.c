/* test_bench: `make bench` at BENCH_SCALE=0.05, once per test run, so the
 * benchmark cannot rot between full runs. It asserts that every section
 * runs to the end and reports its figures (numbers, with the ceilings its
 * ratios are taken against), never how fast anything was: speed is the
 * benchmark's to print, not a test's to assert. The quick run writes its
 * results to a temporary file; bench/results.json and BENCHMARKS.md keep
 * the last full run. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "test.h"

/* Sections every full benchmark has (bench/run.py runs them in order). */
static const char *const bench_required[] = { "pass", "growth", "postbacks", "import", "rule", NULL };

static void bench_unlink(void *path)
{
	unlink(path);
}

static const cJSON *bench_section(const cJSON *res, const char *name)
{
	const cJSON *s;

	cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(res, "sections"))
	{
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(s, "section");

		if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0)
			return s;
	}
	return NULL;
}

TEST(bench_quick_scale_runs_every_section)
{
	/* on the heap: the cleanups run after this function has returned */
	char *path = test_defer_free(strdup("/tmp/leadsync-bench-test-XXXXXX"));
	char *argv[] = { "/usr/bin/env", "python3", "bench/run.py", "--scale", "0.05",
			 "--results", path, "--no-md", NULL };
	char *out = NULL, *err = NULL, *text;
	const cJSON *s, *r;
	cJSON *res;
	int fd, rc, i, rows = 0;

	ASSERT(path);
	fd = mkstemp(path);
	ASSERT(fd >= 0);
	close(fd);
	test_defer(bench_unlink, path);
	rc = test_run(argv, NULL, NULL, &out, &err);
	test_defer_free(out);
	test_defer_free(err);
	if (rc != 0)
		fprintf(stderr, "%s\n%s\n", out ? out : "", err ? err : "");
	ASSERT(rc == 0);
	ASSERT(strstr(out, "figure") && strstr(out, "ceiling"));
	text = test_defer_free(test_slurp(path));
	ASSERT(text);
	res = cJSON_Parse(text);
	ASSERT(res);
	test_defer((test_cleanup_fn)cJSON_Delete, res);
	ASSERT(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(res, "scale")));
	ASSERT(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(res, "commit")));
	ASSERT(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(res, "machine"), "cores")));
	for (i = 0; bench_required[i]; i++) {
		s = bench_section(res, bench_required[i]);
		if (!s)
			fprintf(stderr, "no section %s\n", bench_required[i]);
		ASSERT(s);
	}
	cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(res, "sections"))
	{
		ASSERT(!cJSON_GetObjectItemCaseSensitive(s, "error"));
		ASSERT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(s, "rows")) > 0);
		cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(s, "rows"))
		{
			const cJSON *c = cJSON_GetObjectItemCaseSensitive(r, "ceiling");
			const cJSON *ra = cJSON_GetObjectItemCaseSensitive(r, "ratio");

			ASSERT(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r, "name")));
			ASSERT(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(r, "value")));
			ASSERT(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r, "unit")));
			/* a ratio is always beside the ceiling it was taken against */
			ASSERT(!c || (cJSON_IsNumber(c) && cJSON_IsNumber(ra)));
			rows++;
		}
	}
	ASSERT(rows >= 5);
}
