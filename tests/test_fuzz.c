/* test_fuzz: replays every fuzz corpus (tests/fuzz/corpus/NAME) once
 * through its target's plain driver (build/test/fuzz/NAME: the target with
 * tests/fuzz/replay.c under ASan and UBSan, no clang needed), so an input
 * that once crashed, leaked or tripped a target's own check fails the
 * suite. Every target must have a corpus, and every corpus a target. */
#include "test.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static size_t fuzz_t_corpus_files(const char *dir)
{
	struct dirent *e;
	size_t n = 0;
	DIR *d = opendir(dir);

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

TEST(fuzz_corpora_replay_without_a_crash)
{
	DIR *d = opendir("tests/fuzz");
	struct dirent *e;
	size_t targets = 0;

	ASSERT(d != NULL);
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		char name[128], bin[256], corpus[256];
		char *out = NULL, *err = NULL;
		int rc;

		if (len < 3 || len >= sizeof(name) || strcmp(e->d_name + len - 2, ".c") != 0 ||
		    strcmp(e->d_name, "replay.c") == 0)
			continue;
		memcpy(name, e->d_name, len - 2);
		name[len - 2] = '\0';
		targets++;
		snprintf(bin, sizeof(bin), "build/test/fuzz/%s", name);
		snprintf(corpus, sizeof(corpus), "tests/fuzz/corpus/%s", name);
		if (fuzz_t_corpus_files(corpus) == 0) {
			test__fail(__FILE__, __LINE__, "fuzz target %s has no seed corpus in %s", name,
				   corpus);
			continue;
		}
		{
			char *argv[] = { bin, corpus, NULL };

			rc = test_run(argv, NULL, NULL, &out, &err);
		}
		if (rc != 0 || !out || !strstr(out, "replay: "))
			test__fail(__FILE__, __LINE__, "%s on %s: exit %d\n%s%s", bin, corpus, rc,
				   out ? out : "", err ? err : "");
		free(out);
		free(err);
	}
	closedir(d);
	ASSERT(targets > 0);

	/* A corpus without its target would never be replayed. */
	d = opendir("tests/fuzz/corpus");
	ASSERT(d != NULL);
	while ((e = readdir(d))) {
		char src[512];

		if (e->d_name[0] == '.')
			continue;
		snprintf(src, sizeof(src), "tests/fuzz/%s.c", e->d_name);
		if (access(src, F_OK) != 0)
			test__fail(__FILE__, __LINE__, "corpus %s has no target %s", e->d_name, src);
	}
	closedir(d);
}
