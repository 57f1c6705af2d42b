/* test_decode: json, xml, form and text answers to Lua values, good and broken. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>

#include "decode.h"
#include "lua_cap.h"
#include "test.h"

/* repr(x) names a value with its type, so an integer 123, a float 123.0
 * and a string "123" read differently in an assert. */
static const char decode_t_prelude[] =
	"function repr(x)\n"
	"  local t = type(x)\n"
	"  if t == 'number' then return math.type(x) .. ':' .. tostring(x) end\n"
	"  if t == 'string' then return 'string:' .. x end\n"
	"  if x == NULL then return 'null' end\n"
	"  if t == 'boolean' then return 'boolean:' .. tostring(x) end\n"
	"  return t\n"
	"end\n"
	"function nkeys(t) local n = 0 for _ in pairs(t) do n = n + 1 end return n end\n";

static lua_State *decode_t_state(void)
{
	lua_State *L = luaL_newstate();

	luaL_openlibs(L);
	decode_push_null(L);
	lua_setglobal(L, "NULL");
	lua_pushcfunction(L, decode_lua_xml_find);
	lua_setglobal(L, "xfind");
	lua_pushcfunction(L, decode_lua_xml_all);
	lua_setglobal(L, "xall");
	if (luaL_dostring(L, decode_t_prelude) != LUA_OK)
		abort();
	return L;
}

/* Decodes s into the global v; on failure checks the stack was left as it
 * was (returns -2 if not). */
static int decode_t_run_ct(lua_State *L, enum decode_format f, const char *ct, const char *s,
			   size_t n, char *err, size_t errlen)
{
	int top = lua_gettop(L), rc;

	err[0] = '\0';
	rc = decode_push(L, f, ct, s, n, err, errlen);
	if (rc == 0) {
		if (lua_gettop(L) != top + 1)
			return -2;
		lua_setglobal(L, "v");
	} else if (lua_gettop(L) != top || err[0] == '\0') {
		return -2;
	}
	return rc;
}

static int decode_t_run(lua_State *L, enum decode_format f, const char *s, size_t n, char *err,
			size_t errlen)
{
	return decode_t_run_ct(L, f, NULL, s, n, err, errlen);
}

#define DEC(f, s) decode_t_run(L, f, s, strlen(s), err, sizeof(err))
/* with the answer's Content-Type */
#define DECT(f, ct, s) decode_t_run_ct(L, f, ct, s, strlen(s), err, sizeof(err))

/* Evaluates `return repr(<expr>)`; the result stays on the stack (so the
 * pointer lives until lua_close). */
static const char *lx(lua_State *L, const char *expr)
{
	char code[1024];

	snprintf(code, sizeof(code), "return repr(%s)", expr);
	if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK)
		return lua_tostring(L, -1);
	return lua_tostring(L, -1);
}

/* Runs a Lua chunk that returns a string (for loops over the value). */
static const char *lrun(lua_State *L, const char *code)
{
	if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK)
		return lua_tostring(L, -1);
	return lua_tostring(L, -1);
}

TEST(decode_format_names)
{
	ASSERT_EQ(decode_format_parse("json"), DECODE_JSON);
	ASSERT_EQ(decode_format_parse("XML"), DECODE_XML);
	ASSERT_EQ(decode_format_parse("form"), DECODE_FORM);
	ASSERT_EQ(decode_format_parse("text"), DECODE_TEXT);
	ASSERT_EQ(decode_format_parse("yaml"), -1);
	ASSERT_EQ(decode_format_parse(NULL), -1);
	ASSERT_STREQ(decode_format_name(DECODE_FORM), "form");
	ASSERT_STREQ(decode_format_name((enum decode_format)9), "unknown");
}

TEST(decode_json_leads_for_a_rule)
{
	lua_State *L = decode_t_state();
	char err[256];

	ASSERT_EQ(DEC(DECODE_JSON, "[{\"id\":\"123\",\"status\":\"approved\"},\n"
				   " {\"id\": 124, \"status\": \"hold\"}]"), 0);
	ASSERT_STREQ(lx(L, "#v"), "integer:2");
	ASSERT_STREQ(lx(L, "v[1].id"), "string:123");
	ASSERT_STREQ(lx(L, "v[2].id"), "integer:124");
	ASSERT_STREQ(lrun(L, "local e2i = {['123'] = 1001, [124] = 1002}\n"
			     "local out = {}\n"
			     "for _, d in ipairs(v) do out[#out + 1] = e2i[d.id] .. '=' .. d.status end\n"
			     "return table.concat(out, ',')"),
		     "1001=approved,1002=hold");
	lua_close(L);
}

TEST(decode_json_numbers)
{
	lua_State *L = decode_t_state();
	char err[256];

	ASSERT_EQ(DEC(DECODE_JSON, "[9007199254740992, 9007199254740993, -9007199254740992,"
				   " -9007199254740993, 12345678901234567890,"
				   " 123456789012345678901234567890, 1e3, -0, -0.0, 1.5,"
				   " 1e400, -1E+400, 1e-400, 0, 2.5e-3, 1" /* 1 + 60 zeros */
				   "000000000000000000000000000000000000000000000000000000000000.0]"),
		  0);
	ASSERT_STREQ(lx(L, "v[1]"), "integer:9007199254740992");
	ASSERT_STREQ(lx(L, "v[2]"), "string:9007199254740993");
	ASSERT_STREQ(lx(L, "v[3]"), "integer:-9007199254740992");
	ASSERT_STREQ(lx(L, "v[4]"), "string:-9007199254740993");
	ASSERT_STREQ(lx(L, "v[5]"), "string:12345678901234567890");
	ASSERT_STREQ(lx(L, "v[6]"), "string:123456789012345678901234567890");
	ASSERT_STREQ(lx(L, "v[7]"), "float:1000.0");
	ASSERT_STREQ(lx(L, "v[8]"), "integer:0");
	ASSERT_STREQ(lx(L, "v[9]"), "float:-0.0");
	ASSERT_STREQ(lx(L, "v[10]"), "float:1.5");
	ASSERT_STREQ(lx(L, "v[11]"), "string:1e400");
	ASSERT_STREQ(lx(L, "v[12]"), "string:-1E+400");
	ASSERT_STREQ(lx(L, "v[13]"), "float:0.0");
	ASSERT_STREQ(lx(L, "v[14]"), "integer:0");
	ASSERT_STREQ(lx(L, "v[15]"), "float:0.0025");
	ASSERT_STREQ(lx(L, "v[16]"), "float:1e+60");
	lua_close(L);
}

TEST(decode_json_bad_numbers)
{
	static const char *const bad[] = { "01", "-", "1.", "1e", "1e+", ".5", "+1", "-a", "0x10",
					   "1.e3", "--1" };
	lua_State *L = decode_t_state();
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (DEC(DECODE_JSON, bad[i]) != -1) {
			test__fail(__FILE__, __LINE__, "'%s' decoded", bad[i]);
			break;
		}
		ASSERT_CONTAINS(err, "json: line 1 column ");
	}
	ASSERT_EQ(DEC(DECODE_JSON, "01"), -1);
	ASSERT_STREQ(err, "json: line 1 column 1: invalid number: leading zero");
	lua_close(L);
}

TEST(decode_json_scalars_and_null)
{
	lua_State *L = decode_t_state();
	char err[256];

	ASSERT_EQ(DEC(DECODE_JSON, "{\"a\": null, \"b\": true, \"c\": false, \"d\": {}, \"e\": []}"),
		  0);
	/* a null member is absent: `v.a or {}` works */
	ASSERT_STREQ(lx(L, "v.a"), "nil");
	ASSERT_STREQ(lx(L, "v.b"), "boolean:true");
	ASSERT_STREQ(lx(L, "v.c"), "boolean:false");
	ASSERT_STREQ(lx(L, "nkeys(v)"), "integer:4");
	ASSERT_STREQ(lx(L, "nkeys(v.d) + nkeys(v.e)"), "integer:0");
	/* in arrays null keeps its place */
	ASSERT_EQ(DEC(DECODE_JSON, "[1, null, 3]"), 0);
	ASSERT_STREQ(lx(L, "#v"), "integer:3");
	ASSERT_STREQ(lx(L, "v[2]"), "null");
	/* a repeated key whose last value is null is absent too */
	ASSERT_EQ(DEC(DECODE_JSON, "{\"a\": 1, \"a\": null, \"b\": [null]}"), 0);
	ASSERT_STREQ(lx(L, "v.a"), "nil");
	ASSERT_STREQ(lx(L, "v.b[1]"), "null");
	ASSERT_EQ(DEC(DECODE_JSON, " null "), 0);
	lua_getglobal(L, "v");
	ASSERT(decode_is_null(L, -1));
	ASSERT(!decode_is_null(L, 1) || lua_gettop(L) == 1);
	lua_pushboolean(L, 0);
	ASSERT(!decode_is_null(L, -1));
	lua_settop(L, 0);
	ASSERT_EQ(DEC(DECODE_JSON, "\"x\""), 0);
	ASSERT_STREQ(lx(L, "v"), "string:x");
	ASSERT_EQ(DEC(DECODE_JSON, "nul"), -1);
	ASSERT_CONTAINS(err, "invalid value");
	ASSERT_EQ(DEC(DECODE_JSON, "[nulls]"), -1);
	ASSERT_STREQ(err, "json: line 1 column 6: ',' or ']' expected in array: unexpected 's'");
	lua_close(L);
}

TEST(decode_json_strings_and_escapes)
{
	lua_State *L = decode_t_state();
	char err[256];

	ASSERT_EQ(DEC(DECODE_JSON, "[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\", \"\\u00e9\\u0416\","
				   " \"\\ud83d\\ude00\", \"x\\u0000y\", \"\", \"\xd0\xbf raw\"]"),
		  0);
	ASSERT_STREQ(lx(L, "v[1]"), "string:a\"b\\c/d\b\f\n\r\t");
	ASSERT_STREQ(lx(L, "v[2]"), "string:\xc3\xa9\xd0\x96");
	ASSERT_STREQ(lx(L, "v[3]"), "string:\xf0\x9f\x98\x80");
	ASSERT_STREQ(lx(L, "#v[4] .. v[4]:sub(3)"), "string:3y");
	ASSERT_STREQ(lx(L, "v[5]"), "string:");
	ASSERT_STREQ(lx(L, "v[6]"), "string:\xd0\xbf raw");
	lua_close(L);
}

TEST(decode_json_bad_strings)
{
	lua_State *L = decode_t_state();
	char err[256];

	ASSERT_EQ(DEC(DECODE_JSON, "[\"ab\\x\"]"), -1);
	ASSERT_STREQ(err, "json: line 1 column 5: invalid escape '\\x' in string");
	ASSERT_EQ(DEC(DECODE_JSON, "\"\\ud800\""), -1);
	ASSERT_CONTAINS(err, "high surrogate \\ud800 without its low half");
	ASSERT_EQ(DEC(DECODE_JSON, "\"\\ud800\\u0041\""), -1);
	ASSERT_CONTAINS(err, "without its low half");
	ASSERT_EQ(DEC(DECODE_JSON, "\"\\udc00\""), -1);
	ASSERT_CONTAINS(err, "lone low surrogate");
	ASSERT_EQ(DEC(DECODE_JSON, "\"\\u12G4\""), -1);
	ASSERT_CONTAINS(err, "four hex digits");
	ASSERT_EQ(DEC(DECODE_JSON, "\"\\u12"), -1);
	ASSERT_CONTAINS(err, "four hex digits");
	ASSERT_EQ(DEC(DECODE_JSON, "[\"tab\there\"]"), -1);
	ASSERT_STREQ(err, "json: line 1 column 6: control character 0x09 in string (must be escaped)");
	ASSERT_EQ(DEC(DECODE_JSON, "[\"open"), -1);
	ASSERT_STREQ(err, "json: line 1 column 2: unterminated string");
	ASSERT_EQ(DEC(DECODE_JSON, "[\"open\\"), -1);
	ASSERT_STREQ(err, "json: line 1 column 2: unterminated string");
	lua_close(L);
}

TEST(decode_json_truncated_and_trailing)
{
	lua_State *L = decode_t_state();
	char err[256];

	ASSERT_EQ(DEC(DECODE_JSON, "[{\"id\":1"), -1);
	ASSERT_STREQ(err, "json: line 1 column 9: ',' or '}' expected in object: unexpected end of input");
	ASSERT_EQ(DEC(DECODE_JSON, "[{\"id\":"), -1);
	ASSERT_STREQ(err, "json: line 1 column 8: value expected: unexpected end of input");
	ASSERT_EQ(DEC(DECODE_JSON, "{\"a\":1} x"), -1);
	ASSERT_STREQ(err,
		     "json: line 1 column 9: end of input expected after the top value: unexpected 'x'");
	ASSERT_EQ(DEC(DECODE_JSON, "{\n  \"a\": 1,\n  \"b\": tru\n}"), -1);
	ASSERT_STREQ(err, "json: line 3 column 8: invalid value: unexpected 't'");
	ASSERT_EQ(DEC(DECODE_JSON, "[1,]"), -1);
	ASSERT_CONTAINS(err, "column 4: value expected: unexpected ']'");
	ASSERT_EQ(DEC(DECODE_JSON, "{\"a\":1,}"), -1);
	ASSERT_CONTAINS(err, "object key (a string) expected");
	ASSERT_EQ(DEC(DECODE_JSON, "{a:1}"), -1);
	ASSERT_CONTAINS(err, "object key (a string) expected: unexpected 'a'");
	ASSERT_EQ(DEC(DECODE_JSON, "{\"a\" 1}"), -1);
	ASSERT_CONTAINS(err, "':' expected");
	ASSERT_EQ(DEC(DECODE_JSON, "[1]\x01"), -1);
	ASSERT_CONTAINS(err, "unexpected byte 0x01");
	ASSERT_EQ(lua_gettop(L), 0);
	lua_close(L);
}

static char *decode_t_nest(int depth, const char *open, const char *mid, const char *close)
{
	size_t lo = strlen(open), lm = strlen(mid), lc = strlen(close);
	char *s = malloc((lo + lc) * (size_t)depth + lm + 1), *p = s;
	int i;

	for (i = 0; i < depth; i++, p += lo)
		memcpy(p, open, lo);
	memcpy(p, mid, lm);
	p += lm;
	for (i = 0; i < depth; i++, p += lc)
		memcpy(p, close, lc);
	*p = '\0';
	return s;
}

TEST(decode_json_depth_cap)
{
	lua_State *L = decode_t_state();
	char err[256], *s;
	int rc;

	s = decode_t_nest(DECODE_MAX_DEPTH, "[", "7", "]");
	rc = DEC(DECODE_JSON, s);
	free(s);
	ASSERT_EQ(rc, 0);
	ASSERT_STREQ(lx(L, "v" "[1][1][1][1][1][1][1][1][1][1][1][1][1][1][1][1]"
			   "[1][1][1][1][1][1][1][1][1][1][1][1][1][1][1][1]"
			   "[1][1][1][1][1][1][1][1][1][1][1][1][1][1][1][1]"
			   "[1][1][1][1][1][1][1][1][1][1][1][1][1][1][1][1]"),
		     "integer:7");
	s = decode_t_nest(DECODE_MAX_DEPTH + 1, "{\"a\":", "1", "}");
	rc = DEC(DECODE_JSON, s);
	free(s);
	ASSERT_EQ(rc, -1);
	ASSERT_STREQ(err, "json: line 1 column 321: nested deeper than 64 levels");
	/* the bomb: 100000 '[' with nothing after them */
	s = malloc(100001);
	memset(s, '[', 100000);
	s[100000] = '\0';
	rc = DEC(DECODE_JSON, s);
	free(s);
	ASSERT_EQ(rc, -1);
	ASSERT_CONTAINS(err, "column 65: nested deeper than 64 levels");
	lua_close(L);
}

TEST(decode_json_big_containers)
{
	lua_State *L = decode_t_state();
	struct buf_ { char p[20000]; size_t n; } b = { .n = 0 };
	char err[256];
	int i;

	/* 100 keys (spills past the chunk), "k0" repeated last: the last wins */
	b.p[b.n++] = '{';
	for (i = 0; i < 100; i++)
		b.n += (size_t)snprintf(b.p + b.n, sizeof(b.p) - b.n, "\"k%d\":%d,", i, i);
	b.n += (size_t)snprintf(b.p + b.n, sizeof(b.p) - b.n, "\"k0\":\"last\"}");
	ASSERT_EQ(decode_t_run(L, DECODE_JSON, b.p, b.n, err, sizeof(err)), 0);
	ASSERT_STREQ(lx(L, "nkeys(v)"), "integer:100");
	ASSERT_STREQ(lx(L, "v.k0"), "string:last");
	ASSERT_STREQ(lx(L, "v.k31 + v.k32 + v.k99"), "integer:162");
	/* 1000 elements: a sequence in order */
	b.n = 0;
	b.p[b.n++] = '[';
	for (i = 1; i <= 1000; i++)
		b.n += (size_t)snprintf(b.p + b.n, sizeof(b.p) - b.n, "%s%d", i > 1 ? "," : "", i);
	b.p[b.n++] = ']';
	ASSERT_EQ(decode_t_run(L, DECODE_JSON, b.p, b.n, err, sizeof(err)), 0);
	ASSERT_STREQ(lrun(L, "for i = 1, 1000 do if v[i] ~= i then return 'bad ' .. i end end\n"
			     "return #v .. ''"),
		     "1000");
	/* siblings of other sizes than the one before (tables are sized by
	 * the previous sibling) */
	ASSERT_EQ(DEC(DECODE_JSON, "[{\"a\":1,\"b\":2,\"c\":3},{\"x\":4},{},{\"p\":5,\"q\":6},"
				   "[[1,2,3],[4],[],[5,6]]]"),
		  0);
	ASSERT_STREQ(lrun(L, "local o = {}\n"
			     "for i = 1, 4 do local ks = {} for k, x in pairs(v[i]) do\n"
			     "  ks[#ks + 1] = k .. x end table.sort(ks) o[#o + 1] = table.concat(ks, ' ') end\n"
			     "for i = 1, 4 do o[#o + 1] = #v[5][i] .. ':' .. table.concat(v[5][i], ' ') end\n"
			     "return table.concat(o, '|')"),
		     "a1 b2 c3|x4||p5 q6|3:1 2 3|1:4|0:|2:5 6");
	lua_close(L);
}

TEST(decode_json_empty_bom_whitespace)
{
	lua_State *L = decode_t_state();
	char err[256];

	ASSERT_EQ(decode_t_run(L, DECODE_JSON, "", 0, err, sizeof(err)), 0);
	ASSERT_STREQ(lx(L, "type(v) .. nkeys(v)"), "string:table0");
	ASSERT_EQ(DEC(DECODE_JSON, " \r\n\t "), 0);
	ASSERT_STREQ(lx(L, "type(v) .. nkeys(v)"), "string:table0");
	ASSERT_EQ(decode_t_run(L, DECODE_JSON, NULL, 0, err, sizeof(err)), 0);
	ASSERT_STREQ(lx(L, "type(v)"), "string:table");
	ASSERT_EQ(DEC(DECODE_JSON, "\xef\xbb\xbf {\"a\":1}\n"), 0);
	ASSERT_STREQ(lx(L, "v.a"), "integer:1");
	lua_close(L);
}

TEST(decode_out_of_memory_is_an_error)
{
	struct lua_cap cap = { 0, (size_t)1 << 20 };
	lua_State *L = lua_newstate(lua_cap_alloc, &cap);
	char err[256], *s;
	size_t n = 200000, i;
	int rc;

	ASSERT(L);
	s = malloc(n * 4 + 2);
	s[0] = '[';
	for (i = 0; i < n; i++)
		memcpy(s + 1 + 4 * i, "\"a\",", 4);
	s[4 * n] = ']';
	rc = decode_t_run(L, DECODE_JSON, s, 4 * n + 1, err, sizeof(err));
	free(s);
	ASSERT_EQ(rc, -1);
	ASSERT_STREQ(err, "json: not enough memory");
	ASSERT_EQ(lua_gettop(L), 0);
	/* xml: the event buffer comes from the same allocator */
	s = malloc(10 * 60000 + 8);
	memcpy(s, "<r>", 3);
	n = 3;
	for (i = 0; i < 60000; i++, n += 10)
		memcpy(s + n, "<a x='1'/>", 10);
	memcpy(s + n, "</r>", 4);
	n += 4;
	rc = decode_t_run(L, DECODE_XML, s, n, err, sizeof(err));
	free(s);
	ASSERT_EQ(rc, -1);
	ASSERT_CONTAINS(err, "not enough memory");
	ASSERT_EQ(lua_gettop(L), 0);
	/* the state is still usable */
	ASSERT_EQ(DEC(DECODE_JSON, "[1,2]"), 0);
	lua_close(L);
}

TEST(decode_xml_structure)
{
	lua_State *L = decode_t_state();
	char err[256];

	ASSERT_EQ(DEC(DECODE_XML,
		      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		      "<orders count=\"2\" page='1'>\n"
		      "  <order id=\"1\" status=\"approved\">  hi there \n</order>\n"
		      "  <order id=\"2\"><![CDATA[<raw> & stuff]]></order>\n"
		      "  <!-- a comment -->\n"
		      "  <note>a &amp; b &#x41;&#1078;&lt;</note>\n"
		      "</orders>\n"),
		  0);
	ASSERT_STREQ(lx(L, "v.name"), "string:orders");
	ASSERT_STREQ(lx(L, "v.attr.count .. v.attr.page"), "string:21");
	ASSERT_STREQ(lx(L, "v.text"), "string:");
	ASSERT_STREQ(lx(L, "#v.children"), "integer:3");
	ASSERT_STREQ(lx(L, "v.children[1].name"), "string:order");
	ASSERT_STREQ(lx(L, "v.children[1].attr.status"), "string:approved");
	ASSERT_STREQ(lx(L, "v.children[1].text"), "string:hi there");
	ASSERT_STREQ(lx(L, "#v.children[1].children"), "integer:0");
	ASSERT_STREQ(lx(L, "v.children[2].text"), "string:<raw> & stuff");
	ASSERT_STREQ(lx(L, "v.children[3].text"), "string:a & b A\xd0\xb6<");
	ASSERT_STREQ(lx(L, "nkeys(v.children[3].attr)"), "integer:0");
	ASSERT_STREQ(lx(L, "xfind(v, 'order').attr.id"), "string:1");
	ASSERT_STREQ(lx(L, "#xall(v, 'order')"), "integer:2");
	ASSERT_STREQ(lx(L, "xall(v, 'order')[2].attr.id"), "string:2");
	ASSERT_STREQ(lx(L, "xfind(v, 'nope')"), "nil");
	ASSERT_STREQ(lx(L, "#xall(v, 'nope')"), "integer:0");
	ASSERT_STREQ(lx(L, "xfind({}, 'x')"), "nil");
	ASSERT_STREQ(lx(L, "select(2, pcall(xfind, 1, 'x')):match('table expected') ~= nil"),
		     "boolean:true");
	lua_close(L);
}

TEST(decode_xml_mixed_text_and_names)
{
	lua_State *L = decode_t_state();
	char err[256];

	ASSERT_EQ(DEC(DECODE_XML, "<s:a xmlns:s='urn:x'> x <b>y</b> z </s:a>"), 0);
	ASSERT_STREQ(lx(L, "v.name"), "string:s:a");
	ASSERT_STREQ(lx(L, "v.attr['xmlns:s']"), "string:urn:x");
	ASSERT_STREQ(lx(L, "v.text"), "string:x  z");
	ASSERT_STREQ(lx(L, "v.children[1].text"), "string:y");
	ASSERT_EQ(DEC(DECODE_XML, "<only/>"), 0);
	ASSERT_STREQ(lx(L, "v.name .. '|' .. v.text .. nkeys(v.attr) .. #v.children"),
		     "string:only|00");
	/* a DOCTYPE without declarations is fine, its DTD is never fetched */
	ASSERT_EQ(DEC(DECODE_XML, "<!DOCTYPE r SYSTEM \"file:///etc/passwd\"><r>ok</r>"), 0);
	ASSERT_STREQ(lx(L, "v.text"), "string:ok");
	ASSERT_EQ(DEC(DECODE_XML, "  \n "), 0);
	ASSERT_STREQ(lx(L, "type(v) .. nkeys(v)"), "string:table0");
	ASSERT_EQ(decode_t_run(L, DECODE_XML, "", 0, err, sizeof(err)), 0);
	ASSERT_STREQ(lx(L, "type(v) .. nkeys(v)"), "string:table0");
	lua_close(L);
}

TEST(decode_xml_entities_refused)
{
	lua_State *L = decode_t_state();
	char err[256];

	ASSERT_EQ(DEC(DECODE_XML,
		      "<?xml version=\"1.0\"?>\n"
		      "<!DOCTYPE lolz [\n"
		      " <!ENTITY lol \"lol\">\n"
		      " <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
		      " <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n"
		      " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
		      "]>\n"
		      "<lolz>&lol3;</lolz>"),
		  -1);
	ASSERT_STREQ(err, "xml: line 2 column 16: a DOCTYPE with declarations (entities) is refused");
	ASSERT_EQ(DEC(DECODE_XML, "<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r>&x;</r>"),
		  -1);
	ASSERT_CONTAINS(err, "is refused");
	ASSERT_EQ(DEC(DECODE_XML, "<r>&undefined;</r>"), -1);
	ASSERT_CONTAINS(err, "undefined entity");
	lua_close(L);
}

TEST(decode_xml_broken)
{
	lua_State *L = decode_t_state();
	char err[256];

	ASSERT_EQ(DEC(DECODE_XML, "<a>\n  <b></a>"), -1);
	ASSERT_STREQ(err, "xml: line 2 column 8: mismatched tag");
	ASSERT_EQ(DEC(DECODE_XML, "<a><b>"), -1);
	ASSERT_CONTAINS(err, "no element found");
	ASSERT_EQ(DEC(DECODE_XML, "<a/><b/>"), -1);
	ASSERT_CONTAINS(err, "junk after document element");
	ASSERT_EQ(DEC(DECODE_XML, "{\"json\": 1}"), -1);
	ASSERT_CONTAINS(err, "xml: line 1 column 1: ");
	ASSERT_EQ(DEC(DECODE_XML, "<!-- only a comment -->"), -1);
	ASSERT_CONTAINS(err, "no element found");
	ASSERT_EQ(lua_gettop(L), 0);
	lua_close(L);
}

TEST(decode_xml_depth_cap)
{
	lua_State *L = decode_t_state();
	char err[256], *s;
	int rc;

	s = decode_t_nest(DECODE_MAX_DEPTH, "<e>", "deep", "</e>");
	rc = DEC(DECODE_XML, s);
	free(s);
	ASSERT_EQ(rc, 0);
	ASSERT_STREQ(lrun(L, "local e, n = v, 1\n"
			     "while #e.children > 0 do e = e.children[1]; n = n + 1 end\n"
			     "return n .. e.text"),
		     "64deep");
	s = decode_t_nest(100000, "<e>", "", "</e>");
	rc = DEC(DECODE_XML, s);
	free(s);
	ASSERT_EQ(rc, -1);
	ASSERT_STREQ(err, "xml: line 1 column 193: elements nested deeper than 64 levels");
	lua_close(L);
}

TEST(decode_form_php_style)
{
	lua_State *L = decode_t_state();
	char err[256];

	ASSERT_EQ(DEC(DECODE_FORM, "a=1&b=2&c[]=3&c[]=4&d[x]=5"), 0);
	ASSERT_STREQ(lx(L, "v.a .. v.b"), "string:12");
	ASSERT_STREQ(lx(L, "#v.c .. v.c[1] .. v.c[2]"), "string:234");
	ASSERT_STREQ(lx(L, "v.d.x"), "string:5");
	ASSERT_STREQ(lx(L, "nkeys(v) + nkeys(v.d)"), "integer:5");
	ASSERT_EQ(DEC(DECODE_FORM, "x[y][z]=1&x[y][w]=2&x[y][]=3&o[1]=a&o[2]=b"), 0);
	ASSERT_STREQ(lx(L, "v.x.y.z .. v.x.y.w .. v.x.y[1]"), "string:123");
	ASSERT_STREQ(lx(L, "v.o['1'] .. v.o['2']"), "string:ab");
	lua_close(L);
}

TEST(decode_form_encoding)
{
	lua_State *L = decode_t_state();
	char err[256];

	ASSERT_EQ(DEC(DECODE_FORM, "name=John+Smith&city=%D0%9C%D0%BE%d1%81%D0%BA%D0%B2%D0%B0"
				   "&bad=%zz%4&pct=100%25&k%5B%5D=1&k%5b%5d=2&sp%20ace=%2B"),
		  0);
	ASSERT_STREQ(lx(L, "v.name"), "string:John Smith");
	ASSERT_STREQ(lx(L, "v.city"), "string:\xd0\x9c\xd0\xbe\xd1\x81\xd0\xba\xd0\xb2\xd0\xb0");
	ASSERT_STREQ(lx(L, "v.bad"), "string:%zz%4");
	ASSERT_STREQ(lx(L, "v.pct"), "string:100%");
	ASSERT_STREQ(lx(L, "#v.k .. v.k[1] .. v.k[2]"), "string:212");
	ASSERT_STREQ(lx(L, "v['sp ace']"), "string:+");
	lua_close(L);
}

TEST(decode_form_edges)
{
	lua_State *L = decode_t_state();
	char err[256], *s;
	int rc;

	ASSERT_EQ(DEC(DECODE_FORM, "a=1&a=2&&flag&=x&[y]=1&e=&eq=a=b&u[=3&s=1&s[]=2&t[]=1&t=9\r\n"),
		  0);
	ASSERT_STREQ(lx(L, "v.a"), "string:2");
	ASSERT_STREQ(lx(L, "v.flag"), "string:");
	ASSERT_STREQ(lx(L, "v.e"), "string:");
	ASSERT_STREQ(lx(L, "v.eq"), "string:a=b");
	ASSERT_STREQ(lx(L, "v['u[']"), "string:3");
	ASSERT_STREQ(lx(L, "type(v.s) .. v.s[1]"), "string:table2");
	ASSERT_STREQ(lx(L, "v.t"), "string:9");
	ASSERT_STREQ(lx(L, "nkeys(v)"), "integer:7");
	ASSERT_EQ(DEC(DECODE_FORM, "  \n"), 0);
	ASSERT_STREQ(lx(L, "type(v) .. nkeys(v)"), "string:table0");
	ASSERT_EQ(DEC(DECODE_FORM, "&&"), 0);
	ASSERT_STREQ(lx(L, "type(v) .. nkeys(v)"), "string:table0");
	s = decode_t_nest(DECODE_MAX_DEPTH, "[k]", "", "");
	rc = DEC(DECODE_FORM, "ok=1");
	ASSERT_EQ(rc, 0);
	{
		char line[400];

		snprintf(line, sizeof(line), "deep%s=1", s);
		ASSERT_EQ(DEC(DECODE_FORM, line), 0);
		ASSERT_STREQ(lrun(L, "local t, n = v.deep, 0\n"
				     "while type(t) == 'table' do t = t.k; n = n + 1 end\n"
				     "return n .. t"),
			     "641");
		snprintf(line, sizeof(line), "deep%s[k]=1", s);
		free(s);
		ASSERT_EQ(DEC(DECODE_FORM, line), -1);
		ASSERT_STREQ(err, "form: key 'deep' nested deeper than 64 levels");
	}
	lua_close(L);
}

TEST(decode_text_and_limits)
{
	lua_State *L = decode_t_state();
	char err[256];

	ASSERT_EQ(DEC(DECODE_TEXT, "  OK: 12 approved\n"), 0);
	ASSERT_STREQ(lx(L, "v"), "string:  OK: 12 approved\n");
	ASSERT_EQ(decode_t_run(L, DECODE_TEXT, "a\0b", 3, err, sizeof(err)), 0);
	ASSERT_STREQ(lx(L, "#v"), "integer:3");
	ASSERT_EQ(decode_t_run(L, DECODE_TEXT, "", 0, err, sizeof(err)), 0);
	ASSERT_STREQ(lx(L, "type(v)"), "string:table");
	ASSERT_EQ(decode_t_run(L, DECODE_XML, "<a/>", DECODE_MAX_BODY + 1, err, sizeof(err)), -1);
	ASSERT_STREQ(err, "xml: body of 268435457 bytes is over the 268435456 byte limit");
	ASSERT_EQ(decode_t_run(L, (enum decode_format)7, "x", 1, err, sizeof(err)), -1);
	ASSERT_STREQ(err, "decode: unknown format 7");
	lua_close(L);
}

/* ---- charsets -------------------------------------------------------- */

/* "Отмена Холд" in UTF-8 and in the single-byte charsets CRMs send */
#define T_UTF8 "\xd0\x9e\xd1\x82\xd0\xbc\xd0\xb5\xd0\xbd\xd0\xb0 \xd0\xa5\xd0\xbe\xd0\xbb\xd0\xb4"
#define T_CP1251 "\xce\xf2\xec\xe5\xed\xe0 \xd5\xee\xeb\xe4"
#define T_KOI8R "\xef\xd4\xcd\xc5\xce\xc1 \xe8\xcf\xcc\xc4"
#define T_CP866 "\x8e\xe2\xac\xa5\xad\xa0 \x95\xae\xab\xa4"
#define T_ISO5 "\xbe\xe2\xdc\xd5\xdd\xd0 \xc5\xde\xdb\xd4"

TEST(decode_charset_of_a_content_type)
{
	char cs[DECODE_CHARSET_MAX];

	ASSERT_EQ(decode_charset("application/json; charset=windows-1251", cs, sizeof(cs)), 1);
	ASSERT_STREQ(cs, "windows-1251");
	ASSERT_EQ(decode_charset("text/xml;charset=\"KOI8-R\"; q=1", cs, sizeof(cs)), 1);
	ASSERT_STREQ(cs, "KOI8-R");
	ASSERT_EQ(decode_charset("text/plain; format=flowed; Charset = cp866 ", cs, sizeof(cs)), 1);
	ASSERT_STREQ(cs, "cp866");
	ASSERT_EQ(decode_charset("application/json", cs, sizeof(cs)), 0);
	ASSERT_STREQ(cs, "");
	ASSERT_EQ(decode_charset("text/html; charsetx=utf-8", cs, sizeof(cs)), 0);
	ASSERT_EQ(decode_charset(NULL, cs, sizeof(cs)), 0);
	ASSERT_EQ(decode_charset("", cs, sizeof(cs)), 0);
	/* nothing but a charset name reaches iconv_open: no //IGNORE */
	ASSERT_EQ(decode_charset("text/plain; charset=cp1251//IGNORE", cs, sizeof(cs)), -1);
	ASSERT_EQ(decode_charset("text/plain; charset=", cs, sizeof(cs)), -1);
	ASSERT_EQ(decode_charset("text/plain; charset=\"utf-8", cs, sizeof(cs)), -1);
	ASSERT_EQ(decode_charset("text/plain; charset=windows-1251", cs, 8), -1);
}

TEST(decode_json_text_form_in_the_content_type_charset)
{
	lua_State *L = decode_t_state();
	char err[512];
	static const struct {
		const char *ct, *status;
	} t[] = {
		{ "application/json; charset=windows-1251", T_CP1251 },
		{ "application/json; charset=\"koi8-r\"", T_KOI8R },
		{ "application/json;charset=CP866", T_CP866 },
		{ "text/json; charset=iso-8859-5", T_ISO5 },
		{ "application/json; charset=utf-8", T_UTF8 },
		{ "application/json", T_UTF8 },
	};
	size_t i;
	char body[128];

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		snprintf(body, sizeof(body), "[{\"id\": \"A-1\", \"status\": \"%s\"}]", t[i].status);
		ASSERT_EQ(DECT(DECODE_JSON, t[i].ct, body), 0);
		ASSERT_STREQ(lx(L, "v[1].status"), "string:" T_UTF8);
		ASSERT_EQ(DECT(DECODE_TEXT, t[i].ct, t[i].status), 0);
		ASSERT_STREQ(lx(L, "v"), "string:" T_UTF8);
	}
	/* form: the charset applies to the bytes once %-decoded */
	ASSERT_EQ(DECT(DECODE_FORM, "application/x-www-form-urlencoded; charset=windows-1251",
		       "status=%CE%F2%EC%E5%ED%E0+\xd5\xee\xeb\xe4&%CA=1"),
		  0);
	ASSERT_STREQ(lx(L, "v.status"), "string:" T_UTF8);
	ASSERT_STREQ(lx(L, "v['\\xd0\\x9a']"), "string:1");
	/* utf-16 is a charset iconv knows too */
	ASSERT_EQ(decode_t_run_ct(L, DECODE_JSON, "application/json; charset=utf-16",
				  "\xff\xfe[\0\"\0\x1e\x04\"\0]\0", 12, err, sizeof(err)),
		  0);
	ASSERT_STREQ(lx(L, "v[1]"), "string:\xd0\x9e");
	lua_close(L);
}

TEST(decode_undeclared_non_utf8_is_an_error_that_says_where)
{
	lua_State *L = decode_t_state();
	char err[512];

	ASSERT_EQ(DEC(DECODE_JSON, "[{\"status\": \"" T_CP1251 "\"}]"), -1);
	ASSERT_CONTAINS(err, "json: not UTF-8 at byte 13 (0xce 0xf2 0xec 0xe5) and no charset "
			     "declared (no Content-Type)");
	ASSERT_CONTAINS(err, "charset=windows-1251");
	ASSERT_EQ(DECT(DECODE_JSON, "application/json", "{\"a\": \"\xff\"}"), -1);
	ASSERT_CONTAINS(err, "json: not UTF-8 at byte 7 (0xff 0x22 0x7d) and no charset declared "
			     "(Content-Type 'application/json')");
	ASSERT_EQ(DEC(DECODE_TEXT, "ok " T_KOI8R), -1);
	ASSERT_CONTAINS(err, "text: not UTF-8 at byte 3 (0xef 0xd4 0xcd 0xc5)");
	ASSERT_EQ(DEC(DECODE_FORM, "a=1&status=%CE%F2"), -1);
	ASSERT_CONTAINS(err, "form: not UTF-8 at byte 11 (0xce 0xf2)");
	/* declared UTF-8 but is not */
	ASSERT_EQ(DECT(DECODE_JSON, "application/json; charset=UTF-8", "[\"" T_CP1251 "\"]"), -1);
	ASSERT_STREQ(err, "json: byte 2 (0xce) is not UTF-8, the charset the Content-Type declares "
			  "('application/json; charset=UTF-8')");
	/* a byte windows-1251 does not define */
	ASSERT_EQ(DECT(DECODE_JSON, "application/json; charset=windows-1251", "[\"a\x98\"]"), -1);
	ASSERT_STREQ(err, "json: byte 3 (0x98) is not windows-1251");
	/* a charset nobody knows, and one that is not a name */
	ASSERT_EQ(DECT(DECODE_JSON, "application/json; charset=x-martian", "[]"), -1);
	ASSERT_STREQ(err, "json: unknown charset 'x-martian' (Content-Type 'application/json; "
			  "charset=x-martian')");
	ASSERT_EQ(DECT(DECODE_TEXT, "text/plain; charset=cp1251//TRANSLIT", "x"), -1);
	ASSERT_CONTAINS(err, "is not a charset name");
	ASSERT_EQ(lua_gettop(L), 0);
	lua_close(L);
}

TEST(decode_utf8_check_is_strict)
{
	lua_State *L = decode_t_state();
	char err[512];
	static const char *const bad[] = {
		"\"\xc0\x80\"",         /* overlong NUL */
		"\"\xe0\x80\xaf\"",     /* overlong '/' */
		"\"\xed\xa0\x80\"",     /* a surrogate */
		"\"\xf4\x90\x80\x80\"", /* above U+10FFFF */
		"\"\xf0\x9f\x98\"",     /* cut short */
		"\"\x80\"",             /* a lone continuation byte */
		"\"abcdefghijklmno\xfe\"", /* after a run of ASCII words */
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ASSERT_EQ(DEC(DECODE_JSON, bad[i]), -1);
		ASSERT_CONTAINS(err, "not UTF-8 at byte ");
	}
	ASSERT_EQ(DEC(DECODE_JSON, "\"abcdefghijklmno\xfe\""), -1);
	ASSERT_CONTAINS(err, "at byte 16 (0xfe 0x22)");
	ASSERT_EQ(DEC(DECODE_JSON, "\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80"
				   "\xf4\x8f\xbf\xbf 12345678\xd0\x96\""),
		  0);
	lua_close(L);
}

TEST(decode_xml_declared_single_byte_encodings)
{
	lua_State *L = decode_t_state();
	char err[512], body[256];
	static const struct {
		const char *enc, *text;
	} t[] = {
		{ "windows-1251", T_CP1251 },
		{ "koi8-r", T_KOI8R },
		{ "cp866", T_CP866 },
		{ "ISO-8859-5", T_ISO5 },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		snprintf(body, sizeof(body),
			 "<?xml version=\"1.0\" encoding=\"%s\"?>\n"
			 "<orders><order id=\"%s\"><status>%s</status></order></orders>",
			 t[i].enc, t[i].text, t[i].text);
		ASSERT_EQ(DEC(DECODE_XML, body), 0);
		ASSERT_STREQ(lx(L, "xfind(v, 'order').attr.id"), "string:" T_UTF8);
		ASSERT_STREQ(lx(L, "xfind(xfind(v, 'order'), 'status').text"), "string:" T_UTF8);
	}
	/* a byte the charset leaves undefined is an error where it stands */
	ASSERT_EQ(DEC(DECODE_XML, "<?xml version=\"1.0\" encoding=\"windows-1251\"?>\n<a>\x98</a>"),
		  -1);
	ASSERT_CONTAINS(err, "xml: line 2 column 4: ");
	ASSERT_EQ(DEC(DECODE_XML, "<?xml version=\"1.0\" encoding=\"x-martian\"?><a/>"), -1);
	ASSERT_STREQ(err, "xml: line 1 column 31: unknown encoding: 'x-martian' is not a charset "
			  "iconv knows");
	ASSERT_EQ(DEC(DECODE_XML, "<?xml version=\"1.0\" encoding=\"Shift_JIS\"?><a/>"), -1);
	ASSERT_CONTAINS(err, "'Shift_JIS' is a multi-byte charset");
	/* undeclared and not UTF-8: says so */
	ASSERT_EQ(DEC(DECODE_XML, "<a>" T_CP1251 "</a>"), -1);
	ASSERT_CONTAINS(err, "not UTF-8, and neither the Content-Type nor the XML declaration names "
			     "a charset");
	lua_close(L);
}

TEST(decode_xml_content_type_charset_wins_over_the_declaration)
{
	lua_State *L = decode_t_state();
	char err[512];

	/* RFC 7303: the HTTP charset is authoritative */
	ASSERT_EQ(DECT(DECODE_XML, "text/xml; charset=koi8-r",
		       "<?xml version=\"1.0\" encoding=\"windows-1251\"?><a>" T_KOI8R "</a>"),
		  0);
	ASSERT_STREQ(lx(L, "v.text"), "string:" T_UTF8);
	ASSERT_EQ(DECT(DECODE_XML, "application/xml; charset=windows-1251", "<a>" T_CP1251 "</a>"),
		  0);
	ASSERT_STREQ(lx(L, "v.text"), "string:" T_UTF8);
	ASSERT_EQ(DECT(DECODE_XML, "text/xml; charset=utf-8",
		       "<?xml version=\"1.0\" encoding=\"windows-1251\"?><a>" T_UTF8 "</a>"),
		  0);
	ASSERT_STREQ(lx(L, "v.text"), "string:" T_UTF8);
	/* a server that labels every answer utf-8: the error says why */
	ASSERT_EQ(DECT(DECODE_XML, "text/xml; charset=utf-8",
		       "<?xml version=\"1.0\" encoding=\"windows-1251\"?><a>" T_CP1251 "</a>"),
		  -1);
	ASSERT_CONTAINS(err, "(read as utf-8, the Content-Type charset, which overrides the "
			     "declared encoding 'windows-1251')");
	/* no charset in the Content-Type: the declaration decides */
	ASSERT_EQ(DECT(DECODE_XML, "text/xml",
		       "<?xml version=\"1.0\" encoding=\"windows-1251\"?><a>" T_CP1251 "</a>"),
		  0);
	ASSERT_STREQ(lx(L, "v.text"), "string:" T_UTF8);
	ASSERT_EQ(DECT(DECODE_XML, "text/xml; charset=x-martian", "<a/>"), -1);
	ASSERT_CONTAINS(err, "unknown charset 'x-martian'");
	lua_close(L);
}

TEST(decode_conversion_is_under_the_memory_cap)
{
	struct lua_cap cap = { 0, (size_t)1 << 20 };
	lua_State *L = lua_newstate(lua_cap_alloc, &cap);
	char err[512], *s;
	size_t n = 2 << 20, used;
	int rc;

	ASSERT(L);
	used = cap.used;
	s = malloc(n);
	memset(s, 0xce, n); /* 2 MB of windows-1251 'О': 4 MB of UTF-8 */
	rc = decode_t_run_ct(L, DECODE_TEXT, "text/plain; charset=windows-1251", s, n, err,
			     sizeof(err));
	free(s);
	ASSERT_EQ(rc, -1);
	ASSERT_STREQ(err, "text: not enough memory to convert from windows-1251");
	ASSERT_EQ(cap.used, used);
	lua_close(L);
}
