/* Tests of the rule runtime (src/rule*.c): the sandbox refuses every
 * escape and survives it, edits go through the lead semantics, the seed's
 * PHP snippets ported to Lua, the helpers (json, form, hashes, base64),
 * requests and paging. */
#include "rule.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "ruletest.h"
#include "status.h"

#define T_NAME "rules/t.lua"
#define T_NOW INT64_C(1795000000)
/* a process rule: the body given goes on line 2 of the file */
#define T_HEAD "return { processing = { url = 'https://crm.example/api?ids={idsl}', process = function(data)\n"
#define T_TAIL "\nend } }\n"

static struct lead t_leads[3];
static const struct rule_goal t_goals[] = {
	{ 10, "lead", { 5, PAYOUT_FIXED, 500, 800, 0, 1 } },
	{ 10, "sale", { 6, PAYOUT_PERCENT, 1000, 2000, 0, 1 } },
};
static const struct rule_currency t_curr[] = { { "USD", 1 }, { "EUR", 2 } };
static const struct macro_param t_params[] = { { "host", "crm.example" }, { "key", "s3cret" } };

static void t_batch(struct rule_batch *b, size_t n)
{
	static const struct {
		int64_t id;
		const char *ext;
		int status;
	} l[3] = { { 101, "A-1", 2 }, { 102, "A-2", 3 }, { 103, "777", 2 } };
	size_t i;

	memset(t_leads, 0, sizeof(t_leads));
	for (i = 0; i < 3; i++) {
		t_leads[i].id = l[i].id;
		t_leads[i].offer = 10;
		snprintf(t_leads[i].ext, sizeof(t_leads[i].ext), "%s", l[i].ext);
		t_leads[i].status = l[i].status;
		t_leads[i].goal = 5;
		t_leads[i].base = 3000;
		t_leads[i].counts = 1;
		t_leads[i].created = T_NOW - 86400 * (int64_t)(i + 1);
	}
	memset(b, 0, sizeof(*b));
	b->offer = 10;
	b->leads = t_leads;
	b->nleads = n;
	b->params = t_params;
	b->nparams = 2;
	b->settings.hold_days = 7;
	b->settings.reject_reason = 2;
	b->goals = t_goals;
	b->ngoals = 2;
	b->currencies = t_curr;
	b->ncurrencies = 2;
	b->now = T_NOW;
}

static struct rule_rt *t_load(const char *src, const struct rule_limits *lim, char *err,
			      size_t errlen)
{
	struct rule_rt *rt = NULL;

	if (rule_load_buffer(T_NAME, src, strlen(src), lim, &rt, err, errlen) < 0)
		return NULL;
	return rt;
}

/* process body on the 3-lead batch into a fresh *res */
static int t_process(struct rule_rt *rt, const char *body, struct rule_result *res, char *err,
		     size_t errlen)
{
	struct rule_batch b;

	t_batch(&b, 3);
	rule_result_init(res);
	return rule_process(rt, RULE_PROCESSING, &b, NULL, body, strlen(body), 200, NULL, res, err,
			    errlen);
}

static const struct lead *t_after(const struct rule_result *r, int64_t id)
{
	size_t i;

	for (i = 0; i < r->nchanges; i++)
		if (t_leads[r->changes[i].lead].id == id)
			return &r->changes[i].after;
	return NULL;
}

/* The log of one process call with the given body code, or NULL (failure recorded). */
static char *t_log(const char *code)
{
	char src[4096], err[512];
	struct rule_rt *rt;
	struct rule_result res;
	char *out = NULL;

	snprintf(src, sizeof(src), T_HEAD "%s" T_TAIL, code);
	rt = t_load(src, NULL, err, sizeof(err));
	if (!rt) {
		test__fail(__FILE__, __LINE__, "load: %s", err);
		return NULL;
	}
	if (t_process(rt, "{}", &res, err, sizeof(err)) < 0)
		test__fail(__FILE__, __LINE__, "process: %s", err);
	else
		out = strdup(res.log.p ? res.log.p : "");
	rule_result_release(&res);
	rule_free(rt);
	return out;
}

/* A rule whose line 2 runs `bad` when the answer says so, and otherwise
 * approves lead 101: the bad call must fail with `want` in its message
 * (and the position rules/t.lua:2), the next call must work. */
static bool t_escape(const char *bad, const char *want, const struct rule_limits *lim)
{
	char src[4096], err[512];
	struct rule_rt *rt;
	struct rule_result res;
	const struct lead *l;
	bool ok = false;
	int rc;

	snprintf(src, sizeof(src),
		 T_HEAD "if data.bad then %s end\nlead.setstc(e2i['A-1'], 'accept')" T_TAIL, bad);
	rt = t_load(src, lim, err, sizeof(err));
	if (!rt) {
		test__fail(__FILE__, __LINE__, "load: %s", err);
		return false;
	}
	rc = t_process(rt, "{\"bad\":true}", &res, err, sizeof(err));
	if (rc == 0 || !strstr(err, want) || strncmp(err, T_NAME ":2: ", strlen(T_NAME ":2: "))) {
		test__fail(__FILE__, __LINE__, "'%s': rc %d, message \"%s\", want \"%s:2: ...%s...\"",
			   bad, rc, rc ? err : "", T_NAME, want);
		goto out;
	}
	rule_result_release(&res);
	if (t_process(rt, "{}", &res, err, sizeof(err)) < 0) {
		test__fail(__FILE__, __LINE__, "'%s': the next call failed: %s", bad, err);
		goto out;
	}
	l = t_after(&res, 101);
	if (res.nchanges != 1 || !l || l->status != LS_PACKING) {
		test__fail(__FILE__, __LINE__, "'%s': the next call made %zu changes", bad,
			   res.nchanges);
		goto out;
	}
	ok = true;
out:
	rule_result_release(&res);
	rule_free(rt);
	return ok;
}

/* The wall clock is far beyond what the budget takes on any machine: a
 * budget test must end by the budget, never race the clock (under ASan and
 * a CPU hog, 2M instructions of pcall(error) took over 5 s). */
static const struct rule_limits t_small = {
	.instructions = 2000000, .memory = (size_t)16 << 20, .time_ms = 600000,
};

/* ---- sandbox: what does not exist ------------------------------------ */

TEST(rule_sandbox_no_io)
{
	ASSERT(t_escape("io.open('/etc/passwd')", "global 'io'", NULL));
}

TEST(rule_sandbox_no_os_execute)
{
	ASSERT(t_escape("os.execute('true')", "field 'execute'", NULL));
	ASSERT(t_escape("os.getenv('HOME')", "field 'getenv'", NULL));
	ASSERT(t_escape("os.remove('/tmp/x')", "field 'remove'", NULL));
}

TEST(rule_sandbox_no_load)
{
	ASSERT(t_escape("load('return 1')()", "global 'load'", NULL));
	ASSERT(t_escape("loadstring('return 1')()", "global 'loadstring'", NULL));
	ASSERT(t_escape("dofile('/etc/passwd')", "global 'dofile'", NULL));
	ASSERT(t_escape("loadfile('/etc/passwd')", "global 'loadfile'", NULL));
	ASSERT(t_escape("require('os')", "global 'require'", NULL));
}

TEST(rule_sandbox_no_debug_dump_gc)
{
	ASSERT(t_escape("debug.getregistry()", "global 'debug'", NULL));
	ASSERT(t_escape("string.dump(function() end)", "field 'dump'", NULL));
	ASSERT(t_escape("('x'):dump()", "method 'dump'", NULL));
	ASSERT(t_escape("collectgarbage('stop')", "global 'collectgarbage'", NULL));
	ASSERT(t_escape("package.loaded.os.execute('true')", "global 'package'", NULL));
	ASSERT(t_escape("rawset(string, 'x', 1)", "global 'rawset'", NULL));
}

TEST(rule_sandbox_library_tables_are_read_only)
{
	ASSERT(t_escape("string.lower = nil", "'string' is read-only", NULL));
	ASSERT(t_escape("table.x = 1", "'table' is read-only", NULL));
	ASSERT(t_escape("lead.edit = function() end", "'lead' is read-only", NULL));
	ASSERT(t_escape("setmetatable(string, {})", "cannot change a protected metatable", NULL));
	ASSERT(t_escape("getmetatable('').__index.upper = nil", "attempt to index a boolean value",
			NULL));
	ASSERT(t_escape("getmetatable(_ENV).__index = {}", "attempt to index a boolean value", NULL));
	ASSERT(t_escape("setmetatable(_ENV, nil)", "cannot change a protected metatable", NULL));
}

TEST(rule_sandbox_no_coroutine)
{
	ASSERT(t_escape("coroutine.wrap(function() while true do end end)()", "global 'coroutine'",
			NULL));
}

TEST(rule_sandbox_no_gc_metamethod)
{
	ASSERT(t_escape("setmetatable({}, {__gc = function() while true do end end})",
			"__gc metamethods are not allowed", NULL));
}

/* A global written in one call is gone in the next; so is a top-level local. */
TEST(rule_sandbox_fresh_environment_per_call)
{
	char err[512];
	const char *src = "local n = 0\n"
			  "return { processing = { url = 'https://x/', process = function(data)\n"
			  "n = n + 1; counter = (counter or 0) + 1; log(n, counter)\n"
			  "end } }\n";
	struct rule_rt *rt = t_load(src, NULL, err, sizeof(err));
	struct rule_result res;

	ASSERT(rt);
	ASSERT_EQ(t_process(rt, "{}", &res, err, sizeof(err)), 0);
	ASSERT_STREQ(res.log.p, T_NAME ":3: 1\t1\n");
	rule_result_release(&res);
	ASSERT_EQ(t_process(rt, "{}", &res, err, sizeof(err)), 0);
	ASSERT_STREQ(res.log.p, T_NAME ":3: 1\t1\n");
	rule_result_release(&res);
	rule_free(rt);
}

/* ---- sandbox: limits -------------------------------------------------- */

TEST(rule_budget_endless_loop)
{
	ASSERT(t_escape("while true do end", "instruction budget exhausted (2000000)", &t_small));
}

TEST(rule_budget_loop_inside_pcall)
{
	ASSERT(t_escape("pcall(function() while true do end end) lead.edit(e2i['A-2'], {status = 5})",
			"instruction budget exhausted", &t_small));
	ASSERT(t_escape("while true do pcall(error, 'x') end", "instruction budget exhausted",
			&t_small));
	/* the handler of a kill would run with hooks off: it is not run */
	ASSERT(t_escape("xpcall(function() while true do end end, function(m) while true do end end)",
			"instruction budget exhausted", &t_small));
	ASSERT(t_escape("xpcall(function() error('x') end, function(m) while true do end end)",
			"instruction budget exhausted", &t_small));
	ASSERT(t_escape("local x <close> = setmetatable({}, {__close = function() while true do end end}) while true do end",
			"instruction budget exhausted", &t_small));
	ASSERT(t_escape("string.gsub('abc', '%w', function(c) while true do end end)",
			"instruction budget exhausted", &t_small));
	ASSERT(t_escape("table.sort({3, 2, 1}, function(a, b) while true do end end)",
			"instruction budget exhausted", &t_small));
}

/* The budget cannot be caught: the edits made after the catch never land. */
TEST(rule_budget_pcall_cannot_continue)
{
	char err[512];
	struct rule_rt *rt = t_load(T_HEAD "local ok = pcall(function() while true do end end)\n"
					   "lead.edit(e2i['A-2'], {status = 5}) log('after', ok)" T_TAIL,
				    &t_small, err, sizeof(err));
	struct rule_result res;

	ASSERT(rt);
	ASSERT_EQ(t_process(rt, "{}", &res, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, T_NAME ":2: instruction budget exhausted");
	ASSERT_EQ(res.nchanges, 0);
	ASSERT_EQ(res.log.len, 0);
	rule_result_release(&res);
	rule_free(rt);
}

TEST(rule_budget_wall_clock)
{
	const struct rule_limits lim = { .instructions = 2000000000, .time_ms = 50 };

	/* the message says the time limit ended it, not the (huge) budget;
	 * how long after 50 ms the machine let it stop is not asserted */
	ASSERT(t_escape("while true do end", "time limit exceeded (50 ms)", &lim));
}

TEST(rule_memory_string_bomb)
{
	ASSERT(t_escape("local s = string.rep('x', 1e9)", "string.rep: the result is over", &t_small));
	ASSERT(t_escape("local s = ('x'):rep(2^62)", "string.rep: the result is over", &t_small));
	ASSERT(t_escape("local s = 'xxxxxxxx' for i = 1, 40 do s = s .. s end",
			"the largest allowed is 4194304)",
			&t_small));
	ASSERT(t_escape("pcall(function() local s = 'xxxxxxxx' for i = 1, 40 do s = s .. s end end)",
			"memory limit exceeded", &t_small));
	/* an empty string repeated for ever costs nothing */
	ASSERT(t_escape("error(#string.rep('', 1e15) == 0 and 'empty' or 'full')", "empty", &t_small));
}

TEST(rule_memory_table_bomb)
{
	const struct rule_limits lim = { .instructions = 200000000, .memory = (size_t)16 << 20,
					 .alloc_max = (size_t)16 << 20, .time_ms = 600000 };

	ASSERT(t_escape("local t = {} for i = 1, 1e9 do t[i] = i end", "memory limit exceeded (16 MiB)",
			&lim));
	ASSERT(t_escape("local t = {} while true do t[#t + 1] = {} end", "memory limit exceeded",
			&lim));
	ASSERT(t_escape("local t = {} pcall(function() while true do t[#t + 1] = 'x' .. #t end end) t = nil",
			"memory limit exceeded", &lim));
}

/* Which limit ended the last call, for /metrics: each kill by its name,
 * a plain error and a good call as none. */
static enum rule_limit t_limit_of(const char *bad, const struct rule_limits *lim)
{
	char src[4096], err[512];
	struct rule_result res;
	struct rule_rt *rt;
	enum rule_limit l = RULE_LIMIT_NONE;

	snprintf(src, sizeof(src), T_HEAD "if data.bad then %s end" T_TAIL, bad);
	rt = t_load(src, lim, err, sizeof(err));
	if (!rt)
		return (enum rule_limit)-1;
	if (t_process(rt, "{\"bad\":true}", &res, err, sizeof(err)) < 0)
		l = rule_last_limit(rt);
	rule_result_release(&res);
	if (t_process(rt, "{}", &res, err, sizeof(err)) < 0 || rule_last_limit(rt) != RULE_LIMIT_NONE)
		l = (enum rule_limit)-2;
	rule_result_release(&res);
	rule_free(rt);
	return l;
}

TEST(rule_last_limit_names_the_limit)
{
	const struct rule_limits slow = { .instructions = 2000000000, .time_ms = 50 };

	ASSERT_EQ(t_limit_of("while true do end", &t_small), RULE_LIMIT_BUDGET);
	ASSERT_EQ(t_limit_of("local t = {} while true do t[#t + 1] = {} end", &t_small),
		  RULE_LIMIT_MEMORY);
	ASSERT_EQ(t_limit_of("while true do end", &slow), RULE_LIMIT_TIME);
	ASSERT_EQ(t_limit_of("error('plain')", &t_small), RULE_LIMIT_NONE);
}

/* After a memory kill the heap is collected: the runtime is back to its size. */
TEST(rule_memory_is_returned_after_a_kill)
{
	char err[512];
	const struct rule_limits lim = { .memory = (size_t)16 << 20, .time_ms = 600000 };
	struct rule_rt *rt = t_load(T_HEAD "local t = {} while true do t[#t + 1] = {} end" T_TAIL, &lim,
				    err, sizeof(err));
	struct rule_result res;
	size_t before;

	ASSERT(rt);
	before = rule_memory(rt);
	ASSERT(before < ((size_t)1 << 20));
	ASSERT_EQ(t_process(rt, "{}", &res, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, T_NAME ":2: memory limit exceeded");
	ASSERT(rule_memory(rt) < before + ((size_t)256 << 10));
	rule_result_release(&res);
	rule_free(rt);
}

TEST(rule_pattern_catastrophic_is_bounded)
{
	struct timespec t0, t1;

	/* CPU time of this thread: what the work cost, whatever else runs */
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
	ASSERT(t_escape("local s = string.rep('a', 1e6) local m = s:match('(.-)*b')",
			"instruction budget exhausted", &t_small));
	ASSERT(t_escape("local s = string.rep('a', 1e5) pcall(string.find, s, '.-.-.-b')",
			"instruction budget exhausted", &t_small));
	ASSERT(t_escape("local s = string.rep('a', 3e4) for w in s:gmatch('a*b') do end",
			"instruction budget exhausted", &t_small));
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
	ASSERT((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 < 5000);
	ASSERT(t_escape("local s = string.rep('a', 2e6) s:find('a')", "over the pattern functions' limit",
			&t_small));
	ASSERT(t_escape("local p = string.rep('a', 300); string.find('x', p)", "pattern of 300 bytes", NULL));
}

TEST(rule_recursion_is_bounded)
{
	/* the default budget, but not the 2 s clock: under ASan on a busy
	 * machine the stack takes longer than that to fill */
	const struct rule_limits lim = { .time_ms = 600000 };

	ASSERT(t_escape("local function f() return 1 + f() end f()", "stack overflow", &lim));
	ASSERT(t_escape("local function f(s) return (s:gsub('.', f)) end f('abc')", "stack overflow",
			&lim));
}

TEST(rule_table_move_is_charged)
{
	ASSERT(t_escape("table.move({}, 1, 1e12, 2)", "instruction budget exhausted", &t_small));
}

/* The library functions that work in C pay for it by the byte or the
 * element: a loop of a few calls on a big input runs out of budget (2M
 * units) although its VM instructions number in the hundreds. Before
 * they were charged, each of these ran to its end. */
TEST(rule_budget_covers_library_c_work)
{
	static const char *const loops[] = {
		"local s = string.rep('a', 1 << 20) for i = 1, 20 do hash.sha256(s) end",
		"local s = string.rep('a', 1 << 20) for i = 1, 20 do hash.md5(s) end",
		"local s = string.rep('a', 1 << 20) for i = 1, 20 do hash.hmac_sha1('k', s) end",
		"local s = string.rep('a', 1 << 20) for i = 1, 20 do base64.encode(s) end",
		"local s = string.rep('QUJD', 1 << 18) for i = 1, 20 do base64.decode(s) end",
		"local s = string.rep('a', 1 << 20) for i = 1, 20 do form.escape(s) end",
		"local s = string.rep('a', 1 << 20) for i = 1, 20 do s:upper() end",
		"local s = string.rep('a', 1 << 20) for i = 1, 100 do string.format('%s', s) end",
		"local s = string.rep('a', 1 << 20) for i = 1, 20 do utf8.len(s) end",
		"local s = '[' .. string.rep('1,', 1 << 18) .. '1]' for i = 1, 20 do json.decode(s) end",
		"local s = string.rep('a=1&', 1 << 17) for i = 1, 20 do form.decode(s) end",
		"local s = '<r>' .. string.rep('<o/>', 1 << 16) .. '</r>' xml.decode(s)",
		"local t = {} for i = 1, 1e5 do t[i] = i end json.encode(t)",
		"local t = {} for i = 1, 1e5 do t[i] = i end for i = 1, 20 do form.encode({ids = t}) end",
		"local t = {} for i = 1, 1e5 do t[i] = 'abcdefgh' end for i = 1, 20 do table.concat(t) end",
		"local el = {children = {}} for i = 1, 1e5 do el.children[i] = {name = 'o'} end "
		"for i = 1, 20 do xml.all(el, 'o') end",
		"local el = {children = {}} for i = 1, 1e5 do el.children[i] = {name = 'o'} end "
		"for i = 1, 20 do xml.find(el, 'x') end",
		"for i = 1, 20 do string.rep('abcdefgh', 1 << 18) end",
		"local t = {} for i = 1, 1e5 do t[i] = i end for i = 1, 20 do table.insert(t, 1, 0) end",
		"local t = {} for i = 1, 1e5 do t[i] = i end for i = 1, 20 do table.remove(t, 1) end",
		"local t = {} for i = 1, 1e5 do t[i] = i end for i = 1, 20 do table.sort(t) end",
		"local t = {} for i = 1, 1e5 do t[i] = i end for i = 1, 50 do table.unpack(t) end",
	};
	size_t i;

	for (i = 0; i < sizeof(loops) / sizeof(loops[0]); i++)
		ASSERT(t_escape(loops[i], "instruction budget exhausted (2000000)", &t_small));
}

/* A rule of ordinary size is not refused: the same calls once, on inputs
 * of a CRM answer's size, fit the budget many times over. */
TEST(rule_budget_ordinary_library_calls_fit)
{
	char *log = test_defer_free(t_log(
		"local t = {} for i = 1, 1000 do t[i] = {id = i, st = 'ok', sum = i / 3} end\n"
		"local j = json.encode(t) local back = json.decode(j)\n"
		"local s = hash.hmac_sha256('key', j) .. base64.encode(j) .. form.encode({ids = t})\n"
		"local u = {3, 1, 2} table.sort(u) table.insert(u, 1, 0) table.insert(u, 9) table.remove(u, 1)\n"
		"log(#back, #s > 0, table.concat({'a', 'b'}, ','), ('x'):rep(3), xml.find({}, 'o') == nil,"
		" table.unpack(u))"));

	ASSERT(log);
	ASSERT_CONTAINS(log, "1000\ttrue\ta,b\txxx\ttrue\t1\t2\t3\t9");
}

/* string.rep pays before it allocates: 20 MB are held, so making 40 MB
 * more would be a memory error; the budget ends it first. */
TEST(rule_budget_string_rep_is_charged_before_allocating)
{
	const struct rule_limits lim = { .instructions = 4000000, .memory = (size_t)48 << 20,
					 .alloc_max = (size_t)48 << 20, .time_ms = 600000 };

	ASSERT(t_escape("local keep = string.rep('y', 20e6) local big = string.rep('x', 40e6)",
			"instruction budget exhausted (4000000)", &lim));
	ASSERT(t_escape("string.rep('x', 1e15)", "string.rep: the result is over the limit", &t_small));
	ASSERT(t_escape("string.rep('x', 2^62, ',')", "string.rep: the result is over the limit",
			&t_small));
}

TEST(rule_error_messages_carry_file_and_line)
{
	ASSERT(t_escape("local d d.x = 1", "attempt to index a nil value (local 'd')", NULL));
	ASSERT(t_escape("error('boom')", "boom", NULL));
	ASSERT(t_escape("error('no position', 0)", "no position", NULL));
	ASSERT(t_escape("error({})", "error object is a table value", NULL));
	ASSERT(t_escape("error(setmetatable({}, {__tostring = function() while true do end end}))",
			"error object is a table value", NULL));
	ASSERT(t_escape("string.format('%d', 'x')", "bad argument #2 to 'format'", NULL));
}

TEST(rule_syntax_error_has_file_and_line)
{
	char err[512];
	struct rule_rt *rt = t_load("return {\n processing = { url = 'x',\n process = function( end }}",
				    NULL, err, sizeof(err));

	ASSERT(!rt);
	ASSERT_CONTAINS(err, T_NAME ":3: ");
	ASSERT_CONTAINS(err, "near 'end'");
}

TEST(rule_binary_chunk_is_refused)
{
	char err[512];
	struct rule_rt *rt = NULL;

	ASSERT_EQ(rule_load_buffer(T_NAME, "\x1bLua\x54\x00", 6, NULL, &rt, err, sizeof(err)), -1);
	ASSERT(!rt);
	ASSERT_CONTAINS(err, T_NAME ": ");
	ASSERT_CONTAINS(err, "binary chunk");
}

TEST(rule_load_checks_the_table)
{
	char err[512];

	ASSERT(!t_load("return 5", NULL, err, sizeof(err)));
	ASSERT_CONTAINS(err, "must return a table, not number");
	ASSERT(!t_load("return { processing = { url = 'https://x/', fomat = 'json', process = print } }",
		       NULL, err, sizeof(err)));
	ASSERT_STREQ(err, T_NAME ": processing: unknown key 'fomat'");
	ASSERT(!t_load("return { processing = { url = 'https://x/' } }", NULL, err, sizeof(err)));
	ASSERT_CONTAINS(err, "no process function");
	ASSERT(!t_load("return { processing = { url = 'https://x/', format = 'yaml', process = print } }",
		       NULL, err, sizeof(err)));
	ASSERT_CONTAINS(err, "format must be json, xml, form or text");
	ASSERT(!t_load("return { processing = { url = 'https://x/', batch = 5000, process = print } }",
		       NULL, err, sizeof(err)));
	ASSERT_CONTAINS(err, "batch must be an integer in 1..1000");
	ASSERT(!t_load("return { process = print }", NULL, err, sizeof(err)));
	ASSERT_CONTAINS(err, "declares none of the variants");
	ASSERT(!t_load("return { statuses = { x = 'nonsense' }, dates = { url = 'https://x/', process = print } }",
		       NULL, err, sizeof(err)));
	ASSERT_CONTAINS(err, "statuses['x']: unknown status 'nonsense'");
	ASSERT(!t_load("while true do end", &t_small, err, sizeof(err)));
	ASSERT_CONTAINS(err, T_NAME ":1: instruction budget exhausted");
}

TEST(rule_variant_info_reads_the_declaration)
{
	char err[512];
	struct rule_variant_info vi;
	struct rule_rt *rt = t_load(
		"return { process = print, statuses = { [142] = 'accept' },\n"
		" processing = { url = 'https://x/', batch = 25, format = 'xml', statuses = { lost = 5 } },\n"
		" dates = { url = 'https://x/?from={from}', days = 7, prepare = print } }",
		NULL, err, sizeof(err));

	ASSERT(rt);
	rule_variant_info(rt, RULE_PROCESSING, &vi);
	ASSERT(vi.present);
	ASSERT_EQ(vi.batch, 25);
	ASSERT_EQ(vi.format, DECODE_XML);
	ASSERT(!vi.prepare);
	ASSERT_EQ(vi.status_words, 2);
	rule_variant_info(rt, RULE_ACCEPTED, &vi);
	ASSERT(!vi.present);
	rule_variant_info(rt, RULE_DATES, &vi);
	ASSERT(vi.present);
	ASSERT_EQ(vi.days, 7);
	ASSERT(vi.prepare);
	ASSERT_EQ(vi.format, DECODE_JSON);
	ASSERT_EQ(rule_variant_parse("dates"), RULE_DATES);
	ASSERT_EQ(rule_variant_parse("nope"), -1);
	rule_free(rt);
}

/* ---- edits ------------------------------------------------------------ */

static struct rule_rt *t_rule(const char *body)
{
	char src[4096], err[512];
	struct rule_rt *rt;

	snprintf(src, sizeof(src), T_HEAD "%s" T_TAIL, body);
	rt = t_load(src, NULL, err, sizeof(err));
	if (!rt)
		test__fail(__FILE__, __LINE__, "load: %s", err);
	return rt;
}

TEST(rule_edit_outside_the_batch_is_refused)
{
	char err[512];
	struct rule_rt *rt = t_rule("local ok, why = lead.edit(999, {status = 5}) log(ok, why)\n"
				    "lead.edit(e2i['A-1'], {status = 3})");
	struct rule_result res;

	ASSERT(rt);
	ASSERT_EQ(t_process(rt, "{}", &res, err, sizeof(err)), 0);
	ASSERT_EQ(res.refused, 1);
	ASSERT_EQ(res.changed, 1);
	ASSERT_EQ(res.nchanges, 1);
	ASSERT_CONTAINS(res.notes.p, T_NAME ":2: lead 999 is not in this batch");
	ASSERT_CONTAINS(res.log.p, "nil\tlead 999 is not in this batch");
	ASSERT_EQ(t_after(&res, 101)->status, LS_CALLBACK);
	rule_result_release(&res);
	rule_free(rt);
}

TEST(rule_edit_nil_id_is_counted_not_an_error)
{
	char err[512];
	struct rule_rt *rt = t_rule("lead.edit(e2i['nope'], {status = 5}) lead.setstc(nil, 'accept')");
	struct rule_result res;

	ASSERT(rt);
	ASSERT_EQ(t_process(rt, "{}", &res, err, sizeof(err)), 0);
	ASSERT_EQ(res.unknown, 2);
	ASSERT_EQ(res.refused, 0);
	ASSERT_EQ(res.nchanges, 0);
	ASSERT_EQ(res.edits, 2);
	rule_result_release(&res);
	rule_free(rt);
}

TEST(rule_edit_bad_values_are_refused)
{
	char err[512];
	struct rule_rt *rt = t_rule(
		"lead.edit(101, {status = 13}) lead.edit(101, {status = 5, reason = 99})\n"
		"lead.edit(101, {colour = 'red'}) lead.edit(101, {status = 'five'})\n"
		"lead.edit(101, {curr = 'XYZ'}) lead.edit(101, {goal = 'nope'}) lead.edit(101, 'x')\n"
		"lead.edit('A-1', {status = 5}) lead.edit(101, {cash = {tip = 1}})\n"
		"lead.edit(101, {accept = 1, cash = {pay = 3.5, cc = 'EUR'}})");
	struct rule_result res;

	ASSERT(rt);
	ASSERT_EQ(t_process(rt, "{}", &res, err, sizeof(err)), 0);
	ASSERT_EQ(res.refused, 10);
	ASSERT_EQ(res.nchanges, 0);
	ASSERT_CONTAINS(res.notes.p, "lead 101: status 13 is not in 1..12");
	ASSERT_CONTAINS(res.notes.p, "lead 101: reason 99 is not in 1..17");
	ASSERT_CONTAINS(res.notes.p, "unknown field 'colour'");
	ASSERT_CONTAINS(res.notes.p, "bad status 'five'");
	ASSERT_CONTAINS(res.notes.p, "bad curr 'XYZ'");
	ASSERT_CONTAINS(res.notes.p, "bad goal 'nope'");
	ASSERT_CONTAINS(res.notes.p, "lead.edit needs a table of fields, not string");
	ASSERT_CONTAINS(res.notes.p, "lead id 'A-1' is not an integer");
	ASSERT_CONTAINS(res.notes.p, "unknown cash field 'tip'");
	ASSERT_CONTAINS(res.notes.p, "lead 101: cash cc changes the payouts' currency without wm, "
				     "ref: give wm, pay and ref together");
	rule_result_release(&res);
	rule_free(rt);
}

/* A network that extended its reasons to 40 accepts reason 30. */
TEST(rule_edit_reason_within_the_network_list)
{
	char err[512];
	struct rule_rt *rt = t_rule("lead.edit(101, {status = 5, reason = 30})");
	struct rule_batch b;
	struct rule_result res;

	ASSERT(rt);
	t_batch(&b, 3);
	b.reasons_max = 40;
	rule_result_init(&res);
	ASSERT_EQ(rule_process(rt, RULE_PROCESSING, &b, NULL, "{}", 2, 200, NULL, &res, err, sizeof(err)), 0);
	ASSERT_EQ(res.refused, 0);
	ASSERT_EQ(t_after(&res, 101)->reason, 30);
	rule_result_release(&res);
	rule_free(rt);
}

TEST(rule_edit_every_field)
{
	char err[512];
	struct rule_rt *rt = t_rule(
		"lead.edit(101, {hold = true, comment = 'on hold', base = '12.50', counts = 2, curr = 'EUR', track = 'TRK1'})\n"
		"lead.edit(102, {accept = 1, goal = 'sale', cash = {wm = 3, pay = 3.5, ref = 0.25, cc = 'EUR'}})\n"
		"lead.edit(103, {hold = 3, comment = 42})");
	struct rule_result res;
	const struct lead *l;

	ASSERT(rt);
	ASSERT_EQ(t_process(rt, "{}", &res, err, sizeof(err)), 0);
	ASSERT_EQ(res.refused, 0);
	ASSERT_EQ(res.changed, 3);
	l = t_after(&res, 101);
	ASSERT(l);
	ASSERT_EQ(l->status, LS_HOLD);
	ASSERT_EQ(l->hold_until, T_NOW + 7 * 86400);
	ASSERT_STREQ(l->comment, "on hold");
	ASSERT_EQ(l->base, 1250);
	ASSERT_EQ(l->counts, 2);
	ASSERT_EQ(l->curr, 2);
	ASSERT_STREQ(l->track, "TRK1");
	l = t_after(&res, 102);
	ASSERT(l);
	ASSERT_EQ(l->status, LS_PACKING);
	ASSERT_EQ(l->goal, 6);
	ASSERT_EQ(l->pay, 350);
	ASSERT_EQ(l->cash_curr, 2);
	ASSERT_EQ(l->wm, 300);
	ASSERT_EQ(l->ref, 25);
	ASSERT_EQ(l->approved_at, T_NOW);
	l = t_after(&res, 103);
	ASSERT(l);
	ASSERT_EQ(l->hold_until, T_NOW + 3 * 86400);
	ASSERT_STREQ(l->comment, "42");
	/* the originals are untouched */
	ASSERT_EQ(t_leads[0].status, 2);
	ASSERT_EQ(t_leads[0].comment[0], '\0');
	rule_result_release(&res);
	rule_free(rt);
}

TEST(rule_setstc_setstatus_approve)
{
	char err[512];
	struct rule_rt *rt = t_rule(
		"lead.setstc(101, ' Approved ') lead.setstatus(102, 'trash')\n"
		"lead.approve(103, 'deposit 100') lead.setstatus(101, 'paid')");
	struct rule_result res;
	const struct lead *l;

	ASSERT(rt);
	ASSERT_EQ(t_process(rt, "{}", &res, err, sizeof(err)), 0);
	ASSERT_EQ(res.refused, 0);
	ASSERT_EQ(res.unrecognised, 0);
	ASSERT_EQ(res.edits, 4);
	l = t_after(&res, 101);
	ASSERT_EQ(l->status, LS_PAID);
	ASSERT_STREQ(l->comment, " Approved ");
	ASSERT_EQ(l->wm, 500);
	ASSERT_EQ(l->pay, 800);
	ASSERT_EQ(res.changes[0].edits, 2);
	l = t_after(&res, 102);
	ASSERT_EQ(l->status, LS_CANCEL);
	ASSERT_EQ(l->reason, REASON_TRASH_TEST);
	ASSERT_EQ(l->comment[0], '\0');
	l = t_after(&res, 103);
	ASSERT_EQ(l->status, LS_PACKING);
	ASSERT_STREQ(l->comment, "deposit 100");
	rule_result_release(&res);
	rule_free(rt);
}

TEST(rule_unrecognised_status_text)
{
	char err[512];
	struct rule_rt *rt = t_rule("log(lead.setstatus(101, 'on the moon'))\n"
				    "log(lead.setstc(102, 'gone fishing')) lead.setstc(103, nil)");
	struct rule_result res;
	const struct lead *l;

	ASSERT(rt);
	ASSERT_EQ(t_process(rt, "{}", &res, err, sizeof(err)), 0);
	ASSERT_EQ(res.unrecognised, 3);
	ASSERT_EQ(res.nchanges, 1);
	ASSERT(!t_after(&res, 101));
	l = t_after(&res, 102);
	ASSERT(l);
	ASSERT_EQ(l->status, LS_CALLBACK);
	ASSERT_STREQ(l->comment, "gone fishing");
	ASSERT_CONTAINS(res.notes.p, T_NAME ":2: lead 101: unrecognised status 'on the moon'");
	ASSERT_CONTAINS(res.log.p, "nil\tlead 101: unrecognised status 'on the moon'");
	ASSERT_CONTAINS(res.log.p, "nil\tlead 102: unrecognised status 'gone fishing'");
	rule_result_release(&res);
	rule_free(rt);
}

/* LeadVertex-style numbers: the rule's 1 and 2 are not our 1 and 2. */
TEST(rule_status_map_beats_builtins)
{
	char err[512];
	struct rule_rt *rt = t_load(
		"return { statuses = { [1] = 'accept', ['2'] = {status = 5, reason = 7}, spam = 'paid' },\n"
		" processing = { url = 'https://x/', statuses = { [3] = 'callback' }, process = function(data)\n"
		" for _, d in ipairs(data) do lead.setstatus(e2i[d.id], d.status) end end } }",
		NULL, err, sizeof(err));
	struct rule_result res;

	ASSERT(rt);
	ASSERT_EQ(t_process(rt, "[{\"id\":\"A-1\",\"status\":1},{\"id\":\"A-2\",\"status\":\"2\"},"
				"{\"id\":777,\"status\":\"SPAM\"}]",
			    &res, err, sizeof(err)),
		  0);
	ASSERT_EQ(res.refused, 0);
	ASSERT_EQ(t_after(&res, 101)->status, LS_PACKING);
	ASSERT_EQ(t_after(&res, 102)->status, LS_CANCEL);
	ASSERT_EQ(t_after(&res, 102)->reason, REASON_DUPLICATE);
	ASSERT_EQ(t_after(&res, 103)->status, LS_PAID);
	rule_result_release(&res);
	rule_free(rt);
}

TEST(rule_globals_of_process)
{
	char *log = t_log("log(#idl, idl[1], idsl, idel, ide[102], ids[102], i2t[103], inid)\n"
			  "log(e2i['A-2'], e2i['777'], e2i[777], offer.id, offer.params.key, variant, page, http_status)\n"
			  "log(currency.id('eur'), currency.id('XXX'), goal.bycode('sale'), goal.bycode(offer, 'lead'), goal.bycode(99, 'lead'))\n"
			  "local n, s = 0, {} for k, v in pairs(e2i) do n = n + 1 if v == 102 then s[1] = k .. '=' .. v end end\n"
			  "for k, v in pairs(ids) do if k == 102 then s[2] = 'ids ' .. k .. '=' .. v end end for k, v in pairs(ide) do if k == 103 then s[3] = 'ide ' .. k .. '=' .. v end end\n"
			  "log(n, #e2i, table.concat(s, ' '), pcall(function() e2i.x = 1 end))");

	ASSERT(log);
	ASSERT_CONTAINS(log, T_NAME ":2: 3\t101\t101,102,103\tA-1,A-2,777\tA-2\t3\t1794740800\tnil\n");
	ASSERT_CONTAINS(log, T_NAME ":3: 102\t103\t103\t10\ts3cret\tprocessing\t1\t200\n");
	ASSERT_CONTAINS(log, T_NAME ":4: 2\tnil\t6\t5\tnil\n");
	ASSERT_CONTAINS(log, T_NAME ":7: 3\t0\tA-2=102 ids 102=3 ide 103=777\tfalse\t" T_NAME ":7: 'e2i' is read-only\n");
	free(log);
}

TEST(rule_lead_functions_only_in_process)
{
	char err[512];
	struct rule_rt *rt = t_load("return { processing = { url = 'https://x/', prepare = function(r)\n"
				    " lead.edit(101, {status = 5}) end, process = print } }",
				    NULL, err, sizeof(err));
	struct rule_batch b;
	struct rule_request q;

	ASSERT(rt);
	t_batch(&b, 3);
	ASSERT_EQ(rule_prepare(rt, RULE_PROCESSING, &b, NULL, &q, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, T_NAME ":2: lead.edit is only available in process");
	rule_free(rt);
}

/* Only the date-range check may cancel an approved lead (lead_apply's
 * SOURCE_DATES); the dates variant also sees its dates and inid. */
TEST(rule_dates_variant_is_the_dates_source)
{
	char err[512];
	struct rule_rt *rt = t_load(
		"return { process = function(data) log(variant, from, tom, utom, inid) lead.setstatus(inid, 'cancel') end,\n"
		" processing = { url = 'https://x/' }, dates = { url = 'https://x/?from={from}&to={to}' } }",
		NULL, err, sizeof(err));
	struct rule_batch b;
	struct rule_result res;
	struct macro_dates d;
	const struct macro_civil from = { 2026, 11, 1 }, to = { 2026, 11, 3 };

	ASSERT(rt);
	ASSERT_EQ(macro_dates_compute("UTC", from, to, &d, err, sizeof(err)), 0);
	t_batch(&b, 1);
	t_leads[0].status = LS_PACKING;
	t_leads[0].approved_at = T_NOW - 100;
	rule_result_init(&res);
	ASSERT_EQ(rule_process(rt, RULE_PROCESSING, &b, NULL, "{}", 2, 200, NULL, &res, err, sizeof(err)), 0);
	ASSERT_EQ(res.refused, 1);
	ASSERT_CONTAINS(res.notes.p, "lead 101 is approved");
	ASSERT_CONTAINS(res.log.p, ":1: processing\tnil\tnil\tnil\t101\n");
	rule_result_release(&res);
	b.dates = &d;
	rule_result_init(&res);
	ASSERT_EQ(rule_process(rt, RULE_DATES, &b, NULL, "{}", 2, 200, NULL, &res, err, sizeof(err)), 0);
	ASSERT_EQ(res.refused, 0);
	ASSERT_EQ(t_after(&res, 101)->status, LS_CANCEL);
	ASSERT_CONTAINS(res.log.p, ":1: dates\t2026-11-01\t2026-11-04\t1793750400\t101\n");
	rule_result_release(&res);
	rule_free(rt);
}

/* ---- the seed's three PHP snippets, ported ---------------------------- */

static struct rule_rt *t_file(const char *path)
{
	char err[512];
	struct rule_rt *rt = NULL;

	if (rule_load(path, NULL, &rt, err, sizeof(err)) < 0)
		test__fail(__FILE__, __LINE__, "load %s: %s", path, err);
	return rt;
}

TEST(rule_seed_switch)
{
	char err[512];
	struct rule_rt *rt = t_file("tests/rules/sandbox/seed_switch.lua");
	struct rule_result res;
	const struct lead *l;

	ASSERT(rt);
	ASSERT_EQ(t_process(rt, "[{\"id\":\"A-1\",\"status\":\"accept\"},{\"id\":\"A-2\",\"status\":\"cancel\"},"
				"{\"id\":777,\"status\":\"trash\"},{\"id\":\"Z-9\",\"status\":\"accept\"},"
				"{\"id\":\"A-1\",\"status\":\"unknown\"}]",
			    &res, err, sizeof(err)),
		  0);
	ASSERT_EQ(res.nchanges, 3);
	ASSERT_EQ(res.unknown, 1);
	ASSERT_EQ(res.refused, 0);
	l = t_after(&res, 101);
	ASSERT_EQ(l->status, LS_PACKING);
	ASSERT_EQ(l->wm, 500);
	ASSERT_EQ(l->approved_at, T_NOW);
	l = t_after(&res, 102);
	ASSERT_EQ(l->status, LS_CANCEL);
	ASSERT_EQ(l->reason, 2); /* the offer's default */
	l = t_after(&res, 103);
	ASSERT_EQ(l->status, LS_CANCEL);
	ASSERT_EQ(l->reason, REASON_TRASH_TEST);
	rule_result_release(&res);
	rule_free(rt);
}

TEST(rule_seed_setstc)
{
	char err[512];
	struct rule_rt *rt = t_file("tests/rules/sandbox/seed_setstc.lua");
	struct rule_result res;
	const struct lead *l;

	ASSERT(rt);
	ASSERT_EQ(t_process(rt, "[{\"id\":\"A-1\",\"status\":\"Confirmed\"},{\"id\":\"A-2\",\"status\":\"no answer\"},"
				"{\"id\":\"777\",\"status\":\"duplicate\"},{\"id\":\"X\",\"status\":\"sold\"}]",
			    &res, err, sizeof(err)),
		  0);
	ASSERT_EQ(res.unknown, 1);
	l = t_after(&res, 101);
	ASSERT_EQ(l->status, LS_PACKING);
	ASSERT_STREQ(l->comment, "Confirmed");
	l = t_after(&res, 102);
	ASSERT_EQ(l->status, LS_CALLBACK);
	ASSERT_STREQ(l->comment, "no answer");
	l = t_after(&res, 103);
	ASSERT_EQ(l->status, LS_CANCEL);
	ASSERT_EQ(l->reason, REASON_DUPLICATE);
	ASSERT_STREQ(l->comment, "duplicate");
	rule_result_release(&res);
	rule_free(rt);
}

TEST(rule_seed_ftd)
{
	char err[512];
	struct rule_rt *rt = t_file("tests/rules/sandbox/seed_ftd.lua");
	struct rule_result res;
	const struct lead *l;

	ASSERT(rt);
	ASSERT_EQ(t_process(rt, "[{\"id\":\"A-1\",\"status\":\"deposit\",\"ftd\":1},"
				"{\"id\":\"A-2\",\"status\":\"declined\",\"ftd\":0},"
				"{\"id\":\"B-7\",\"status\":\"new\",\"ftd\":1}]",
			    &res, err, sizeof(err)),
		  0);
	ASSERT_EQ(res.nchanges, 2);
	ASSERT_EQ(res.unknown, 0); /* the rule skips ids that are not ours itself */
	l = t_after(&res, 101);
	ASSERT_EQ(l->status, LS_PACKING);
	ASSERT_STREQ(l->comment, "deposit");
	l = t_after(&res, 102);
	ASSERT_EQ(l->status, LS_CANCEL);
	ASSERT_EQ(l->reason, 2);
	ASSERT_STREQ(l->comment, "declined");
	rule_result_release(&res);
	rule_free(rt);
}

TEST(rule_bad_answer_fails_the_call)
{
	char err[512];
	struct rule_rt *rt = t_file("tests/rules/sandbox/seed_setstc.lua");
	struct rule_result res;

	ASSERT(rt);
	ASSERT_EQ(t_process(rt, "[{\"id\":", &res, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "answer (json, HTTP 200): json: ");
	rule_result_release(&res);
	ASSERT_EQ(t_process(rt, "", &res, err, sizeof(err)), 0); /* empty: an empty table */
	ASSERT_EQ(res.nchanges, 0);
	rule_result_release(&res);
	rule_free(rt);
}

/* ---- helpers ---------------------------------------------------------- */

TEST(rule_json_encode)
{
	char *log = t_log(
		"log(json.encode({a = 1, b = {1, 2, 3}, c = 'x\"y\\n', d = json.null, e = true, f = 1.5, g = 0.1}))\n"
		"log(json.encode({}), json.encode(json.object()), json.encode(json.array({})), json.encode({[1] = 'a', [3] = 'c'}))\n"
		"log(json.encode('é'), json.encode(2^53), json.encode({x = {y = {}}}), pcall(json.encode, {f = print}))\n"
		"local t = {} t.self = t log(pcall(json.encode, t))\n"
		"log(json.decode('{\"a\":[1,2,{\"b\":null}]}').a[3].b == json.null, json.decode('nope'))\n"
		"local d = json.decode('{\"a\":null,\"b\":[null,2],\"c\":0}') log(d.a, (d.a or {}).x, #d.b, d.b[1] == json.null)\n"
		"log(json.isnull(d.a), json.isnull(d.b[1]), json.isnull(d.c), json.isnull(false), json.isnull(), json.isnull(''))");

	ASSERT(log);
	ASSERT_CONTAINS(log, ":2: {\"a\":1,\"b\":[1,2,3],\"c\":\"x\\\"y\\n\",\"d\":null,\"e\":true,\"f\":1.5,\"g\":0.1}\n");
	ASSERT_CONTAINS(log, ":3: []\t{}\t[]\t{\"1\":\"a\",\"3\":\"c\"}\n");
	ASSERT_CONTAINS(log, ":4: \"é\"\t9007199254740992\t{\"x\":{\"y\":[]}}\tfalse\t");
	ASSERT_CONTAINS(log, "cannot encode a function value");
	ASSERT_CONTAINS(log, ":5: false\t");
	ASSERT_CONTAINS(log, "nested deeper than 64");
	/* a null member is absent (nil), a null element keeps its place */
	ASSERT_CONTAINS(log, ":6: false\tnil\tjson: ");
	ASSERT_CONTAINS(log, ":7: nil\tnil\t2\ttrue\n");
	ASSERT_CONTAINS(log, ":8: true\ttrue\tfalse\tfalse\ttrue\tfalse\n");
	free(log);
}

TEST(rule_form_encode_like_http_build_query)
{
	char *log = t_log(
		"log(form.encode({filter = {ids = {1, 2}}, key = 'a b&c', page = 2}))\n"
		"log(form.encode({items = {{id = 1}, {id = 2}}, flag = true, off = false, none = json.null}))\n"
		"log(form.encode({'x', 'y'}), form.encode({}), form.encode({a = {b = {c = 'd'}}}), form.escape('ü/?'), form.encode({['a[b]'] = 1, ['k=&'] = 2}))\n"
		"local t = form.decode('filter[ids][]=1&filter[ids][]=2&q=a+b') log(t.filter.ids[2], t.q)");

	ASSERT(log);
	ASSERT_CONTAINS(log, ":2: filter[ids][]=1&filter[ids][]=2&key=a%20b%26c&page=2\n");
	ASSERT_CONTAINS(log, ":3: flag=1&items[0][id]=1&items[1][id]=2&off=0\n");
	ASSERT_CONTAINS(log, ":4: 0=x&1=y\t\ta[b][c]=d\t%C3%BC%2F%3F\ta[b]=1&k%3D%26=2\n");
	ASSERT_CONTAINS(log, ":5: 2\ta b\n");
	free(log);
}

TEST(rule_hashes_match_known_vectors)
{
	char *log = t_log(
		"log(hash.md5(''), hash.md5('abc'), hash.md5('The quick brown fox jumps over the lazy dog'))\n"
		"log(hash.sha1(''), hash.sha1('abc'), hash.sha1(string.rep('a', 1000000)))\n"
		"log(hash.sha256(''), hash.sha256('abc'), hash.sha256('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'))\n"
		"log(hash.sha256(string.rep('a', 1000000)), hash.md5(string.rep('a', 1000000)))\n"
		"log(hash.hmac_sha256('Jefe', 'what do ya want for nothing?'), hash.hmac_md5('Jefe', 'what do ya want for nothing?'), hash.hmac_sha1('Jefe', 'what do ya want for nothing?'))\n"
		"log(hash.hmac_sha256(string.rep('\\xaa', 131), 'Test Using Larger Than Block-Size Key - Hash Key First'))\n"
		"log(base64.encode(hash.hmac_sha256('secret', 'GET\\n/api/orders?ids=101,102', true)), #hash.sha1('x', true))");

	ASSERT(log);
	ASSERT_CONTAINS(log, ":2: d41d8cd98f00b204e9800998ecf8427e\t900150983cd24fb0d6963f7d28e17f72\t9e107d9d372bb6826bd81d3542a419d6\n");
	ASSERT_CONTAINS(log, ":3: da39a3ee5e6b4b0d3255bfef95601890afd80709\ta9993e364706816aba3e25717850c26c9cd0d89d\t34aa973cd4c4daa4f61eeb2bdbad27316534016f\n");
	ASSERT_CONTAINS(log, ":4: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\t"
			     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\t"
			     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1\n");
	ASSERT_CONTAINS(log, ":5: cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0\t7707d6ae4e027c70eea2a935c2296f21\n");
	ASSERT_CONTAINS(log, ":6: 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843\t"
			     "750c783e6ab0b503eaa86e310a5db738\teffcdf6ae5eb2fa2d27416d5f184df9c259a7c79\n");
	ASSERT_CONTAINS(log, ":7: 60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54\n");
	ASSERT_CONTAINS(log, ":8: JiJgKtbuU8KSZzQed6Moy6/jBMFhqmvJ9SRgPrBF1es=\t20\n");
	free(log);
}

TEST(rule_base64_round_trip)
{
	char *log = t_log(
		"local v = {'', 'f', 'fo', 'foo', 'foob', 'fooba', 'foobar'} local out = {}\n"
		"for i, s in ipairs(v) do out[i] = base64.encode(s) assert(base64.decode(out[i]) == s) end log(table.concat(out, ','))\n"
		"local bin = '' for i = 0, 255 do bin = bin .. string.char(i) end\n"
		"log(base64.decode(base64.encode(bin)) == bin, base64.decode(base64.encode(bin, true)) == bin, base64.encode('\\xfb\\xff', true))\n"
		"log(select('#', base64.decode('Zm9v!')), base64.decode('Zg'), base64.decode('Zh=='))");

	ASSERT(log);
	ASSERT_CONTAINS(log, ":3: ,Zg==,Zm8=,Zm9v,Zm9vYg==,Zm9vYmE=,Zm9vYmFy\n");
	ASSERT_CONTAINS(log, ":5: true\ttrue\t-_8\n");
	ASSERT_CONTAINS(log, ":6: 2\tf\tnil\tinvalid base64\n");
	free(log);
}

/* libcrypto's EVP_DecodeBlock skips blanks at either end and reads '='
 * anywhere as zero; base64.decode keeps its own rules over it, across the
 * chunks it decodes in. */
TEST(rule_base64_decode_keeps_its_rules_over_libcrypto)
{
	char *log = t_log(
		"local function bad(s) local v, why = base64.decode(s) return v == nil and why == 'invalid base64' end\n"
		"log(bad(' Zm9v'), bad('Zm9v '), bad('Zm9v\\n'), bad('Zm=v'), bad('Z==='), bad('Zm9v\\0'), bad('Zm9v='), bad('Zg='))\n"
		"local s = string.rep('\\xfb\\xff\\x01', 1000) local e, u = base64.encode(s), base64.encode(s, true)\n"
		"log(#e, #u, base64.decode(e) == s, base64.decode(u) == s, hash.sha1(e), base64.decode('-_8') == base64.decode('+/8='))\n"
		"log(bad(e:sub(1, 2000) .. '*' .. e:sub(2002)), bad(e:sub(1, 1026) .. '=' .. e:sub(1028)), #base64.decode(e:sub(1, 1028) .. 'AA'))\n"
		"log(hash.hmac_sha256('', ''), hash.hmac_md5('', 'abc'))");

	ASSERT(log);
	ASSERT_CONTAINS(log, ":3: true\ttrue\ttrue\ttrue\ttrue\ttrue\ttrue\ttrue\n");
	ASSERT_CONTAINS(log, ":5: 4000\t4000\ttrue\ttrue\t4f3144d5a0421c46b603297f9a5d23444fef056d\ttrue\n");
	ASSERT_CONTAINS(log, ":6: true\ttrue\t772\n");
	ASSERT_CONTAINS(log, ":7: b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad\t"
			     "dd2701993d29fdd0b032c233cec63403\n");
	free(log);
}

TEST(rule_patterns_behave_like_lua)
{
	/* all(...) keeps every value of a call that is not the last argument */
	char *log = t_log(
		"local function all(...) local t = table.pack(...) for i = 1, t.n do t[i] = tostring(t[i]) end return table.concat(t, ' ') end\n"
		"log(all(('hello world'):find('o w')), all(('hello'):find('l+')), all(('key=val'):match('(%w+)=(%w+)')))\n"
		"log(all(('a,b,,c'):gsub(',', ';')), all(('abc'):gsub('%w', '%0%0')), all(('hello world'):gsub('o', {o = '0'})))\n"
		"local t = {} for k, v in ('a=1, b=2'):gmatch('(%w+)=(%w+)') do t[#t + 1] = k .. v end log(table.concat(t, ' '))\n"
		"log(all(('THE (quick) fox'):find('%((%a+)%)')), ('  trim  '):match('^%s*(.-)%s*$'), ('x'):match('()'))\n"
		"log(('f(a(b)c)d'):match('%b()'), all(('THE END'):find('%f[%a]%a+', 2)), all(('abab'):gsub('(a)(b)', '%2%1')))\n"
		"log(all(('2026-11-20'):match('^(%d+)-(%d+)-(%d+)$')), all(('a.b'):find('.', 1, true)), ('x'):rep(3, ','))\n"
		"log(all(pcall(string.match, 'x', '(%')), all(pcall(string.gsub, 'x', 'x', '%2')))\n"
		"log(all(('hello'):find('l', -2)), all(('hello'):find('xyz', 10)), all(('aaa'):gsub('a*', '-')), all(('abc'):gsub('', '.')))");

	ASSERT(log);
	ASSERT_CONTAINS(log, ":3: 5 7\t3 4\tkey val\n");
	ASSERT_CONTAINS(log, ":4: a;b;;c 3\taabbcc 3\thell0 w0rld 2\n");
	ASSERT_CONTAINS(log, ":5: a1 b2\n");
	ASSERT_CONTAINS(log, ":6: 5 11 quick\ttrim\t1\n");
	ASSERT_CONTAINS(log, ":7: (a(b)c)\t5 7\tbaba 2\n");
	ASSERT_CONTAINS(log, ":8: 2026 11 20\t2 2\tx,x,x\n");
	ASSERT_CONTAINS(log, ":9: false ");
	ASSERT_CONTAINS(log, "malformed pattern (ends with '%')");
	ASSERT_CONTAINS(log, "false invalid capture index %2");
	ASSERT_CONTAINS(log, ":10: 4 4\tnil\t- 1\t.a.b.c. 4\n");
	free(log);
}

/* ---- requests and paging ---------------------------------------------- */

TEST(rule_prepare_expands_the_declaration)
{
	char err[512];
	struct rule_rt *rt = t_load(
		"return { processing = { url = 'https://{host}/api?ids={idsl}&key={key}',\n"
		" method = 'post', fields = { ids = '{ids}', ext = '{ide}', note = 'for {host}', n = 5, f = { k = '{key}' } },\n"
		" headers = { ['X-API-KEY'] = '{key}' }, process = print } }",
		NULL, err, sizeof(err));
	struct rule_batch b;
	struct rule_request q;

	ASSERT(rt);
	t_batch(&b, 2);
	ASSERT_EQ(rule_prepare(rt, RULE_PROCESSING, &b, NULL, &q, err, sizeof(err)), 0);
	ASSERT_STREQ(q.method, "POST");
	ASSERT_STREQ(q.url, "https://crm.example/api?ids=101,102&key=s3cret");
	ASSERT_STREQ(q.body, "ext[]=A-1&ext[]=A-2&f[k]=s3cret&ids[]=101&ids[]=102&n=5&note=for%20crm.example");
	ASSERT_EQ(q.body_len, strlen(q.body));
	ASSERT_EQ(q.nheaders, 2);
	ASSERT_STREQ(q.headers[0].name, "X-API-KEY");
	ASSERT_STREQ(q.headers[0].value, "s3cret");
	ASSERT_STREQ(q.headers[1].name, "Content-Type");
	ASSERT_STREQ(q.headers[1].value, "application/x-www-form-urlencoded");
	ASSERT_EQ(q.format, DECODE_JSON);
	ASSERT_EQ(q.page, 1);
	rule_request_release(&q);
	rule_free(rt);
}

TEST(rule_prepare_get_fields_go_in_the_query)
{
	char err[512];
	struct rule_rt *rt = t_load(
		"return { accepted = { url = 'https://x.example/orders?key={key}', fields = { ['filter[ids]'] = '{ids}' },\n"
		" format = 'xml', process = print } }",
		NULL, err, sizeof(err));
	struct rule_batch b;
	struct rule_request q;

	ASSERT(rt);
	t_batch(&b, 2);
	ASSERT_EQ(rule_prepare(rt, RULE_ACCEPTED, &b, NULL, &q, err, sizeof(err)), 0);
	ASSERT_STREQ(q.method, "GET");
	ASSERT_STREQ(q.url, "https://x.example/orders?key=s3cret&filter[ids][]=101&filter[ids][]=102");
	ASSERT(!q.body);
	ASSERT_EQ(q.nheaders, 0);
	ASSERT_EQ(q.format, DECODE_XML);
	rule_request_release(&q);
	rule_free(rt);
}

/* A signing CRM: prepare builds a JSON body and an HMAC header. */
TEST(rule_prepare_rewrites_and_signs)
{
	char err[512];
	struct rule_rt *rt = t_load(
		"return { dates = { url = 'https://{host}/v2/orders', days = 3, process = print,\n"
		" prepare = function(r)\n"
		"  r.method = 'POST'\n"
		"  r.body = json.encode({ from = from, to = to, since = ufrom, ids = idl })\n"
		"  r.headers['X-Sign'] = hash.hmac_sha256(offer.params.key, r.body)\n"
		"  r.headers['Content-Type'] = 'application/json'\n"
		"  r.query = { page = 1 }\n"
		" end } }",
		NULL, err, sizeof(err));
	struct rule_batch b;
	struct rule_request q;
	struct macro_dates d;
	const struct macro_civil from = { 2026, 11, 1 }, to = { 2026, 11, 3 };
	size_t i;
	int found = 0;

	ASSERT(rt);
	ASSERT_EQ(macro_dates_compute("UTC", from, to, &d, err, sizeof(err)), 0);
	t_batch(&b, 1);
	b.dates = &d;
	ASSERT_EQ(rule_prepare(rt, RULE_DATES, &b, NULL, &q, err, sizeof(err)), 0);
	ASSERT_STREQ(q.method, "POST");
	ASSERT_STREQ(q.url, "https://crm.example/v2/orders?page=1");
	ASSERT_STREQ(q.body, "{\"from\":\"2026-11-01\",\"ids\":[101],\"since\":1793491200,\"to\":\"2026-11-03\"}");
	for (i = 0; i < q.nheaders; i++)
		if (!strcmp(q.headers[i].name, "X-Sign") && strlen(q.headers[i].value) == 64)
			found++;
	ASSERT_EQ(found, 1);
	rule_request_release(&q);
	/* the dates variant without dates is refused before running */
	b.dates = NULL;
	ASSERT_EQ(rule_prepare(rt, RULE_DATES, &b, NULL, &q, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "needs the batch's dates");
	rule_free(rt);
}

TEST(rule_prepare_refuses_bad_requests)
{
	char err[512];
	struct rule_batch b;
	struct rule_request q;
	static const struct {
		const char *prepare, *want;
	} cases[] = {
		{ "r.url = 'file:///etc/passwd'", "is not http:// or https://" },
		{ "r.headers['X-A'] = 'a\\r\\nHost: evil'", "holds a line break" },
		{ "r.headers['Bad Name'] = 'x'", "is not a token" },
		{ "r.method = 'TRACE'", "method 'TRACE'" },
		{ "r.url = 'https://x/a b'", "space or a control character" },
		{ "return {}", "url must be a string" },
	};
	size_t i;

	t_batch(&b, 3);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char src[512];
		struct rule_rt *rt;

		snprintf(src, sizeof(src),
			 "return { processing = { url = 'https://x/', process = print, prepare = function(r)\n%s end } }",
			 cases[i].prepare);
		rt = t_load(src, NULL, err, sizeof(err));
		ASSERT(rt);
		ASSERT_EQ(rule_prepare(rt, RULE_PROCESSING, &b, NULL, &q, err, sizeof(err)), -1);
		ASSERT_CONTAINS(err, cases[i].want);
		ASSERT_CONTAINS(err, T_NAME);
		ASSERT(!q.url);
		rule_free(rt);
	}
	/* an unknown macro fails the request with the rule and the field */
	{
		struct rule_rt *rt = t_load("return { processing = { url = 'https://x/{idz}', process = print } }",
					    NULL, err, sizeof(err));

		ASSERT(rt);
		ASSERT_EQ(rule_prepare(rt, RULE_PROCESSING, &b, NULL, &q, err, sizeof(err)), -1);
		ASSERT_CONTAINS(err, T_NAME ": processing.url: unknown macro '{idz}'");
		rule_free(rt);
	}
}

TEST(rule_paging_next_and_cap)
{
	char err[512];
	const struct rule_limits lim = { .pages_max = 3 };
	struct rule_rt *rt = t_load(
		"return { processing = { url = 'https://x/api?ids={idsl}', headers = { Auth = 'k' }, process = function(data)\n"
		" for _, d in ipairs(data.orders) do lead.setstc(e2i[d.id], d.status) end\n"
		" if data.more then return { next = { query = { page = page + 1 } } } end end } }",
		&lim, err, sizeof(err));
	struct rule_batch b;
	struct rule_request q;
	struct rule_result res;
	const char *pages[] = {
		"{\"orders\":[{\"id\":\"A-1\",\"status\":\"hold\"}],\"more\":true}",
		"{\"orders\":[{\"id\":\"A-2\",\"status\":\"accept\"}],\"more\":true}",
		"{\"orders\":[{\"id\":\"A-1\",\"status\":\"accept\"}],\"more\":true}",
	};

	ASSERT(rt);
	t_batch(&b, 3);
	rule_result_init(&res);
	ASSERT_EQ(rule_prepare(rt, RULE_PROCESSING, &b, &res, &q, err, sizeof(err)), 0);
	ASSERT_EQ(rule_process(rt, RULE_PROCESSING, &b, &q, pages[0], strlen(pages[0]), 200, NULL, &res,
			       err, sizeof(err)),
		  0);
	rule_request_release(&q);
	ASSERT(res.has_next);
	ASSERT_STREQ(res.next.url, "https://x/api?ids=101,102,103&page=2");
	ASSERT_EQ(res.next.page, 2);
	ASSERT_EQ(res.next.nheaders, 1);
	ASSERT_STREQ(res.next.headers[0].value, "k");
	ASSERT_EQ(rule_process(rt, RULE_PROCESSING, &b, &res.next, pages[1], strlen(pages[1]), 200, NULL,
			       &res, err, sizeof(err)),
		  0);
	ASSERT(res.has_next);
	ASSERT_STREQ(res.next.url, "https://x/api?ids=101,102,103&page=3");
	ASSERT_EQ(res.next.page, 3);
	ASSERT_EQ(rule_process(rt, RULE_PROCESSING, &b, &res.next, pages[2], strlen(pages[2]), 200, NULL,
			       &res, err, sizeof(err)),
		  0);
	ASSERT(!res.has_next);
	ASSERT(res.capped);
	ASSERT_EQ(res.pages, 3);
	ASSERT_CONTAINS(res.notes.p, "page limit of 3 reached");
	/* edits chain across pages: hold, then accept */
	ASSERT_EQ(res.nchanges, 2);
	ASSERT_EQ(t_after(&res, 101)->status, LS_PACKING);
	ASSERT_EQ(t_after(&res, 101)->hold_until, 0);
	ASSERT_EQ(t_after(&res, 102)->status, LS_PACKING);
	rule_result_release(&res);
	rule_free(rt);
}

/* A next page inherits method, headers, encoding and the fields sent
 * (marks and integer ids kept), merges its own fields over them with
 * macros expanded (json.null drops one); a new url starts from no fields. */
TEST(rule_next_inherits_fields_and_expands_macros)
{
	char err[512];
	struct rule_rt *rt = t_load(
		"return { processing = { url = 'https://{host}/api', method = 'POST', encoding = 'json',\n"
		" headers = { ['X-Key'] = '{key}' },\n"
		" fields = { ids = '{ids}', limit = 2, filter = json.object(), drop = 'x' },\n"
		" process = function(data)\n"
		"  if page == 1 then return { next = { fields = { page = 2, drop = json.null } } } end\n"
		"  if page == 2 then return { next = { fields = { page = 3, who = '{idel}' }, headers = { ['X-Page'] = '{host}-3' } } } end\n"
		"  if page == 3 then return { next = { url = 'https://{host}/more?c={key}' } } end\n"
		"  if page == 4 then return { next = { url = 'https://x/{idz}' } } end\n"
		" end } }",
		NULL, err, sizeof(err));
	struct rule_batch b;
	struct rule_request q;
	struct rule_result res;
	const char *hv[2] = { NULL, NULL };
	size_t i;

	ASSERT(rt);
	t_batch(&b, 3);
	rule_result_init(&res);
	ASSERT_EQ(rule_prepare(rt, RULE_PROCESSING, &b, &res, &q, err, sizeof(err)), 0);
	ASSERT_STREQ(q.body, "{\"drop\":\"x\",\"filter\":{},\"ids\":[101,102,103],\"limit\":2}");
	ASSERT_EQ(rule_process(rt, RULE_PROCESSING, &b, &q, "{}", 2, 200, NULL, &res, err, sizeof(err)), 0);
	rule_request_release(&q);
	ASSERT(res.has_next);
	ASSERT_STREQ(res.next.method, "POST");
	ASSERT_STREQ(res.next.url, "https://crm.example/api");
	ASSERT_STREQ(res.next.body, "{\"filter\":{},\"ids\":[101,102,103],\"limit\":2,\"page\":2}");
	for (i = 0; i < res.next.nheaders; i++) {
		if (!strcmp(res.next.headers[i].name, "X-Key"))
			hv[0] = res.next.headers[i].value;
		if (!strcmp(res.next.headers[i].name, "Content-Type"))
			hv[1] = res.next.headers[i].value;
	}
	ASSERT_STREQ(hv[0], "s3cret");
	ASSERT_STREQ(hv[1], "application/json");
	ASSERT_EQ(rule_process(rt, RULE_PROCESSING, &b, &res.next, "{}", 2, 200, NULL, &res, err,
			       sizeof(err)),
		  0);
	ASSERT(res.has_next);
	ASSERT_STREQ(res.next.body,
		     "{\"filter\":{},\"ids\":[101,102,103],\"limit\":2,\"page\":3,\"who\":\"A-1,A-2,777\"}");
	hv[0] = NULL;
	for (i = 0; i < res.next.nheaders; i++)
		if (!strcmp(res.next.headers[i].name, "X-Page"))
			hv[0] = res.next.headers[i].value;
	ASSERT_STREQ(hv[0], "crm.example-3");
	ASSERT_EQ(rule_process(rt, RULE_PROCESSING, &b, &res.next, "{}", 2, 200, NULL, &res, err,
			       sizeof(err)),
		  0);
	ASSERT(res.has_next);
	/* a url of its own: macros expanded, no fields (a CRM's link is complete) */
	ASSERT_STREQ(res.next.url, "https://crm.example/more?c=s3cret");
	ASSERT_STREQ(res.next.method, "POST");
	ASSERT(!res.next.body);
	ASSERT_EQ(rule_process(rt, RULE_PROCESSING, &b, &res.next, "{}", 2, 200, NULL, &res, err,
			       sizeof(err)),
		  -1);
	ASSERT_CONTAINS(err, "unknown macro '{idz}'");
	ASSERT_CONTAINS(err, T_NAME);
	rule_result_release(&res);
	rule_free(rt);
}

TEST(rule_log_is_bounded)
{
	char err[512];
	const struct rule_limits lim = { .log_max = 200 };
	struct rule_rt *rt = t_load(T_HEAD "for i = 1, 100 do log('line', i) end\nprint(string.rep('x', 5000))" T_TAIL,
				    &lim, err, sizeof(err));
	struct rule_result res;

	ASSERT(rt);
	ASSERT_EQ(t_process(rt, "{}", &res, err, sizeof(err)), 0);
	/* nine lines of 22 bytes fit in 200; "line 10" and the rest do not */
	ASSERT_EQ(res.log.len, 9 * 22);
	ASSERT_CONTAINS(res.log.p, T_NAME ":2: line\t1\n");
	ASSERT_CONTAINS(res.log.p, T_NAME ":2: line\t9\n");
	ASSERT_EQ(res.log_dropped, 92);
	rule_result_release(&res);
	rule_free(rt);
}

/* Ten thousand leads in one call: every one edited, in batch order. The
 * per-lead cost is measured by `make bench-rule`, never asserted here. */
TEST(rule_ten_thousand_leads_in_one_call)
{
	enum { N = 10000 };
	char err[512];
	struct rule_rt *rt = t_file("tests/rules/sandbox/seed_setstc.lua");
	struct lead *leads = calloc(N, sizeof(*leads));
	struct rule_batch b;
	struct rule_result res;
	struct buf body;
	size_t i;

	ASSERT(rt && leads);
	buf_init(&body, 0);
	t_batch(&b, 0);
	ASSERT_EQ(buf_addc(&body, '['), 0);
	for (i = 0; i < N; i++) {
		leads[i].id = 1000000 + (int64_t)i;
		leads[i].offer = 10;
		leads[i].status = LS_PROCESSING;
		snprintf(leads[i].ext, sizeof(leads[i].ext), "E%zu", i);
		ASSERT_EQ(buf_addf(&body, "%s{\"id\":\"E%zu\",\"status\":\"%s\"}", i ? "," : "", i,
				   i % 3 == 0 ? "accepted" : i % 3 == 1 ? "cancelled" : "callback"),
			  0);
	}
	ASSERT_EQ(buf_addc(&body, ']'), 0);
	b.leads = leads;
	b.nleads = N;
	rule_result_init(&res);
	ASSERT_EQ(rule_process(rt, RULE_PROCESSING, &b, NULL, body.p, body.len, 200, NULL, &res, err,
			       sizeof(err)),
		  0);
	ASSERT_EQ(res.nchanges, N);
	ASSERT_EQ(res.changes[N - 1].after.status, LS_PACKING); /* 9999: "accepted" */
	ASSERT_EQ(res.changes[N - 2].after.status, LS_CALLBACK);
	rule_result_release(&res);
	buf_release(&body);
	free(leads);
	rule_free(rt);
}

TEST(rule_status_map_false_blocks_a_word)
{
	static const char text[] =
		"return { statuses = { [\"3\"] = false },\n"
		"  processing = { url = 'http://crm.example/x?ids={idel}',\n"
		"    process = function(data) for _, d in ipairs(data) do lead.setstatus(e2i[d.id], d.status) end end } }\n";
	static const char bad[] =
		"return { statuses = { won = { accept = true, status = 8 } },\n"
		"  processing = { url = 'http://crm.example/x', process = function() end } }\n";
	struct rule_rt *rt = NULL;
	struct lead l;
	struct rule_batch b;
	struct rule_result res;
	char err[512];
	const char answer[] = "[{\"id\":\"E1\",\"status\":3}]";
	int rc;

	ASSERT_EQ(rule_load_buffer("rules/bad.lua", bad, strlen(bad), NULL, &rt, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "accept approves into status 6");
	ASSERT_EQ(rule_load_buffer("rules/t.lua", text, strlen(text), NULL, &rt, err, sizeof(err)), 0);
	memset(&l, 0, sizeof(l));
	l.id = 7;
	l.offer = 1;
	l.status = 2;
	l.counts = 1;
	memcpy(l.ext, "E1", 3);
	memset(&b, 0, sizeof(b));
	b.offer = 1;
	b.leads = &l;
	b.nleads = 1;
	b.now = 1795000000;
	rule_result_init(&res);
	rc = rule_process(rt, RULE_PROCESSING, &b, NULL, answer, strlen(answer), 200, NULL, &res, err,
			  sizeof(err));
	rule_free(rt);
	if (rc != 0 || res.nchanges != 0 || res.unrecognised != 1)
		test__fail(__FILE__, __LINE__, "rc %d changes %zu unrecognised %zu: %s", rc,
			   res.nchanges, res.unrecognised, err);
	rule_result_release(&res);
}

/* The status of lead id after the poll; 0 when the rule did not change it. */
static int t_status_of(const struct rule_result *r, int64_t id)
{
	const struct lead *l = t_after(r, id);

	return l ? l->status : 0;
}

/* The offer's own words (batch.status_words) come first, then the rule's
 * map, then the built-ins; a word blocked by the offer reads as
 * unrecognised, one the offer maps beats the rule's blocker. */
TEST(rule_offer_words_beat_the_map_and_builtins)
{
	static const char src[] =
		"return { statuses = { won = 'cancel', ['7'] = false, lost = {status = 5, reason = 2} },\n"
		" processing = { url = 'https://x/', process = function(data)\n"
		" for _, d in ipairs(data) do log(lead.setstatus(e2i[d.id], d.status)) end end } }";
	static const char first[] = "[{\"id\":\"A-1\",\"status\":\"Won\"},"
				    "{\"id\":\"A-2\",\"status\":\"approved\"},"
				    "{\"id\":777,\"status\":7}]";
	static const char second[] = "[{\"id\":\"A-1\",\"status\":\"hold\"},"
				     "{\"id\":\"A-2\",\"status\":\"LOST\"},"
				     "{\"id\":777,\"status\":\"paid\"}]";
	struct status_words *w = NULL;
	struct rule_rt *rt = NULL;
	struct rule_result res;
	struct rule_batch b;
	char err[512];

	rule_result_init(&res);
	ASSERT_EQ(status_words_from_json("{\"won\": 10, \"Approved\": {\"status\": 5, \"reason\": 7},"
					 " \"7\": 3, \"HOLD\": false}",
					 &w, err, sizeof(err)),
		  0);
	rt = t_load(src, NULL, err, sizeof(err));
	if (!rt) {
		test__fail(__FILE__, __LINE__, "load: %s", err);
		goto out;
	}
	/* without the offer's words: the map, then the built-ins */
	t_batch(&b, 3);
	if (rule_process(rt, RULE_PROCESSING, &b, NULL, first, strlen(first), 200, NULL, &res, err,
			 sizeof(err)) < 0) {
		test__fail(__FILE__, __LINE__, "process: %s", err);
		goto out;
	}
	if (t_status_of(&res, 101) != LS_CANCEL || t_status_of(&res, 102) != LS_PACKING ||
	    t_status_of(&res, 103) || res.unrecognised != 1) {
		test__fail(__FILE__, __LINE__, "without offer words: %d %d %d, %zu unrecognised",
			   t_status_of(&res, 101), t_status_of(&res, 102), t_status_of(&res, 103),
			   res.unrecognised);
		goto out;
	}
	rule_result_release(&res);
	/* with them: the offer's meaning wins over the map and the built-ins,
	 * and over the map's blocker of 7 */
	rule_result_init(&res);
	t_batch(&b, 3);
	b.status_words = w;
	if (rule_process(rt, RULE_PROCESSING, &b, NULL, first, strlen(first), 200, NULL, &res, err,
			 sizeof(err)) < 0) {
		test__fail(__FILE__, __LINE__, "process: %s", err);
		goto out;
	}
	if (res.unrecognised || res.refused || res.nchanges != 3 ||
	    t_status_of(&res, 101) != LS_PAID || t_after(&res, 101)->wm != 500 ||
	    t_status_of(&res, 102) != LS_CANCEL ||
	    t_after(&res, 102)->reason != REASON_DUPLICATE ||
	    t_status_of(&res, 103) != LS_CALLBACK) {
		test__fail(__FILE__, __LINE__, "with offer words: %d %d %d, unrecognised %zu "
			   "refused %zu", t_status_of(&res, 101), t_status_of(&res, 102),
			   t_status_of(&res, 103), res.unrecognised, res.refused);
		goto out;
	}
	rule_result_release(&res);
	/* a word the offer blocks is unrecognised although the built-ins know
	 * it; words the offer lacks go on to the map and the built-ins */
	rule_result_init(&res);
	t_batch(&b, 3);
	b.status_words = w;
	if (rule_process(rt, RULE_PROCESSING, &b, NULL, second, strlen(second), 200, NULL, &res, err,
			 sizeof(err)) < 0) {
		test__fail(__FILE__, __LINE__, "process: %s", err);
		goto out;
	}
	if (res.unrecognised != 1 || t_after(&res, 101) || t_status_of(&res, 102) != LS_CANCEL ||
	    t_after(&res, 102)->reason != 2 || t_status_of(&res, 103) != LS_PAID) {
		test__fail(__FILE__, __LINE__, "blocked: %d %d %d, unrecognised %zu",
			   t_status_of(&res, 101), t_status_of(&res, 102), t_status_of(&res, 103),
			   res.unrecognised);
		goto out;
	}
	if (!res.notes.p || !strstr(res.notes.p, "lead 101: unrecognised status 'hold'"))
		test__fail(__FILE__, __LINE__, "notes: %s", res.notes.p ? res.notes.p : "(none)");
out:
	rule_result_release(&res);
	rule_free(rt);
	status_words_free(w);
}

/* `rule test` runs json_setstc.lua on a leads file; -1 with err when the
 * file is refused. */
static int t_ruletest_leads(const char *leads, char *err, size_t errlen)
{
	char path[] = "/tmp/leadsync-rt-XXXXXX";
	struct ruletest_opts o;
	struct buf out;
	FILE *f;
	int fd, rc;

	fd = mkstemp(path);
	if (fd < 0)
		return -2;
	f = fdopen(fd, "w");
	if (!f || fputs(leads, f) < 0) {
		if (f)
			fclose(f);
		unlink(path);
		return -2;
	}
	fclose(f);
	memset(&o, 0, sizeof(o));
	o.rule = "rules/json_setstc.lua";
	o.variant = RULE_PROCESSING;
	o.leads = path;
	o.now = T_NOW;
	o.http_status = 200;
	buf_init(&out, 1 << 16);
	rc = ruletest_run(&o, &out, err, errlen);
	unlink(path);
	buf_release(&out);
	return rc;
}

/* `leadsync rule test` reads the offer's words with the same parser as
 * the poller: words it cannot mean stop the run, naming the word. */
TEST(rule_test_refuses_bad_offer_words)
{
	static const char leads[] =
		"{\"offer\": {\"id\": 10, \"status_words\": {\"ok\": 10, \"Hold\": true}},\n"
		" \"leads\": [{\"id\": 1, \"ext\": \"A\", \"status\": 2,"
		" \"created\": \"2026-11-20T10:00:00Z\"}]}\n";
	char err[512] = "";

	ASSERT_EQ(t_ruletest_leads(leads, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, ": offer \"status_words\": word 'Hold': give a status 1..12, false");
}

/* `rule test` validates its leads as import validates a lead record, so
 * the messages are import's, with where the lead is in the file; numbers
 * past int64_t are refused, not converted. */
TEST(rule_test_validates_leads_as_import_does)
{
	static const struct {
		const char *leads;
		const char *err;
	} bad[] = {
		{ "[{\"id\": 1e300, \"ext\": \"A\", \"status\": 2}]",
		  ": lead 1: lead: 'id' must be a positive integer" },
		{ "[{\"id\": 1, \"ext\": \"A\", \"status\": 2}, {\"id\": 2, \"status\": 2, \"counts\": -1e30}]",
		  ": lead 2: lead 2: 'counts' must be an integer 0..1000000000" },
		{ "[{\"ext\": \"A\", \"status\": 2}]", ": lead 1: missing 'id'" },
		{ "[{\"id\": 1, \"ext\": \"A\", \"status\": 2, \"goal\": \"sale\"}]",
		  ": lead 1: no goal 'sale' in the file" },
		{ "[{\"id\": 1, \"ext\": \"A\", \"status\": 2, \"offer\": 5}]",
		  ": lead 1: offer 5 is not the file's offer 1" },
		{ "{\"offer\": {\"id\": 1e300}, \"leads\": [{\"id\": 1, \"status\": 2}]}",
		  ": offer \"id\" must be a positive whole number" },
		/* a windows-1251 comment: import refuses such a line, so does rule test */
		{ "[{\"id\": 1, \"ext\": \"A\", \"status\": 2, \"comment\": \"\xcf\xf0\xe8\"}]",
		  ": not UTF-8 text (or holds a NUL byte): save it as UTF-8" },
	};
	char err[512];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		ASSERT_EQ(t_ruletest_leads(bad[i].leads, err, sizeof(err)), -1);
		ASSERT_CONTAINS(err, bad[i].err);
	}
	/* good leads get as far as the rule (which wants params here) */
	ASSERT_EQ(t_ruletest_leads("{\"offer\": {\"id\": 10}, \"leads\": [{\"id\": 1, \"ext\": \"A\","
				   " \"status\": 2, \"created\": \"2026-11-20T10:00:00Z\"}]}",
				   err, sizeof(err)),
		  -1);
	ASSERT_CONTAINS(err, "unknown macro '{host}'");
}

/* lib_apply answers "unchanged" for a repeated status without lead_apply;
 * over a grid of lead states and status/reason/comment edits its verdict
 * must be lead_apply's own. */
TEST(rule_edit_unchanged_shortcut_agrees_with_lead_apply)
{
	static const char *const lcomm[] = { "processing", "" };
	static const char *const ecomm[] = { NULL, "processing", "", "ok" };
	static const int lreason[] = { 0, 2, 3 }, ereason[] = { 0, 2, 3 };
	struct rule_rt *rt = t_rule(
		"local d = data[1] lead.edit(101, {status = d.s > 0 and d.s or nil,\n"
		"  reason = d.r > 0 and d.r or nil, comment = d.hc == 1 and d.c or nil})");
	char body[256], err[512];
	int st, lr, hu, lc, es, er, ec, cases = 0, same = 0;

	ASSERT(rt);
	for (st = 1; st <= 12; st++)
	for (lr = 0; lr < 3; lr++)
	for (hu = 0; hu < 2; hu++)
	for (lc = 0; lc < 2; lc++)
	for (es = 0; es < 3; es++) /* none, the lead's status, another */
	for (er = 0; er < 3; er++)
	for (ec = 0; ec < 4; ec++) {
		struct rule_batch b;
		struct rule_result res;
		struct lead_edit e;
		struct lead out;
		enum lead_result want;
		int s = es == 0 ? 0 : es == 1 ? st : st % 12 + 1;

		if (!s && !ereason[er] && !ecomm[ec])
			continue; /* an empty edit table is refused before lead_apply */
		t_batch(&b, 1);
		t_leads[0].status = st;
		t_leads[0].reason = lreason[lr];
		t_leads[0].hold_until = hu ? T_NOW + 86400 : 0;
		snprintf(t_leads[0].comment, sizeof(t_leads[0].comment), "%s", lcomm[lc]);
		memset(&e, 0, sizeof(e));
		if (s) {
			e.set |= LF_STATUS;
			e.status = s;
		}
		if (ereason[er]) {
			e.set |= LF_REASON;
			e.reason = ereason[er];
		}
		if (ecomm[ec]) {
			e.set |= LF_COMMENT;
			e.comment = ecomm[ec];
		}
		want = lead_apply(&t_leads[0], &b.settings, &t_goals[0].goal, &e, SOURCE_POLL, T_NOW,
				  &out, err, sizeof(err));
		snprintf(body, sizeof(body), "[{\"s\":%d,\"r\":%d,\"hc\":%d,\"c\":\"%s\"}]", s,
			 ereason[er], ecomm[ec] ? 1 : 0, ecomm[ec] ? ecomm[ec] : "");
		rule_result_init(&res);
		if (rule_process(rt, RULE_PROCESSING, &b, NULL, body, strlen(body), 200, NULL, &res, err,
				 sizeof(err)) < 0) {
			rule_result_release(&res);
			rule_free(rt);
			ASSERT_STREQ(err, "");
		}
		if (res.changed != (want == LEAD_CHANGED) || res.unchanged != (want == LEAD_UNCHANGED) ||
		    res.refused != (want == LEAD_REFUSED)) {
			rule_result_release(&res);
			rule_free(rt);
			test__fail(__FILE__, __LINE__,
				   "lead %d/%d/%d/'%s', edit %s: lead_apply %d, rule changed %zu unchanged %zu refused %zu",
				   st, lreason[lr], hu, lcomm[lc], body, (int)want, res.changed,
				   res.unchanged, res.refused);
			return;
		}
		cases++;
		same += want == LEAD_UNCHANGED;
		rule_result_release(&res);
	}
	rule_free(rt);
	ASSERT_EQ(cases, 12 * 3 * 2 * 2 * (3 * 3 * 4 - 1));
	ASSERT(same > 100); /* the grid does reach the shortcut */
}
