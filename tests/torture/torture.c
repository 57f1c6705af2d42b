/* torture: allocation-failure runs (issue 13 item 2; curl's torture tests
 * are the model). Every operation below is run once to learn how many
 * allocations it makes (N), then again for every n = 1..N with the n-th
 * allocation failing (only that one: later ones succeed, as in curl). Each
 * run must end in one of two ways: an error with a message (rc -1, err
 * set), or success with exactly the baseline's result (the fingerprint
 * each operation prints of what it produced), i.e. the failure was
 * absorbed (a retry after Lua's emergency collection, a shrink that kept
 * its block). A crash, an abort (a Lua panic), a sanitizer report or a
 * result that differs is a failure; after each operation's sweep LSan
 * checks that no run leaked.
 *
 * Mechanism: this binary is linked from the same instrumented objects as
 * build/test/tests with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,
 * --wrap=strdup,--wrap=strndup, so every call our objects (src/ and
 * this file) make to those goes through __wrap_* here, which counts and
 * fails the n-th; ASan still intercepts the real ones (__real_* resolve to
 * them). Reached that way, beyond our own code:
 * - Lua: the rule runtime's lua_Alloc (rule.c) and the decoders' state's
 *   (tt_lua_alloc here) call realloc, so every Lua allocation counts;
 * - expat: decode.c creates its parsers with a memory suite of
 *   malloc/realloc/free (ours, so wrapped);
 * - cJSON: cJSON_InitHooks points it at __wrap_malloc.
 * Not covered: allocations inside libc (iconv_open's, snprintf's, locale
 * data), OpenSSL (the rule runtime's hashes), libuv, libcurl and libpq
 * (none of the operations here reach the last three).
 *
 * Two modes: "malloc" fails the n-th of every allocation above; "lua"
 * fails only the n-th growth of a Lua state's allocator (the runtime's
 * through its seam rule__alloc_fail, the decoders' state through
 * tt_lua_alloc), which Lua raises as "not enough memory" and the runtime
 * must turn into an error.
 *
 * Usage: torture [--sample] [NAME...]: every operation (or those whose
 * name contains a NAME), every n; --sample runs about 160 n per sweep (12
 * for import_run, whose runs go to the database): every n up to a quarter
 * of that, the rest spread evenly (`make test` runs that through
 * tests/test_torture.c; `make torture` runs everything, via
 * scripts/torture.sh for the database). Prints one line
 * per operation and mode, then "N passed, N failed"; exits 1 on any
 * failure. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <lauxlib.h>
#include <lua.h>
#include <sanitizer/lsan_interface.h>

#include "buf.h"
#include "decode.h"
#include "import.h"
#include "listener.h"
#include "macro.h"
#include "mask.h"
#include "postback.h"
#include "rule.h"
#include "rule_int.h"
#include "status.h"
#include "store.h"

/* ---- the counting allocator ------------------------------------------ */

enum tt_mode { TT_OFF, TT_MALLOC, TT_LUA };
static enum tt_mode tt_mode;
static long tt_n, tt_fail_at; /* fail_at 0: count only */
static bool tt_sticky;        /* every allocation from the n-th on fails */
static bool tt_failed;

static bool tt_fail(enum tt_mode m)
{
	if (tt_mode != m)
		return false;
	++tt_n;
	if (!tt_fail_at || tt_n < tt_fail_at || (tt_n > tt_fail_at && !tt_sticky))
		return false;
	tt_failed = true;
	return true;
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

void *__wrap_malloc(size_t n)
{
	if (tt_fail(TT_MALLOC)) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
	if (tt_fail(TT_MALLOC)) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
	if (n && tt_fail(TT_MALLOC)) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
	if (tt_fail(TT_MALLOC)) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
	if (tt_fail(TT_MALLOC)) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_strndup(s, n);
}

static bool tt_lua_fail(void)
{
	return tt_fail(TT_LUA);
}

/* The decoders' Lua state: a capped allocator like the runtime's. */
static void *tt_lua_alloc(void *ud, void *p, size_t osize, size_t nsize)
{
	size_t old = p ? osize : 0;

	(void)ud;
	if (nsize == 0) {
		free(p);
		return NULL;
	}
	if (nsize > old && tt_fail(TT_LUA))
		return NULL;
	return realloc(p, nsize);
}

/* ---- the operations ---------------------------------------------------- */

/* An operation (k: which case of it, from its tt_ops row): 0 with its
 * result's fingerprint in fp, or -1 with err; 1
 * when it succeeded but dropped (and counted) some of its best-effort
 * output: then only the fingerprint up to TT_BEST_EFFORT must match. */
#define TT_BEST_EFFORT "\n#"
typedef int (*tt_op_fn)(int k, char *fp, size_t fplen, char *err, size_t errlen);

static int op_macro(int k __attribute__((unused)), char *fp, size_t fplen, char *err, size_t errlen)
{
	static const struct macro_param params[] = { { "host", "crm.example" }, { "key", "s3 cr=t" } };
	static const char *const exts[] = { "A-1", "B 2", "Ж-3" };
	int64_t ids[] = { 101, 102, 103 };
	struct macro_ctx c;
	struct buf out;
	int rc;

	memset(&c, 0, sizeof(c));
	c.variant = "processing";
	c.ids = ids;
	c.exts = exts;
	c.n = 3;
	c.params = params;
	c.nparams = 2;
	buf_init(&out, 1 << 20);
	rc = macro_expand(&c, "https://{host}/api?key={key}&ids={idsl}&ext={idel}", MACRO_URL, &out,
			  err, errlen);
	if (rc == 0)
		rc = macro_expand(&c, "{\"ids\":[{idsl}],\"ext\":\"{ide}\",\"k\":\"{key}\"}", MACRO_RAW,
				  &out, err, errlen);
	if (rc == 0)
		snprintf(fp, fplen, "%.*s", (int)out.len, out.p);
	buf_release(&out);
	return rc < 0 ? -1 : 0;
}

static int op_status(int k __attribute__((unused)), char *fp, size_t fplen, char *err, size_t errlen)
{
	struct status_words *w = NULL;
	struct status_match m;
	bool a, b;

	if (status_words_from_json("{\"in_work\":2,\"fake\":{\"status\":5,\"reason\":6},"
				   "\"Выкуплен\":9,\"ok\":{\"accept\":true}}",
				   &w, err, errlen) < 0)
		return -1;
	a = status_recognise(w, " Fake ", 6, &m);
	b = status_postback(w, "approved", 8, &m);
	snprintf(fp, fplen, "%zu %d %d %d/%d/%d", status_words_count(w), a, b, m.status, m.reason,
		 m.accept);
	status_words_free(w);
	return 0;
}

struct tt_body {
	const char *s;
	size_t n;
	struct listener_form f;
	int parsed;
};

static const struct listener_form *tt_body_form(void *ud)
{
	struct tt_body *b = ud;

	if (!b->parsed)
		b->parsed = listener_form_parse(&b->f, b->s, b->n) == 0 ? 1 : -1;
	return b->parsed == 1 ? &b->f : NULL;
}

static int op_postback(int json, char *fp, size_t fplen, char *err, size_t errlen)
{
	static const char query[] = "click_id=0F8E5C2A-1B3D-4E5F-8A9B-0C1D2E3F4A5B&status=approved&x=1";
	static const char jbody[] = "{\"request_id\":\"r-1\",\"action\":\"sale\",\"price\":\"12.50\"}";
	static const char fbody[] = "request_id=r-1&action=sale&price=12.50&comment=%D0%96";
	struct tt_body b = { json ? jbody : fbody, json ? strlen(jbody) : strlen(fbody), { 0 }, 0 };
	struct postback_params pp;
	struct listener_form q;
	int k, rc = 0;

	if (listener_form_parse(&q, query, strlen(query)) < 0) {
		snprintf(err, errlen, "query: out of memory");
		return -1;
	}
	postback_params_parse(&pp, true, json ? "application/json" : "application/x-www-form-urlencoded",
			      b.s, b.n, tt_body_form, &b, &q);
	if (pp.status) {
		snprintf(err, errlen, "%d %s", pp.status, pp.err);
		rc = -1;
	} else {
		size_t at = 0;

		for (k = 0; k < POSTBACK_NPARAMS && at < fplen; k++)
			at += (size_t)snprintf(fp + at, fplen - at, "%s|", pp.v[k] ? pp.v[k] : "-");
		if (at < fplen)
			snprintf(fp + at, fplen - at, "%lld %d", (long long)pp.price, pp.cust);
	}
	postback_params_release(&pp);
	if (b.parsed == 1)
		listener_form_release(&b.f);
	listener_form_release(&q);
	return rc;
}

static int op_mask(int k __attribute__((unused)), char *fp, size_t fplen, char *err, size_t errlen)
{
	static const char url[] = "https://crm.example/api?token=abcdef123&key=s3cretkey&q=1";
	struct mask m;
	struct buf out;
	char *d = NULL;
	int rc = -1;

	mask_init(&m);
	buf_init(&out, 1 << 16);
	if (mask_add(&m, "s3cretkey") < 0 || mask_param(&m, "api_key", "p@ss word", false) < 0 ||
	    mask_text(&m, url, strlen(url), MASK_URL, &out) < 0 ||
	    mask_header(&m, "Authorization", "Bearer p@ss word", &out) < 0 ||
	    !(d = mask_dup(&m, "body p%40ss+word s3cretkey", 26, MASK_FORM))) {
		snprintf(err, errlen, "mask: out of memory");
		goto out;
	}
	snprintf(fp, fplen, "%.*s|%s", (int)out.len, out.p, d);
	rc = 0;
out:
	free(d);
	buf_release(&out);
	mask_release(&m);
	return rc;
}

static const struct {
	enum decode_format f;
	const char *ct, *body;
} tt_bodies[] = {
	{ DECODE_JSON, "application/json",
	  "{\"orders\":[{\"id\":\"A-1\",\"status\":\"in_work\",\"sum\":12.5},"
	  "{\"id\":\"A-2\",\"status\":\"\\u0416\",\"tags\":[1,2,null,true]}],\"page\":1}" },
	{ DECODE_JSON, "application/json; charset=windows-1251",
	  "{\"s\":\"\xc2\xfb\xea\xf3\xef\xeb\xe5\xed\",\"n\":[1,2]}" },
	{ DECODE_XML, "text/xml",
	  "<?xml version=\"1.0\" encoding=\"windows-1251\"?>"
	  "<r><order id=\"A-1\"><status>\xc2\xfb\xea\xf3\xef</status></order>"
	  "<order id=\"A-2\"><status>ok</status><![CDATA[x<y]]></order></r>" },
	{ DECODE_XML, NULL, "<r a=\"1\"><o id=\"A-1\">Ж &amp; x</o><o id=\"A-2\"/></r>" },
	{ DECODE_FORM, "application/x-www-form-urlencoded; charset=cp866",
	  "a=1&b[]=x&b[]=y&c[k]=%8F&d=%D0%96+2" },
	{ DECODE_TEXT, "text/plain; charset=koi8-r", "\xf7\xd9\xcb\xd5\xd0 ok" },
};

/* One body through decode_push on a fresh state; the fingerprint is the
 * value written out with every table's entries sorted (Lua seeds its
 * string hashes per state, so next's order differs between runs). */
static int tt_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *tt_text(lua_State *L, int depth)
{
	struct buf out;
	int t = lua_type(L, -1);

	buf_init(&out, 1 << 20);
	if (t == LUA_TTABLE && depth < 20) {
		char *e[64];
		size_t n = 0, i;

		lua_pushnil(L);
		while (lua_next(L, -2)) {
			char *k, *v;

			v = tt_text(L, depth + 1);
			lua_pop(L, 1);
			lua_pushvalue(L, -1);
			k = tt_text(L, depth + 1);
			lua_pop(L, 1);
			if (n < 64 && k && v && asprintf(&e[n], "%s=%s", k, v) > 0)
				n++;
			free(k);
			free(v);
		}
		qsort(e, n, sizeof(e[0]), tt_cmp);
		(void)!buf_addf(&out, "{");
		for (i = 0; i < n; i++) {
			(void)!buf_addf(&out, "%s,", e[i]);
			free(e[i]);
		}
		(void)!buf_addf(&out, "}");
	} else if (t == LUA_TSTRING || t == LUA_TNUMBER) {
		(void)!buf_addf(&out, "%s", lua_tostring(L, -1));
	} else {
		(void)!buf_addf(&out, "%s", lua_typename(L, t));
	}
	return buf_steal(&out);
}

static int op_decode(int k, char *fp, size_t fplen, char *err, size_t errlen)
{
	enum decode_format f = tt_bodies[k].f;
	const char *ct = tt_bodies[k].ct, *body = tt_bodies[k].body;
	lua_State *L = lua_newstate(tt_lua_alloc, NULL);
	int rc;

	if (!L) {
		snprintf(err, errlen, "lua_newstate: out of memory");
		return -1;
	}
	rc = decode_push(L, f, ct, body, strlen(body), err, errlen);
	if (rc == 0) {
		/* lua_next on a fresh table does not allocate; tostring of a
		 * number could, so the walk runs unarmed. */
		enum tt_mode m = tt_mode;
		char *t;

		tt_mode = TT_OFF;
		t = tt_text(L, 0);
		snprintf(fp, fplen, "%s", t ? t : "?");
		free(t);
		tt_mode = m;
	}
	lua_close(L);
	return rc;
}

/* The rule runtime: load, prepare, process on a 3-lead batch. */
static const char tt_rule[] =
	"return {\n"
	" statuses = { in_work = 'processing', fake = { status = 5, reason = 6 } },\n"
	" processing = { url = 'https://{host}/api?ids={idsl}', method = 'post', batch = 10,\n"
	"  fields = { ids = '{ids}', ext = '{ide}', n = 5 },\n"
	"  headers = { ['X-Key'] = '{key}' },\n"
	"  prepare = function(r) r.headers['X-Sign'] = hash.hmac_sha256(offer.params.key, r.url) log('prepared', #r.url) end,\n"
	"  process = function(data)\n"
	"   for i, o in ipairs(data.orders) do\n"
	"    local id = e2i[o.id]\n"
	"    if o.status == 'paid' then lead.approve(id, 'sum ' .. tostring(o.sum))\n"
	"    else lead.setstc(id, o.status) end\n"
	"   end\n"
	"   log(string.format('%d orders, page %d', #data.orders, data.page))\n"
	"  end } }\n";

/* A paged rule on a clone: page 1 asks for page 2 (res.next), which is
 * processed as the request it came with. */
static const char tt_rule_paged[] =
	"return { processing = { url = 'https://x/api?ids={idsl}', headers = { Auth = '{key}' },\n"
	" process = function(data)\n"
	"  for _, d in ipairs(data.orders) do lead.setstc(e2i[d.id], d.status) end\n"
	"  if data.more then return { next = { query = { page = page + 1 } } } end end } }\n";
static const char *const tt_pages[] = {
	"{\"orders\":[{\"id\":\"A-1\",\"status\":\"hold\"}],\"more\":true}",
	"{\"orders\":[{\"id\":\"A-2\",\"status\":\"accept\"}]}",
};

/* An XML answer in windows-1251, read with xml.find / xml.all. */
static const char tt_rule_xml[] =
	"return { statuses = { ['\xd0\x92\xd1\x80\xd1\x83\xd1\x87\xd0\xb5\xd0\xbd'] = 'delivered' },\n"
	" processing = { url = 'https://x/o.xml?ids={idsl}', format = 'xml',\n"
	" process = function(data)\n"
	"  for _, o in ipairs(xml.all(xml.find(data, 'orders'), 'order')) do\n"
	"   local id = e2i[o.attr.id]\n"
	"   lead.setstatus(id, xml.find(o, 'status').text)\n"
	"   if id then lead.edit(id, { comment = o.attr.id .. ' ' .. xml.find(o, 'status').text }) end\n"
	"  end end } }\n";
static const char tt_xml_body[] =
	"<?xml version=\"1.0\" encoding=\"windows-1251\"?><r><orders>"
	"<order id=\"A-1\"><status>\xc2\xf0\xf3\xf7\xe5\xed</status></order>"
	"<order id=\"A-2\"><status>trash</status></order></orders></r>";

enum tt_rule_kind { TT_RULE_PLAIN, TT_RULE_PAGED, TT_RULE_XML };

static int op_rule(int kind, char *fp, size_t fplen, char *err, size_t errlen)
{
	static const struct macro_param params[] = { { "host", "crm.example" }, { "key", "s3cret" } };
	static const struct rule_goal goals[] = {
		{ 10, "lead", { 5, PAYOUT_FIXED, 500, 800, 0, 1 } },
		{ 10, "sale", { 6, PAYOUT_PERCENT, 1000, 2000, 0, 1 } },
	};
	static const struct rule_currency curr[] = { { "USD", 1 }, { "EUR", 2 } };
	static const char body[] =
		"{\"orders\":[{\"id\":\"A-1\",\"status\":\"in_work\"},{\"id\":\"A-2\",\"status\":\"fake\"},"
		"{\"id\":\"777\",\"status\":\"paid\",\"sum\":12.5}],\"page\":1}";
	static const char *const ext[3] = { "A-1", "A-2", "777" };
	const char *src = kind == TT_RULE_PAGED ? tt_rule_paged : kind == TT_RULE_XML ? tt_rule_xml : tt_rule;
	struct lead leads[3];
	struct rule_batch b;
	struct rule_result res;
	struct rule_request q;
	struct rule_rt *rt = NULL, *clone = NULL, *run;
	size_t i, at;
	int rc = -1;

	memset(leads, 0, sizeof(leads));
	for (i = 0; i < 3; i++) {
		leads[i].id = 101 + (int64_t)i;
		leads[i].offer = 10;
		snprintf(leads[i].ext, sizeof(leads[i].ext), "%s", ext[i]);
		leads[i].status = 2;
		leads[i].goal = 5;
		leads[i].base = 3000;
		leads[i].counts = 1;
		leads[i].created = INT64_C(1795000000) - 86400;
	}
	memset(&b, 0, sizeof(b));
	b.offer = 10;
	b.leads = leads;
	b.nleads = 3;
	b.params = params;
	b.nparams = 2;
	b.settings.hold_days = 7;
	b.settings.reject_reason = 2;
	b.goals = goals;
	b.ngoals = 2;
	b.currencies = curr;
	b.ncurrencies = 2;
	b.now = INT64_C(1795000000);

	rule_request_init(&q);
	rule_result_init(&res);
	if (rule_load_buffer("rules/t.lua", src, strlen(src), NULL, &rt, err, errlen) < 0)
		goto out;
	run = rt;
	if (kind == TT_RULE_PAGED) {
		if (rule_clone(rt, &clone, err, errlen) < 0)
			goto out;
		run = clone;
	}
	if (rule_prepare(run, RULE_PROCESSING, &b, &res, &q, err, errlen) < 0)
		goto out;
	if (kind == TT_RULE_XML) {
		if (rule_process(run, RULE_PROCESSING, &b, &q, tt_xml_body, strlen(tt_xml_body), 200,
				 "application/xml", &res, err, errlen) < 0)
			goto out;
	} else if (kind == TT_RULE_PAGED) {
		if (rule_process(run, RULE_PROCESSING, &b, &q, tt_pages[0], strlen(tt_pages[0]), 200,
				 NULL, &res, err, errlen) < 0)
			goto out;
		if (!res.has_next) {
			snprintf(err, errlen, "no next page");
			rc = -2; /* not an allocation failure's answer */
			goto out;
		}
		at = (size_t)snprintf(fp, fplen, "next %s ", res.next.url);
		fp += at < fplen ? at : fplen;
		fplen -= at < fplen ? at : fplen;
		if (rule_process(run, RULE_PROCESSING, &b, &res.next, tt_pages[1], strlen(tt_pages[1]),
				 200, NULL, &res, err, errlen) < 0)
			goto out;
	} else if (rule_process(run, RULE_PROCESSING, &b, &q, body, strlen(body), 200,
				"application/json", &res, err, errlen) < 0) {
		goto out;
	}
	at = (size_t)snprintf(fp, fplen, "%s %s|%zu %zu %zu %u", q.url, q.body ? q.body : "-",
			      res.nchanges, res.edits, res.changed, res.pages);
	for (i = 0; i < res.nchanges && at < fplen; i++)
		at += (size_t)snprintf(fp + at, fplen - at, "|%zu:%d/%d %s", res.changes[i].lead,
				       res.changes[i].after.status, res.changes[i].after.reason,
				       res.changes[i].after.comment);
	/* The log is best effort by design (rule__line drops a line it has
	 * no memory for and counts it): a counted drop is not a failure. */
	if (at < fplen)
		snprintf(fp + at, fplen - at, TT_BEST_EFFORT "%.*s", (int)res.log.len, res.log.p);
	rc = res.log_dropped || res.notes_dropped ? 1 : 0;
out:
	rule_result_release(&res);
	rule_request_release(&q);
	rule_free(clone);
	rule_free(rt);
	return rc;
}

/* import: a line parsed as `leadsync import` parses it, then the record. */
static int tt_currency(const char *iso, const void *data)
{
	(void)data;
	return strcmp(iso, "USD") == 0 ? 1 : strcmp(iso, "EUR") == 0 ? 2 : 0;
}

static int op_import(int k __attribute__((unused)), char *fp, size_t fplen, char *err, size_t errlen)
{
	static const char line[] =
		"{\"ext\":\"A-1\",\"offer\":7,\"status\":6,\"comment\":\"Ж ok\","
		"\"base\":\"12.50\",\"curr\":\"USD\",\"goal\":\"sale\",\"track\":\"t-1\","
		"\"click_id\":\"0f8e5c2a-1b3d-4e5f-8a9b-0c1d2e3f4a5b\",\"created\":\"2026-03-08 10:00:00\"}";
	struct import_lead l;
	cJSON *rec = cJSON_ParseWithLength(line, strlen(line));
	int rc;

	if (!rec) {
		snprintf(err, errlen, "parse: out of memory");
		return -1;
	}
	rc = import_lead_check(rec, tt_currency, NULL, 0, &l, err, errlen);
	if (rc == 0)
		snprintf(fp, fplen, "%s %lld %d %lld %d %s %s %s %llx", l.lead.ext,
			 (long long)l.lead.offer, l.lead.status, (long long)l.lead.base,
			 l.lead.curr, l.lead.comment, l.goal, l.click, (unsigned long long)l.set);
	cJSON_Delete(rec);
	return rc < 0 ? -1 : 0;
}

/* import_run: a file of every record kind into a database made for the
 * sweeps (when LEADSYNC_TEST_PG is set: `make test`, `make torture`). The
 * tables are emptied before each run (unarmed); after a failed run they
 * must still be empty (the transaction rolled back: nothing written) and
 * the connection idle, after a successful one hold what the baseline's
 * did. */
static PGconn *tt_db;

static const char tt_import_text[] =
	"{\"advertiser\": {\"id\": 1, \"name\": \"Acme\", \"api_key\": \"k-acme\"}}\n"
	"{\"offer\": {\"id\": 10, \"advertiser\": 1, \"name\": \"Nutra X\", \"rule\": \"acme_crm\", "
	"\"params\": {\"host\": \"127.0.0.1:9001\", \"key\": \"s3cret\"}, \"secret_params\": [\"key\"], "
	"\"intervals\": {\"processing\": 600, \"accepted\": 10800, \"dates\": 3600}, \"hold_days\": 7, "
	"\"reject_reason\": 2, \"reject_after_days\": 30, \"tz\": \"Europe/Moscow\", "
	"\"landing_url\": \"https://shop.example/x\", \"click_param\": \"click_id\", \"enabled\": true}}\n"
	"{\"goal\": {\"offer\": 10, \"code\": \"lead\", \"payout\": \"fixed\", \"wm\": 5, \"pay\": 8, "
	"\"ref\": 0, \"currency\": \"USD\"}}\n"
	"# a comment line\n"
	"{\"lead\": {\"id\": 1001, \"offer\": 10, \"ext\": \"A-17\", \"status\": 2, "
	"\"created\": \"2026-11-20T10:00:00Z\", \"goal\": \"lead\", \"click_id\": null, \"base\": 30, "
	"\"counts\": 1}}\n"
	"{\"lead\": {\"id\": 1002, \"offer\": 10, \"ext\": \"A-18\", \"status\": 6, \"comment\": \"Ж\", "
	"\"created\": \"2026-11-21T10:00:00Z\", \"goal\": \"lead\", \"base\": 12.5, \"counts\": 1}}\n";

static const char tt_import_digest_sql[] =
	"SELECT (SELECT count(*) FROM advertisers) || ' ' || (SELECT count(*) FROM offers) || ' ' ||"
	" (SELECT count(*) FROM goals) || ' ' || (SELECT count(*) FROM lead_history) || ' ' ||"
	" (SELECT coalesce(string_agg(id || ':' || status || ':' || ext || ':' || base, ';' ORDER BY id),"
	" '') FROM leads)";

/* Unarmed: the tables' digest into out; false when the query failed. */
static bool tt_import_digest(char *out, size_t len)
{
	enum tt_mode m = tt_mode;
	PGresult *r;
	bool ok;

	tt_mode = TT_OFF;
	r = PQexec(tt_db, tt_import_digest_sql);
	ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
	snprintf(out, len, "%s", ok ? PQgetvalue(r, 0, 0) : PQresultErrorMessage(r));
	PQclear(r);
	tt_mode = m;
	return ok;
}

static int op_import_run(int k __attribute__((unused)), char *fp, size_t fplen, char *err, size_t errlen)
{
	struct import_stats st;
	char digest[1024];
	enum tt_mode m = tt_mode;
	PGresult *r;
	FILE *in;
	int rc;

	tt_mode = TT_OFF;
	/* DELETE, not TRUNCATE: for a few rows it is many times faster. */
	r = PQexec(tt_db, "DELETE FROM lead_history; DELETE FROM postbacks_in; DELETE FROM clicks;"
			  " DELETE FROM leads; DELETE FROM customers; DELETE FROM poll_runs;"
			  " DELETE FROM poll_schedule; DELETE FROM goals; DELETE FROM offers;"
			  " DELETE FROM advertisers");
	rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
	if (rc < 0)
		snprintf(err, errlen, "reset: %s", PQresultErrorMessage(r));
	PQclear(r);
	in = rc == 0 ? fmemopen((void *)tt_import_text, strlen(tt_import_text), "r") : NULL;
	tt_mode = m;
	if (!in)
		return -2;
	rc = import_run(tt_db, in, &st, err, errlen);
	tt_mode = TT_OFF;
	fclose(in);
	if (PQtransactionStatus(tt_db) != PQTRANS_IDLE) {
		snprintf(err, errlen, "import_run left a transaction open (rc %d)", rc);
		rc = -2;
	} else if (!tt_import_digest(digest, sizeof(digest))) {
		snprintf(err, errlen, "digest: %s", digest);
		rc = -2;
	} else if (rc < 0 && strcmp(digest, "0 0 0 0 ") != 0) {
		char why[256];

		snprintf(why, sizeof(why), "%s", err);
		snprintf(err, errlen, "import_run failed (%s) but wrote: %s", why, digest);
		rc = -2;
	} else if (rc == 0) {
		snprintf(fp, fplen, "%zu %zu %zu %zu %zu|%s", st.advertisers, st.offers, st.goals,
			 st.leads, st.lines, digest);
	}
	tt_mode = m;
	return rc;
}

static void tt_quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

/* A database of its own on the test server, migrated; NULL (the sweep is
 * skipped) when LEADSYNC_TEST_PG is not set. */
static PGconn *tt_db_open(void)
{
	const char *base = getenv("LEADSYNC_TEST_PG");
	char ci[1024], err[1024];
	PGconn *c;
	PGresult *r;
	int applied;

	if (!base || !*base)
		return NULL;
	snprintf(ci, sizeof(ci), "%s dbname=postgres", base);
	c = PQconnectdb(ci);
	if (PQstatus(c) != CONNECTION_OK) {
		printf("torture: cannot reach the test server: %s", PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeProcessor(c, tt_quiet, NULL);
	PQclear(PQexec(c, "DROP DATABASE IF EXISTS leadsync_torture WITH (FORCE)"));
	r = PQexec(c, "CREATE DATABASE leadsync_torture");
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		printf("torture: create database: %s", PQresultErrorMessage(r));
	PQclear(r);
	PQfinish(c);
	snprintf(ci, sizeof(ci), "%s dbname=leadsync_torture", base);
	c = NULL;
	if (store_connect(ci, &c, err, sizeof(err)) < 0 || store_migrate(c, &applied, err, sizeof(err)) < 0) {
		printf("torture: database leadsync_torture: %s\n", err);
		PQfinish(c);
		return NULL;
	}
	return c;
}

static const struct {
	const char *name;
	tt_op_fn fn;
	int k;
	bool lua;     /* allocates through a Lua state: run in "lua" mode too */
	long sample;  /* runs of --sample; 0: 160 */
} tt_ops[] = {
	{ "macro", op_macro, 0, false, 0 },
	{ "status", op_status, 0, false, 0 },
	{ "postback_json", op_postback, 1, false, 0 },
	{ "postback_form", op_postback, 0, false, 0 },
	{ "mask", op_mask, 0, false, 0 },
	{ "decode_json", op_decode, 0, true, 0 },
	{ "decode_json_cp1251", op_decode, 1, true, 0 },
	{ "decode_xml_cp1251", op_decode, 2, true, 0 },
	{ "decode_xml", op_decode, 3, true, 0 },
	{ "decode_form_cp866", op_decode, 4, true, 0 },
	{ "decode_text_koi8", op_decode, 5, true, 0 },
	{ "rule", op_rule, TT_RULE_PLAIN, true, 0 },
	{ "rule_paged_clone", op_rule, TT_RULE_PAGED, true, 0 },
	{ "rule_xml_cp1251", op_rule, TT_RULE_XML, true, 0 },
	{ "import", op_import, 0, false, 0 },
	{ "import_run", op_import_run, 0, false, 12 }, /* ~100 ms a run */
};

/* ---- the driver -------------------------------------------------------- */

static const char *tt_cur_name = "";
static long tt_cur_n;

static void tt_on_abort(int sig)
{
	char msg[256];
	int n = snprintf(msg, sizeof(msg), "torture: %s died (signal %d) with allocation %ld failing\n",
			 tt_cur_name, sig, tt_cur_n);

	if (n > 0)
		(void)!write(2, msg, (size_t)n);
	signal(sig, SIG_DFL);
	raise(sig);
}

static const char *tt_mode_name(enum tt_mode mode, bool sticky)
{
	return mode == TT_LUA ? (sticky ? "lua+" : "lua") : (sticky ? "malloc+" : "malloc");
}

/* One operation in one mode; true when it passed. */
static bool tt_sweep(const char *name, tt_op_fn fn, int k, enum tt_mode mode, bool sticky, long sample)
{
	static char base[8192], fp[8192], err[1024];
	long total, n, runs = 0, refused = 0, absorbed = 0, step = 1;
	bool ok = true;
	int rc;

	tt_cur_name = name;
	tt_cur_n = 0;
	tt_sticky = sticky;
	base[0] = err[0] = '\0';
	tt_mode = mode;
	tt_n = 0;
	tt_fail_at = 0;
	rc = fn(k, base, sizeof(base), err, sizeof(err));
	total = tt_n;
	tt_mode = TT_OFF;
	if (rc != 0) {
		printf("FAIL torture %s (%s): fails with no failure injected: %s\n", name,
		       tt_mode_name(mode, sticky), err);
		return false;
	}
	/* a sample: every n up to a quarter of it, the rest spread evenly */
	if (sample && total > sample)
		step = (total - sample / 4) / (sample - sample / 4) + 1;
	for (n = 1;; n = (step > 1 && n >= sample / 4) ? n + step : n + 1) {
		fp[0] = err[0] = '\0';
		tt_cur_n = n;
		tt_failed = false;
		tt_n = 0;
		tt_fail_at = n;
		tt_mode = mode;
		rc = fn(k, fp, sizeof(fp), err, sizeof(err));
		tt_mode = TT_OFF;
		tt_fail_at = 0;
		if (!tt_failed) {
			/* past the last allocation: it must succeed as the baseline */
			if (rc != 0 || strcmp(fp, base) != 0) {
				printf("FAIL torture %s: n=%ld, nothing failed, but rc %d (%s)\n", name,
				       n, rc, err);
				ok = false;
			}
			break;
		}
		runs++;
		if (rc == 1) {
			/* only the part before the best-effort output counts */
			char *a = strstr(fp, TT_BEST_EFFORT), *b = strstr(base, TT_BEST_EFFORT);

			if (a && b && a - fp == b - base && memcmp(fp, base, (size_t)(a - fp)) == 0) {
				absorbed++;
				continue;
			}
			rc = 0; /* reported below */
		}
		if (rc == 0) {
			absorbed++;
			if (strcmp(fp, base) != 0) {
				printf("FAIL torture %s: allocation %ld failing: success with a "
				       "different result:\n  %s\n  %s\n",
				       name, n, fp, base);
				ok = false;
			}
		} else {
			refused++;
			if (rc != -1 || !err[0]) {
				printf("FAIL torture %s: allocation %ld failing: rc %d without a "
				       "message\n",
				       name, n, rc);
				ok = false;
			}
		}
	}
	if (__lsan_do_recoverable_leak_check()) {
		printf("FAIL torture %s (%s): leaks (LSan's report above)\n", name,
		       tt_mode_name(mode, sticky));
		ok = false;
	}
	printf("torture %-20s %-7s %5ld allocations, %5ld runs: %ld errors, %ld absorbed%s\n", name,
	       tt_mode_name(mode, sticky), total, runs, refused, absorbed,
	       ok ? "" : "  FAILED");
	fflush(stdout);
	return ok;
}

static bool tt_selected(const char *name, int argc, char **argv, int first)
{
	int i;

	if (first >= argc)
		return true;
	for (i = first; i < argc; i++)
		if (strstr(name, argv[i]))
			return true;
	return false;
}

int main(int argc, char **argv)
{
	cJSON_Hooks hooks = { __wrap_malloc, free };
	bool sample = argc > 1 && strcmp(argv[1], "--sample") == 0;
	int first = sample ? 2 : 1, passed = 0, failed = 0;
	size_t i;

	signal(SIGABRT, tt_on_abort);
	signal(SIGSEGV, tt_on_abort);
	cJSON_InitHooks(&hooks);
	rule__alloc_fail = tt_lua_fail;
	tt_db = tt_db_open();
	for (i = 0; i < sizeof(tt_ops) / sizeof(tt_ops[0]); i++) {
		int m;

		if (!tt_selected(tt_ops[i].name, argc, argv, first))
			continue;
		if (tt_ops[i].fn == op_import_run && !tt_db) {
			printf("torture %-20s skipped: no database (LEADSYNC_TEST_PG)\n", tt_ops[i].name);
			continue;
		}
		for (m = 0; m < 4; m++) {
			if (m >= 2 && !tt_ops[i].lua)
				break;
			if (tt_sweep(tt_ops[i].name, tt_ops[i].fn, tt_ops[i].k, m < 2 ? TT_MALLOC : TT_LUA, m & 1,
				     !sample ? 0 : tt_ops[i].sample ? tt_ops[i].sample : 160))
				passed++;
			else
				failed++;
		}
	}
	PQfinish(tt_db);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
