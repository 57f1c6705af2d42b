/* bench_rule: cost per lead of decode + rule `process` (issue 3's target:
 * under 2 us per lead on a 2-core machine), printed beside baselines
 * measured in the same run, since these machines are noisy:
 *   parse   cJSON_ParseWithLength of the same answer (the library parse a
 *           naive implementation would use, without building Lua values);
 *   decode  our decode_push alone (json -> Lua values); also of an answer
 *           in windows-1251 (its Content-Type says so: iconv to UTF-8
 *           first, then the same parse);
 *   rule    decode + the seed's setstc one-liner over the answer.
 * Scenarios: one answer of N leads where the CRM reports what we already
 * know (the common poll: nothing changes), and N leads in batches of 1000
 * where every lead changes (the worst poll).
 *
 * Usage: bench_rule [N] [--json] [--only parse|rule]
 *   --json  one JSON object of the figures instead of the table (the
 *           benchmark's bench/sec_rule.py reads it);
 *   --only  runs that one step alone, for `valgrind --tool=callgrind
 *           --toggle-collect=bench_only`: instructions do not depend on the
 *           machine's load. */
#define _GNU_SOURCE
#include <cJSON.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "decode.h"
#include "rule.h"

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static const char rule_text[] =
	"return { processing = { url = 'http://crm.example/orders?ids={idel}', batch = 1000,\n"
	"  process = function(data) for _, d in ipairs(data) do lead.setstc(e2i[d.id], d.status) end end } }\n";

static void make_leads(struct lead *l, size_t n, int64_t first)
{
	size_t i;

	memset(l, 0, n * sizeof(*l));
	for (i = 0; i < n; i++) {
		l[i].id = first + (int64_t)i;
		l[i].offer = 1;
		snprintf(l[i].ext, sizeof(l[i].ext), "X-%lld", (long long)(first + (int64_t)i));
		l[i].status = 2;
		memcpy(l[i].comment, "processing", 11); /* setstc's text is already there */
		l[i].counts = 1;
		l[i].created = 1795000000;
	}
}

static int make_answer(struct buf *b, const struct lead *l, size_t n, const char *status)
{
	size_t i;
	int rc = buf_addc(b, '[');

	for (i = 0; i < n && rc == 0; i++)
		rc = buf_addf(b, "%s{\"id\":\"%s\",\"status\":\"%s\",\"comment\":\"ok\"}", i ? "," : "",
			      l[i].ext, status);
	return rc || buf_addc(b, ']');
}

static double run_rule(struct rule_rt *rt, const struct lead *leads, size_t n, const struct buf *ans,
		       size_t *changed)
{
	struct rule_batch b;
	struct rule_result res;
	char err[512];
	double t0, t;

	memset(&b, 0, sizeof(b));
	b.offer = 1;
	b.leads = leads;
	b.nleads = n;
	b.now = 1795100000;
	rule_result_init(&res);
	t0 = now_s();
	if (rule_process(rt, RULE_PROCESSING, &b, NULL, ans->p, ans->len, 200, NULL, &res, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench: %s\n", err);
		exit(1);
	}
	t = now_s() - t0;
	*changed += res.changed;
	rule_result_release(&res);
	return t;
}

/* The step --only measures; callgrind counts inside it alone. */
__attribute__((noinline)) void bench_only(struct rule_rt *rt, const struct lead *leads, size_t n,
					   const struct buf *ans, bool rule, size_t *changed);
__attribute__((noinline)) void bench_only(struct rule_rt *rt, const struct lead *leads, size_t n,
					   const struct buf *ans, bool rule, size_t *changed)
{
	if (rule)
		run_rule(rt, leads, n, ans, changed);
	else
		cJSON_Delete(cJSON_ParseWithLength(ans->p, ans->len));
}

int main(int argc, char **argv)
{
	size_t n = 1000000, changed = 0, i;
	bool json = false;
	const char *only = NULL;
	struct rule_limits lim = { .instructions = INT64_C(4000000000000), .memory = (size_t)2 << 30,
				   .time_ms = 600000, .batch_max = 1000 };
	struct lead *leads;
	struct buf ans;
	struct rule_rt *rt;
	char err[512];
	double t_parse, t_decode, t_decode_cp, t_rule, t_batches = 0, mb;
	struct buf cp;
	lua_State *L;
	cJSON *doc;

	int a;

	for (a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--json") == 0)
			json = true;
		else if (strcmp(argv[a], "--only") == 0 && a + 1 < argc)
			only = argv[++a];
		else if (argv[a][0] >= '1' && argv[a][0] <= '9')
			n = strtoul(argv[a], NULL, 10);
		else {
			fprintf(stderr, "usage: bench_rule [N] [--json] [--only parse|rule]\n");
			return 2;
		}
	}
	leads = calloc(n, sizeof(*leads));
	if (!leads)
		return 1;
	buf_init(&ans, (size_t)1 << 30);
	make_leads(leads, n, 1);
	if (make_answer(&ans, leads, n, "processing") < 0)
		return 1;
	if (rule_load_buffer("bench.lua", rule_text, strlen(rule_text), &lim, &rt, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench: %s\n", err);
		return 1;
	}

	if (only) {
		bench_only(rt, leads, n, &ans, strcmp(only, "rule") == 0, &changed);
		rule_free(rt);
		free(leads);
		buf_release(&ans);
		return 0;
	}
	mb = (double)ans.len / 1e6;
	t_parse = now_s();
	doc = cJSON_ParseWithLength(ans.p, ans.len);
	t_parse = now_s() - t_parse;
	cJSON_Delete(doc);

	L = luaL_newstate();
	t_decode = now_s();
	if (decode_push(L, DECODE_JSON, NULL, ans.p, ans.len, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench: %s\n", err);
		return 1;
	}
	t_decode = now_s() - t_decode;
	lua_close(L);

	/* "Обработка" in windows-1251, declared in the Content-Type */
	buf_init(&cp, (size_t)1 << 30);
	if (make_answer(&cp, leads, n, "\xce\xe1\xf0\xe0\xe1\xee\xf2\xea\xe0") < 0)
		return 1;
	L = luaL_newstate();
	t_decode_cp = now_s();
	if (decode_push(L, DECODE_JSON, "application/json; charset=windows-1251", cp.p, cp.len, err,
			sizeof(err)) < 0) {
		fprintf(stderr, "bench: %s\n", err);
		return 1;
	}
	t_decode_cp = now_s() - t_decode_cp;
	lua_close(L);
	buf_release(&cp);

	t_rule = run_rule(rt, leads, n, &ans, &changed);

	/* Every lead changes: batches of 1000, as the poller sends them. */
	for (i = 0; i < n; i += 1000) {
		size_t k = n - i < 1000 ? n - i : 1000;

		buf_reset(&ans);
		if (make_answer(&ans, leads + i, k, "approved") < 0)
			return 1;
		t_batches += run_rule(rt, leads + i, k, &ans, &changed);
	}

	if (json) {
		printf("{\"leads\": %zu, \"answer_mb\": %.2f, \"parse_ns\": %.1f, \"decode_ns\": %.1f,"
		       " \"decode_cp1251_ns\": %.1f, \"rule_none_ns\": %.1f, \"rule_all_ns\": %.1f,"
		       " \"changed\": %zu}\n",
		       n, mb, t_parse / (double)n * 1e9, t_decode / (double)n * 1e9,
		       t_decode_cp / (double)n * 1e9, t_rule / (double)n * 1e9,
		       t_batches / (double)n * 1e9, changed);
		goto out;
	}
	printf("bench-rule: %zu leads, one answer of %.1f MB\n", n, mb);
	printf("  baseline cJSON parse only     %7.0f ns/lead\n", t_parse / (double)n * 1e9);
	printf("  baseline decode to Lua only   %7.0f ns/lead\n", t_decode / (double)n * 1e9);
	printf("  decode from windows-1251      %7.0f ns/lead  (%.2fx decode)\n",
	       t_decode_cp / (double)n * 1e9, t_decode_cp / t_decode);
	printf("  decode + rule, none change    %7.0f ns/lead  (%.2fx cJSON parse, %.2fx decode)\n",
	       t_rule / (double)n * 1e9, t_rule / t_parse, t_rule / t_decode);
	printf("  decode + rule, all change     %7.0f ns/lead  (%.2fx cJSON parse; 1000 per batch)\n",
	       t_batches / (double)n * 1e9, t_batches / t_parse);
	printf("  target                        %7d ns/lead  -> %s\n", 2000,
	       t_rule / (double)n * 1e9 < 2000 && t_batches / (double)n * 1e9 < 2000 ? "met" : "NOT met");
	printf("  leads changed: %zu (expected %zu)\n", changed, n);
out:
	rule_free(rt);
	free(leads);
	buf_release(&ans);
	return changed == n ? 0 : 1;
}
