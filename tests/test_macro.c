/* test_macro: macro expansion in URLs, data fields and headers, and the
 * dates variant's values across time zones, DST changes and year ends. */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>

#include "buf.h"
#include "macro.h"
#include "tz.h"

static const int64_t macro_t_ids[] = { 1001, 1002, 1003, 1004 };
static const char *const macro_t_exts[] = { "A&1", "b c", "x/y", "Заказ-7" };
static const struct macro_param macro_t_params[] = {
	{ "host", "127.0.0.1:9001" },
	{ "key", "s3 cr+t/=" },
	{ "apiKey", "K" },
};

static struct macro_ctx macro_t_ids_ctx(void)
{
	struct macro_ctx c = { "processing", macro_t_ids, macro_t_exts, 4, NULL,
			       macro_t_params, 3 };

	return c;
}

/* Expands tmpl into a fresh buffer; returns the malloc'd text, or NULL
 * with err set. */
static char *macro_t_run(const struct macro_ctx *c, const char *tmpl, enum macro_mode m, char *err,
			 size_t errlen)
{
	struct buf b;

	buf_init(&b, 0);
	if (macro_expand(c, tmpl, m, &b, err, errlen) < 0) {
		buf_release(&b);
		return NULL;
	}
	return buf_steal(&b);
}

/* ASSERT_STREQ on an expansion, freeing it either way. */
#define ASSERT_EXPANDS(c, tmpl, m, want)                                     \
	do {                                                                 \
		char err_[256] = "", *got_ = macro_t_run((c), (tmpl), (m), err_, sizeof(err_)); \
		int same_ = got_ && strcmp(got_, (want)) == 0;               \
		if (!same_)                                                  \
			test__fail(__FILE__, __LINE__, "%s: got \"%s\" (%s), want \"%s\"", \
				   (tmpl), got_ ? got_ : "(null)", err_, (want)); \
		free(got_);                                                  \
		if (!same_)                                                  \
			return;                                              \
	} while (0)

/* Expansion must fail with exactly this message. */
#define ASSERT_EXPAND_FAILS(c, tmpl, m, want)                                \
	do {                                                                 \
		char err_[256] = "", *got_ = macro_t_run((c), (tmpl), (m), err_, sizeof(err_)); \
		int ok_ = !got_ && strcmp(err_, (want)) == 0;                \
		if (!ok_)                                                    \
			test__fail(__FILE__, __LINE__, "%s: got \"%s\" err \"%s\", want \"%s\"", \
				   (tmpl), got_ ? got_ : "(null)", err_, (want)); \
		free(got_);                                                  \
		if (!ok_)                                                    \
			return;                                              \
	} while (0)

TEST(macro_ids_in_url_are_encoded_one_by_one)
{
	struct macro_ctx c = macro_t_ids_ctx();

	ASSERT_EXPANDS(&c, "http://{host}/api/orders?ids={idsl}&ext={idel}&key={key}", MACRO_URL,
		       "http://127.0.0.1:9001/api/orders?ids=1001,1002,1003,1004"
		       "&ext=A%261,b%20c,x%2Fy,%D0%97%D0%B0%D0%BA%D0%B0%D0%B7-7"
		       "&key=s3%20cr%2Bt%2F%3D");
	/* ids in the path are encoded too, '/' included */
	ASSERT_EXPANDS(&c, "https://crm/orders/{idel}", MACRO_URL,
		       "https://crm/orders/A%261,b%20c,x%2Fy,%D0%97%D0%B0%D0%BA%D0%B0%D0%B7-7");
	/* outside a whole data field, {ids}/{ide} join like {idsl}/{idel} */
	ASSERT_EXPANDS(&c, "?a={ids}&b={ide}", MACRO_URL,
		       "?a=1001,1002,1003,1004"
		       "&b=A%261,b%20c,x%2Fy,%D0%97%D0%B0%D0%BA%D0%B0%D0%B7-7");
}

TEST(macro_ids_raw_are_as_given)
{
	struct macro_ctx c = macro_t_ids_ctx();

	ASSERT_EXPANDS(&c, "{idsl}|{idel}|{ids}|{ide}|{key}|{host}", MACRO_RAW,
		       "1001,1002,1003,1004|A&1,b c,x/y,Заказ-7|1001,1002,1003,1004|"
		       "A&1,b c,x/y,Заказ-7|s3 cr+t/=|127.0.0.1:9001");
	ASSERT_EXPANDS(&c, "Bearer {key}", MACRO_HEADER, "Bearer s3 cr+t/=");
}

TEST(macro_empty_and_missing_ids)
{
	const int64_t one[] = { -5 };
	struct macro_ctx c = { "accepted", one, NULL, 1, NULL, NULL, 0 };

	ASSERT_EXPANDS(&c, "i={idsl}&e={idel}", MACRO_URL, "i=-5&e=");
	c.n = 0;
	ASSERT_EXPANDS(&c, "i={idsl}&e={idel}", MACRO_URL, "i=&e=");
}

TEST(macro_field_array_only_whole_value)
{
	ASSERT_EQ(macro_field_array("{ids}"), MACRO_ARRAY_IDS);
	ASSERT_EQ(macro_field_array("{ide}"), MACRO_ARRAY_EXT);
	ASSERT_EQ(macro_field_array(" {ids}"), MACRO_ARRAY_NONE);
	ASSERT_EQ(macro_field_array("{ids},"), MACRO_ARRAY_NONE);
	ASSERT_EQ(macro_field_array("{idsl}"), MACRO_ARRAY_NONE);
	ASSERT_EQ(macro_field_array("{IDS}"), MACRO_ARRAY_NONE);
	ASSERT_EQ(macro_field_array(""), MACRO_ARRAY_NONE);
}

TEST(macro_params_in_url_path_keep_structure)
{
	const struct macro_param p[] = {
		{ "base", "https://crm.example/api v2/orders?token=a b" },
		{ "key", "k&=1" },
		{ "path", "shop/заказы" },
		{ "empty", NULL },
	};
	struct macro_ctx c = { "processing", macro_t_ids, macro_t_exts, 1, NULL, p, 4 };

	/* before '?' a param is URL text: only space and non-ASCII are
	 * encoded; the '?' it brings starts the query for what follows */
	ASSERT_EXPANDS(&c, "{base}&k={key}&ids={idsl}", MACRO_URL,
		       "https://crm.example/api%20v2/orders?token=a%20b&k=k%26%3D1&ids=1001");
	ASSERT_EXPANDS(&c, "http://h/{path}/{key}?k={key}#{key}{empty}", MACRO_URL,
		       "http://h/shop/%D0%B7%D0%B0%D0%BA%D0%B0%D0%B7%D1%8B/k&=1"
		       "?k=k%26%3D1#k%26%3D1");
}

TEST(macro_params_case_sensitive_names)
{
	struct macro_ctx c = macro_t_ids_ctx();

	ASSERT_EXPANDS(&c, "X-Key: {apiKey}", MACRO_HEADER, "X-Key: K");
	ASSERT_EXPAND_FAILS(&c, "{apikey}", MACRO_RAW, "unknown macro '{apikey}'");
	ASSERT_EXPAND_FAILS(&c, "{IDSL}", MACRO_RAW, "unknown macro '{IDSL}'");
}

TEST(macro_header_refuses_line_breaks)
{
	const struct macro_param p[] = { { "key", "abc\r\nX-Evil: 1" } };
	struct macro_ctx c = { "processing", macro_t_ids, macro_t_exts, 1, NULL, p, 1 };

	ASSERT_EXPAND_FAILS(&c, "Bearer {key}", MACRO_HEADER,
			    "macro '{key}' expands to a line break, not allowed in a header");
	ASSERT_EXPAND_FAILS(&c, "a\nb", MACRO_HEADER, "header template holds a line break");
	/* data fields may hold anything */
	ASSERT_EXPANDS(&c, "{key}", MACRO_RAW, "abc\r\nX-Evil: 1");
	ASSERT_EXPANDS(&c, "?k={key}", MACRO_URL, "?k=abc%0D%0AX-Evil%3A%201");
	ASSERT_EXPANDS(&c, "/{key}", MACRO_URL, "/abc%0D%0AX-Evil:%201");
}

TEST(macro_unknown_is_an_error_and_leaves_output)
{
	struct macro_ctx c = macro_t_ids_ctx();
	struct buf b;
	char err[128];

	ASSERT_EXPAND_FAILS(&c, "?ids={idz}", MACRO_URL, "unknown macro '{idz}'");
	buf_init(&b, 0);
	ASSERT_EQ(buf_adds(&b, "kept"), 0);
	ASSERT_EQ(macro_expand(&c, "{idsl} and {nope}", MACRO_RAW, &b, err, sizeof(err)), -1);
	ASSERT_STREQ(err, "unknown macro '{nope}'");
	ASSERT_EQ(b.len, 4);
	ASSERT_STREQ(b.p, "kept");
	ASSERT_EQ(macro_expand(&c, "+{idsl}", MACRO_RAW, &b, err, sizeof(err)), 0);
	ASSERT_STREQ(b.p, "kept+1001,1002,1003,1004");
	buf_release(&b);
}

TEST(macro_output_limit)
{
	struct macro_ctx c = macro_t_ids_ctx();
	struct buf b;
	char err[128];

	buf_init(&b, 16);
	ASSERT_EQ(macro_expand(&c, "ok", MACRO_RAW, &b, err, sizeof(err)), 0);
	ASSERT_EQ(macro_expand(&c, "{idel}", MACRO_URL, &b, err, sizeof(err)), -1);
	ASSERT_STREQ(err, "expanded text exceeds 16 bytes");
	ASSERT_STREQ(b.p, "ok");
	buf_release(&b);
}

TEST(macro_wrong_variant_names_it)
{
	struct macro_ctx c = macro_t_ids_ctx();
	struct macro_dates d;
	char err[128];

	ASSERT_EXPAND_FAILS(&c, "?d={from}", MACRO_URL,
			    "macro '{from}' is only for the dates variant, not 'processing'");
	c.variant = NULL;
	ASSERT_EXPAND_FAILS(&c, "{utom}", MACRO_RAW,
			    "macro '{utom}' is only for the dates variant");
	ASSERT_EQ(macro_dates_compute(NULL, (struct macro_civil){ 2026, 3, 1 },
				      (struct macro_civil){ 2026, 3, 1 }, &d, err, sizeof(err)), 0);
	c.variant = "dates";
	c.dates = &d;
	ASSERT_EXPAND_FAILS(&c, "{idsl}", MACRO_RAW,
			    "macro '{idsl}' is only for the processing and accepted variants, "
			    "not 'dates'");
	ASSERT_EXPAND_FAILS(&c, "{ids}", MACRO_RAW,
			    "macro '{ids}' is only for the processing and accepted variants, "
			    "not 'dates'");
	/* params are there in every variant */
	ASSERT_EXPANDS(&c, "{host}/{from}", MACRO_RAW, "127.0.0.1:9001/2026-03-01");
}

TEST(macro_json_and_stray_braces_pass_through)
{
	struct macro_ctx c = macro_t_ids_ctx();

	c.n = 2;
	ASSERT_EXPANDS(&c, "{\"a\":1,\"ids\":[{idsl}],\"b\":{\"k\":\"{key}\"}}", MACRO_RAW,
		       "{\"a\":1,\"ids\":[1001,1002],\"b\":{\"k\":\"s3 cr+t/=\"}}");
	ASSERT_EXPANDS(&c, "{{idsl}}", MACRO_RAW, "{1001,1002}");
	ASSERT_EXPANDS(&c, "{} { x } {1abc} {a-b} {idsl {key", MACRO_RAW,
		       "{} { x } {1abc} {a-b} {idsl {key");
	ASSERT_EXPANDS(&c, "end {", MACRO_RAW, "end {");
	ASSERT_EXPANDS(&c, "{", MACRO_RAW, "{");
	ASSERT_EXPANDS(&c, "", MACRO_RAW, "");
	/* literal braces in a URL stay literal text (not encoded) */
	ASSERT_EXPANDS(&c, "?q={\"x\":{idsl}}", MACRO_URL, "?q={\"x\":1001,1002}");
}

TEST(macro_check_without_output)
{
	struct macro_ctx c = macro_t_ids_ctx();
	char err[128];

	c.n = 0;
	ASSERT_EQ(macro_check(&c, "http://{host}/x?ids={idsl}&k={key}", MACRO_URL, err,
			      sizeof(err)), 0);
	ASSERT_EQ(macro_check(&c, "{fto}", MACRO_URL, err, sizeof(err)), -1);
	ASSERT_STREQ(err, "macro '{fto}' is only for the dates variant, not 'processing'");
	ASSERT_EQ(macro_check(&c, "{x}", MACRO_RAW, err, sizeof(err)), -1);
	ASSERT_STREQ(err, "unknown macro '{x}'");
}

TEST(macro_check_params_rules)
{
	const struct macro_param good[] = { { "host", "h" }, { "key", NULL }, { "api_Key2", "" } };
	const struct macro_param shadow[] = { { "host", "h" }, { "from", "x" } };
	const struct macro_param twice[] = { { "key", "a" }, { "key", "b" } };
	const struct macro_param badname[] = { { "api-key", "a" } };
	const struct macro_param digit[] = { { "2fa", "a" } };
	const struct macro_param empty[] = { { "", "a" } };
	char err[128];

	ASSERT_EQ(macro_check_params(good, 3, err, sizeof(err)), 0);
	ASSERT_EQ(macro_check_params(NULL, 0, err, sizeof(err)), 0);
	ASSERT_EQ(macro_check_params(shadow, 2, err, sizeof(err)), -1);
	ASSERT_STREQ(err, "param 'from' shadows the built-in macro '{from}'");
	ASSERT_EQ(macro_check_params(twice, 2, err, sizeof(err)), -1);
	ASSERT_STREQ(err, "param 'key' is given twice");
	ASSERT_EQ(macro_check_params(badname, 1, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "param 'api-key' is not a macro name");
	ASSERT_EQ(macro_check_params(digit, 1, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "param '2fa' is not a macro name");
	ASSERT_EQ(macro_check_params(empty, 1, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "param '' is not a macro name");
}

TEST(macro_builtin_wins_over_param)
{
	const struct macro_param p[] = { { "idsl", "shadow" } };
	struct macro_ctx c = { "processing", macro_t_ids, macro_t_exts, 2, NULL, p, 1 };

	ASSERT_EXPANDS(&c, "{idsl}", MACRO_RAW, "1001,1002");
}

static int macro_t_dates(const char *tz, int fy, int fm, int fd, int ty, int tm, int td,
			 struct macro_dates *d, char *err, size_t errlen)
{
	struct macro_civil from = { fy, fm, fd }, to = { ty, tm, td };

	return macro_dates_compute(tz, from, to, d, err, errlen);
}

TEST(macro_dates_utc_all_macros)
{
	struct macro_dates d;
	struct macro_ctx c = { "dates", NULL, NULL, 0, &d, macro_t_params, 3 };
	char err[128];

	ASSERT_EQ(macro_t_dates(NULL, 2026, 3, 1, 2026, 3, 7, &d, err, sizeof(err)), 0);
	ASSERT_STREQ(d.from, "2026-03-01");
	ASSERT_STREQ(d.to, "2026-03-07");
	ASSERT_STREQ(d.ffrom, "2026-03-01 00:00:00");
	ASSERT_STREQ(d.fto, "2026-03-07 23:59:59");
	ASSERT_STREQ(d.ufrom, "1772323200");
	ASSERT_STREQ(d.uto, "1772927999");
	ASSERT_STREQ(d.tom, "2026-03-08");
	ASSERT_STREQ(d.ftom, "2026-03-08 00:00:00");
	ASSERT_STREQ(d.utom, "1772928000");
	ASSERT_EQ(d.t_from, 1772323200);
	ASSERT_EQ(d.t_to, 1772927999);
	ASSERT_EQ(d.t_tom, 1772928000);
	ASSERT_EXPANDS(&c, "{from}|{to}|{ffrom}|{fto}|{ufrom}|{uto}|{tom}|{ftom}|{utom}", MACRO_RAW,
		       "2026-03-01|2026-03-07|2026-03-01 00:00:00|2026-03-07 23:59:59|"
		       "1772323200|1772927999|2026-03-08|2026-03-08 00:00:00|1772928000");
	ASSERT_EXPANDS(&c,
		       "http://{host}/o?from={from}&to={to}&ff={ffrom}&ft={fto}&uf={ufrom}"
		       "&ut={uto}&tom={tom}&ftom={ftom}&utom={utom}&key={key}",
		       MACRO_URL,
		       "http://127.0.0.1:9001/o?from=2026-03-01&to=2026-03-07"
		       "&ff=2026-03-01%2000%3A00%3A00&ft=2026-03-07%2023%3A59%3A59"
		       "&uf=1772323200&ut=1772927999&tom=2026-03-08"
		       "&ftom=2026-03-08%2000%3A00%3A00&utom=1772928000&key=s3%20cr%2Bt%2F%3D");
	ASSERT_EXPANDS(&c, "{\"from\":\"{ffrom}\",\"to\":{uto}}", MACRO_RAW,
		       "{\"from\":\"2026-03-01 00:00:00\",\"to\":1772927999}");
	/* "" is UTC too */
	ASSERT_EQ(macro_t_dates("", 2026, 3, 1, 2026, 3, 1, &d, err, sizeof(err)), 0);
	ASSERT_STREQ(d.uto, "1772409599");
}

TEST(macro_dates_moscow)
{
	struct macro_dates d;
	char err[128];

	ASSERT_EQ(macro_t_dates("Europe/Moscow", 2026, 6, 15, 2026, 6, 15, &d, err, sizeof(err)),
		  0);
	ASSERT_STREQ(d.from, "2026-06-15");
	ASSERT_STREQ(d.fto, "2026-06-15 23:59:59");
	ASSERT_STREQ(d.ufrom, "1781470800");
	ASSERT_STREQ(d.uto, "1781557199");
	ASSERT_STREQ(d.tom, "2026-06-16");
	ASSERT_STREQ(d.utom, "1781557200");
	tz_restore();
}

TEST(macro_dates_new_york_dst_changes)
{
	struct macro_dates d;
	char err[128];

	/* 23-hour day */
	ASSERT_EQ(macro_t_dates("America/New_York", 2026, 3, 8, 2026, 3, 8, &d, err, sizeof(err)),
		  0);
	ASSERT_STREQ(d.ufrom, "1772946000");
	ASSERT_STREQ(d.uto, "1773028799");
	ASSERT_STREQ(d.utom, "1773028800");
	ASSERT_EQ(d.t_tom - d.t_from, 23 * 3600);
	ASSERT_STREQ(d.fto, "2026-03-08 23:59:59");
	ASSERT_STREQ(d.ftom, "2026-03-09 00:00:00");
	/* 25-hour day */
	ASSERT_EQ(macro_t_dates("America/New_York", 2026, 11, 1, 2026, 11, 1, &d, err, sizeof(err)),
		  0);
	ASSERT_STREQ(d.ufrom, "1793505600");
	ASSERT_STREQ(d.uto, "1793595599");
	ASSERT_STREQ(d.utom, "1793595600");
	ASSERT_EQ(d.t_tom - d.t_from, 25 * 3600);
	/* a range across the autumn change */
	ASSERT_EQ(macro_t_dates("America/New_York", 2026, 10, 31, 2026, 11, 1, &d, err,
				sizeof(err)), 0);
	ASSERT_EQ(d.t_tom - d.t_from, 49 * 3600);
	tz_restore();
}

TEST(macro_dates_month_and_year_ends)
{
	static const struct {
		int y, m, d;
		const char *tom;
	} cases[] = {
		{ 2026, 12, 31, "2027-01-01" }, { 2028, 2, 28, "2028-02-29" },
		{ 2028, 2, 29, "2028-03-01" },  { 2026, 2, 28, "2026-03-01" },
		{ 2026, 4, 30, "2026-05-01" },  { 2100, 2, 28, "2100-03-01" },
		{ 2000, 2, 28, "2000-02-29" },
	};
	struct macro_dates d;
	char err[128];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ASSERT_EQ(macro_t_dates("UTC", cases[i].y, cases[i].m, 1, cases[i].y, cases[i].m,
					cases[i].d, &d, err, sizeof(err)), 0);
		ASSERT_STREQ(d.tom, cases[i].tom);
	}
	ASSERT_EQ(macro_t_dates("America/New_York", 2026, 12, 31, 2026, 12, 31, &d, err,
				sizeof(err)), 0);
	ASSERT_STREQ(d.tom, "2027-01-01");
	ASSERT_STREQ(d.ftom, "2027-01-01 00:00:00");
	ASSERT_STREQ(d.utom, "1798779600");
	ASSERT_STREQ(d.uto, "1798779599");
	ASSERT_EQ(macro_t_dates("UTC", 2028, 2, 29, 2028, 2, 29, &d, err, sizeof(err)), 0);
	ASSERT_STREQ(d.from, "2028-02-29");
	ASSERT_STREQ(d.ffrom, "2028-02-29 00:00:00");
	ASSERT_STREQ(d.ftom, "2028-03-01 00:00:00");
	tz_restore();
}

TEST(macro_dates_errors)
{
	struct macro_dates d;
	char err[128];

	ASSERT_EQ(macro_t_dates("UTC", 2026, 2, 29, 2026, 3, 1, &d, err, sizeof(err)), -1);
	ASSERT_STREQ(err, "bad date 2026-02-29");
	ASSERT_EQ(macro_t_dates("UTC", 2026, 3, 1, 2026, 13, 1, &d, err, sizeof(err)), -1);
	ASSERT_STREQ(err, "bad date 2026-13-01");
	ASSERT_EQ(macro_t_dates("UTC", 2026, 3, 9, 2026, 3, 8, &d, err, sizeof(err)), -1);
	ASSERT_STREQ(err, "date range 2026-03-09..2026-03-08 is backwards");
	ASSERT_EQ(macro_t_dates("UTC", 9999, 12, 1, 9999, 12, 31, &d, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "too late");
	ASSERT_EQ(macro_t_dates("UTC", 999, 12, 1, 2000, 1, 1, &d, err, sizeof(err)), -1);
	ASSERT_STREQ(err, "bad date 0999-12-01");
	ASSERT_EQ(macro_t_dates("Mars/Base", 2026, 3, 1, 2026, 3, 1, &d, err, sizeof(err)), -1);
	ASSERT_STREQ(err, "unknown time zone 'Mars/Base'");
	ASSERT_EQ(macro_t_dates("../etc/passwd", 2026, 3, 1, 2026, 3, 1, &d, err, sizeof(err)), -1);
	ASSERT_STREQ(err, "time zone '../etc/passwd': not a valid zone name");
}

/* macro_each collects "kind:name=value;" into a buf. */
struct macro_t_acc {
	struct buf b;
	int stop_after; /* stop with 7 after this many calls; 0: never */
	int calls;
};

static int macro_t_collect(void *ud, enum macro_kind kind, const char *name, const char *value,
			   size_t len)
{
	struct macro_t_acc *a = ud;

	if (strlen(value) != len || buf_addf(&a->b, "%d:%s=%s;", (int)kind, name, value) < 0)
		return -2;
	a->calls++;
	return a->stop_after && a->calls >= a->stop_after ? 7 : 0;
}

TEST(macro_each_lists_variables)
{
	struct macro_ctx c = macro_t_ids_ctx();
	struct macro_dates d;
	struct macro_t_acc a = { .stop_after = 0 };
	char err[128];
	int rc;

	buf_init(&a.b, 0);
	c.n = 2;
	rc = macro_each(&c, macro_t_collect, &a);
	ASSERT_EQ(rc, 0);
	ASSERT_STREQ(a.b.p, "0:idsl=1001,1002;0:idel=A&1,b c;"
			    "2:host=127.0.0.1:9001;2:key=s3 cr+t/=;2:apiKey=K;");
	buf_reset(&a.b);
	ASSERT_EQ(macro_t_dates("Europe/Moscow", 2026, 6, 15, 2026, 6, 16, &d, err, sizeof(err)),
		  0);
	c.dates = &d;
	c.nparams = 0;
	rc = macro_each(&c, macro_t_collect, &a);
	ASSERT_EQ(rc, 0);
	ASSERT_STREQ(a.b.p, "1:from=2026-06-15;1:to=2026-06-16;1:ffrom=2026-06-15 00:00:00;"
			    "1:fto=2026-06-16 23:59:59;1:ufrom=1781470800;1:uto=1781643599;"
			    "1:tom=2026-06-17;1:ftom=2026-06-17 00:00:00;1:utom=1781643600;");
	buf_reset(&a.b);
	a.stop_after = 2;
	a.calls = 0;
	rc = macro_each(&c, macro_t_collect, &a);
	ASSERT_EQ(rc, 7);
	ASSERT_EQ(a.calls, 2);
	/* an empty id list still yields its (empty) variables */
	buf_reset(&a.b);
	a.stop_after = 0;
	c.dates = NULL;
	c.n = 0;
	rc = macro_each(&c, macro_t_collect, &a);
	ASSERT_EQ(rc, 0);
	ASSERT_STREQ(a.b.p, "0:idsl=;0:idel=;");
	buf_release(&a.b);
	tz_restore();
}
