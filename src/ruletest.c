/* ruletest: a rule run offline on files, for `leadsync rule test`. */
#include "ruletest.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "lead.h"
#include "macro.h"
#include "status.h"
#include "tz.h"

#define RULETEST_FILE_MAX ((size_t)256 << 20)
#define RULETEST_LEADS_MAX 100000

/* Common ISO 4217 codes and numbers, for runs without a "currencies" list
 * (the database seeds the same numbers in migrations/001_schema.sql). */
static const struct rule_currency ruletest_currencies[] = {
	{ "USD", 840 }, { "EUR", 978 }, { "RUB", 643 }, { "UAH", 980 }, { "KZT", 398 },
	{ "BYN", 933 }, { "GBP", 826 }, { "PLN", 985 }, { "TRY", 949 }, { "INR", 356 },
	{ "BRL", 986 }, { "MXN", 484 }, { "IDR", 360 }, { "THB", 764 }, { "VND", 704 },
	{ "PHP", 608 }, { "CNY", 156 }, { "JPY", 392 }, { "KRW", 410 }, { "UZS", 860 },
	{ "KGS", 417 }, { "AZN", 944 }, { "GEL", 981 }, { "AMD", 51 }, { "MDL", 498 },
	{ "RON", 946 }, { "BGN", 975 }, { "CZK", 203 }, { "HUF", 348 }, { "CHF", 756 },
};

struct ruletest {
	const struct ruletest_opts *o;
	cJSON *leads_doc, *params_doc;
	struct lead *leads;
	size_t nleads;
	struct rule_goal *goals;
	size_t ngoals;
	struct rule_currency *currs;
	size_t ncurrs;
	struct macro_param *params;
	size_t nparams;
	struct macro_dates dates;
	struct status_words *words; /* the offer's status_words; NULL: none */
	struct rule_batch batch;
	char tz[TZ_NAME_MAX + 1];
	struct rule_rt *rt;
	struct rule_request req;
	struct rule_result res;
	struct buf body;
	cJSON *report; /* json mode */
};

static int read_file(const char *path, struct buf *b, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char tmp[65536];
	size_t n;
	int rc = 0;

	buf_reset(b);
	if (!f) {
		snprintf(err, errlen, "cannot open '%s': %s", path, strerror(errno));
		return -1;
	}
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		if (buf_add(b, tmp, n) < 0) {
			snprintf(err, errlen, "'%s' is larger than %zu bytes", path, b->max);
			rc = -1;
			break;
		}
	if (rc == 0 && ferror(f)) {
		snprintf(err, errlen, "cannot read '%s': %s", path, strerror(errno));
		rc = -1;
	}
	fclose(f);
	return rc;
}

/* Money from a JSON number or decimal string, in hundredths. */
static int json_money(const cJSON *v, int64_t *out)
{
	char tmp[64];

	if (cJSON_IsString(v))
		return lead_money_parse(v->valuestring, out);
	if (!cJSON_IsNumber(v))
		return -1;
	snprintf(tmp, sizeof(tmp), "%.2f", v->valuedouble);
	return lead_money_parse(tmp, out);
}

static int json_int(const cJSON *v, int64_t min, int64_t max, int64_t *out)
{
	if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int64_t)v->valuedouble ||
	    v->valuedouble < (double)min || v->valuedouble > (double)max)
		return -1;
	*out = (int64_t)v->valuedouble;
	return 0;
}

static int json_time(const cJSON *v, int64_t *out)
{
	if (cJSON_IsNull(v)) {
		*out = 0;
		return 0;
	}
	if (cJSON_IsNumber(v))
		return json_int(v, 0, INT64_C(253402300799), out);
	return cJSON_IsString(v) ? lead_time_parse(v->valuestring, out) : -1;
}

static int currency_by_iso(const struct ruletest *t, const char *iso)
{
	size_t i;

	for (i = 0; i < t->ncurrs; i++)
		if (strcasecmp(t->currs[i].iso, iso) == 0)
			return t->currs[i].id;
	return 0;
}

static int load_goals(struct ruletest *t, const cJSON *goals, int64_t offer, char *err,
		      size_t errlen)
{
	static const char *const kinds[] = { "fixed", "percent", "recurring" };
	size_t n = goals ? (size_t)cJSON_GetArraySize(goals) : 0, i = 0;
	const cJSON *g;

	if (goals && !cJSON_IsArray(goals)) {
		snprintf(err, errlen, "\"goals\" is not an array");
		return -1;
	}
	t->goals = calloc(n ? n : 1, sizeof(*t->goals));
	if (!t->goals) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (!goals) {
		t->goals[0].offer = offer;
		t->goals[0].code = "lead";
		t->goals[0].goal.id = 1;
		t->ngoals = 1;
		return 0;
	}
	cJSON_ArrayForEach(g, goals) {
		struct rule_goal *rg = &t->goals[i];
		const cJSON *code = cJSON_GetObjectItemCaseSensitive(g, "code");
		const cJSON *payout = cJSON_GetObjectItemCaseSensitive(g, "payout");
		const cJSON *curr = cJSON_GetObjectItemCaseSensitive(g, "currency");
		const char *amount[3] = { "wm", "pay", "ref" };
		int64_t *dst[3] = { &rg->goal.wm, &rg->goal.pay, &rg->goal.ref };
		size_t k;

		if (!cJSON_IsString(code)) {
			snprintf(err, errlen, "goal %zu: \"code\" must be a string", i + 1);
			return -1;
		}
		rg->offer = offer;
		rg->code = code->valuestring;
		rg->goal.id = (int64_t)i + 1;
		rg->goal.payout = PAYOUT_FIXED;
		if (cJSON_IsString(payout)) {
			for (k = 0; k < 3 && strcmp(payout->valuestring, kinds[k]) != 0; k++)
				;
			if (k == 3) {
				snprintf(err, errlen, "goal '%s': payout '%s' is not fixed, percent or recurring",
					 rg->code, payout->valuestring);
				return -1;
			}
			rg->goal.payout = (enum goal_payout)k;
		}
		for (k = 0; k < 3; k++) {
			const cJSON *v = cJSON_GetObjectItemCaseSensitive(g, amount[k]);

			if (v && json_money(v, dst[k]) < 0) {
				snprintf(err, errlen, "goal '%s': \"%s\" is not an amount", rg->code, amount[k]);
				return -1;
			}
		}
		if (cJSON_IsString(curr) && !(rg->goal.curr = currency_by_iso(t, curr->valuestring))) {
			snprintf(err, errlen, "goal '%s': unknown currency '%s'", rg->code, curr->valuestring);
			return -1;
		}
		i++;
	}
	t->ngoals = i;
	return 0;
}

static int64_t goal_by_code(const struct ruletest *t, const char *code)
{
	size_t i;

	for (i = 0; i < t->ngoals; i++)
		if (strcmp(t->goals[i].code, code) == 0)
			return t->goals[i].goal.id;
	return 0;
}

static int load_lead(struct ruletest *t, const cJSON *j, struct lead *l, size_t idx, char *err,
		     size_t errlen)
{
	static const char *const money[] = { "base", "wm", "pay", "ref" };
	int64_t *mdst[] = { &l->base, &l->wm, &l->pay, &l->ref };
	const cJSON *v;
	int64_t n;
	size_t k;

	memset(l, 0, sizeof(*l));
	l->offer = t->batch.offer;
	l->counts = 1;
	if (!cJSON_IsObject(j) || json_int(cJSON_GetObjectItemCaseSensitive(j, "id"), 1,
					   INT64_C(9007199254740992), &l->id) < 0) {
		snprintf(err, errlen, "lead %zu: \"id\" must be a positive whole number", idx + 1);
		return -1;
	}
	v = cJSON_GetObjectItemCaseSensitive(j, "ext");
	if (cJSON_IsString(v))
		lead_strlcpy(l->ext, sizeof(l->ext), v->valuestring);
	else if (cJSON_IsNumber(v))
		snprintf(l->ext, sizeof(l->ext), "%.0f", v->valuedouble);
	if (json_int(cJSON_GetObjectItemCaseSensitive(j, "status"), STATUS_MIN, STATUS_MAX, &n) < 0) {
		snprintf(err, errlen, "lead %" PRId64 ": \"status\" must be 1..12", l->id);
		return -1;
	}
	l->status = (int)n;
	if ((v = cJSON_GetObjectItemCaseSensitive(j, "reason")) && !cJSON_IsNull(v)) {
		if (json_int(v, 1, REASON_MAX, &n) < 0) {
			snprintf(err, errlen, "lead %" PRId64 ": \"reason\" must be 1..%d", l->id, REASON_MAX);
			return -1;
		}
		l->reason = (int)n;
	}
	if (l->status == LS_CANCEL && !l->reason)
		l->reason = t->batch.settings.reject_reason ? t->batch.settings.reject_reason
							     : LEAD_REASON_DEFAULT;
	if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(j, "comment")))
		lead_strlcpy(l->comment, sizeof(l->comment), v->valuestring);
	if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(j, "track")))
		lead_strlcpy(l->track, sizeof(l->track), v->valuestring);
	for (k = 0; k < sizeof(money) / sizeof(money[0]); k++)
		if ((v = cJSON_GetObjectItemCaseSensitive(j, money[k])) && json_money(v, mdst[k]) < 0) {
			snprintf(err, errlen, "lead %" PRId64 ": \"%s\" is not an amount", l->id, money[k]);
			return -1;
		}
	if ((v = cJSON_GetObjectItemCaseSensitive(j, "counts"))) {
		if (json_int(v, 0, 1000000, &n) < 0) {
			snprintf(err, errlen, "lead %" PRId64 ": \"counts\" must be 0..1000000", l->id);
			return -1;
		}
		l->counts = (int)n;
	}
	if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(j, "curr")) &&
	    !(l->curr = currency_by_iso(t, v->valuestring))) {
		snprintf(err, errlen, "lead %" PRId64 ": unknown currency '%s'", l->id, v->valuestring);
		return -1;
	}
	v = cJSON_GetObjectItemCaseSensitive(j, "goal");
	if (cJSON_IsString(v)) {
		if (!(l->goal = goal_by_code(t, v->valuestring))) {
			snprintf(err, errlen, "lead %" PRId64 ": no goal '%s' in the file", l->id,
				 v->valuestring);
			return -1;
		}
	} else
		l->goal = t->ngoals ? t->goals[0].goal.id : 0;
	if ((v = cJSON_GetObjectItemCaseSensitive(j, "created")) && json_time(v, &l->created) < 0) {
		snprintf(err, errlen, "lead %" PRId64 ": \"created\" is not an ISO-8601 time", l->id);
		return -1;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(j, "approved_at")) &&
	    json_time(v, &l->approved_at) < 0) {
		snprintf(err, errlen, "lead %" PRId64 ": \"approved_at\" is not an ISO-8601 time", l->id);
		return -1;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(j, "hold_until")) &&
	    json_time(v, &l->hold_until) < 0) {
		snprintf(err, errlen, "lead %" PRId64 ": \"hold_until\" is not an ISO-8601 time", l->id);
		return -1;
	}
	if (status_is_approved(l->status) && !l->approved_at)
		l->approved_at = l->created;
	return 0;
}

static int load_leads(struct ruletest *t, struct buf *tmp, char *err, size_t errlen)
{
	const cJSON *leads, *offer = NULL, *v, *j;
	size_t i = 0;
	int64_t n;

	if (read_file(t->o->leads, tmp, err, errlen) < 0)
		return -1;
	t->leads_doc = cJSON_ParseWithLength(tmp->p, tmp->len);
	if (!t->leads_doc) {
		snprintf(err, errlen, "%s: not valid JSON near byte %td", t->o->leads,
			 cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - tmp->p : (ptrdiff_t)0);
		return -1;
	}
	leads = t->leads_doc;
	t->batch.offer = 1;
	t->batch.settings.reject_reason = LEAD_REASON_DEFAULT;
	if (cJSON_IsObject(t->leads_doc)) {
		const cJSON *currs = cJSON_GetObjectItemCaseSensitive(t->leads_doc, "currencies");

		offer = cJSON_GetObjectItemCaseSensitive(t->leads_doc, "offer");
		leads = cJSON_GetObjectItemCaseSensitive(t->leads_doc, "leads");
		if (currs) {
			size_t k = 0;

			if (!cJSON_IsArray(currs) ||
			    !(t->currs = calloc((size_t)cJSON_GetArraySize(currs) + 1, sizeof(*t->currs)))) {
				snprintf(err, errlen, "%s: \"currencies\" must be an array", t->o->leads);
				return -1;
			}
			cJSON_ArrayForEach(j, currs) {
				const cJSON *iso = cJSON_GetObjectItemCaseSensitive(j, "iso");

				if (!cJSON_IsString(iso) || strlen(iso->valuestring) != 3 ||
				    json_int(cJSON_GetObjectItemCaseSensitive(j, "id"), 1, 9999, &n) < 0) {
					snprintf(err, errlen, "%s: currency %zu needs \"iso\" (3 letters) and \"id\"",
						 t->o->leads, k + 1);
					return -1;
				}
				memcpy(t->currs[k].iso, iso->valuestring, 4);
				t->currs[k++].id = (int)n;
			}
			t->ncurrs = k;
		}
	}
	if (!t->currs) {
		t->currs = malloc(sizeof(ruletest_currencies));
		if (!t->currs) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		memcpy(t->currs, ruletest_currencies, sizeof(ruletest_currencies));
		t->ncurrs = sizeof(ruletest_currencies) / sizeof(ruletest_currencies[0]);
	}
	if (offer) {
		if ((v = cJSON_GetObjectItemCaseSensitive(offer, "id")) && json_int(v, 1, INT32_MAX, &t->batch.offer) < 0) {
			snprintf(err, errlen, "%s: offer \"id\" must be a positive whole number", t->o->leads);
			return -1;
		}
		if ((v = cJSON_GetObjectItemCaseSensitive(offer, "hold_days"))) {
			if (json_int(v, 0, LEAD_HOLD_DAYS_MAX, &n) < 0) {
				snprintf(err, errlen, "%s: offer \"hold_days\" must be 0..%d", t->o->leads,
					 LEAD_HOLD_DAYS_MAX);
				return -1;
			}
			t->batch.settings.hold_days = (int)n;
		}
		if ((v = cJSON_GetObjectItemCaseSensitive(offer, "reject_reason"))) {
			if (json_int(v, 1, REASON_MAX, &n) < 0) {
				snprintf(err, errlen, "%s: offer \"reject_reason\" must be 1..%d", t->o->leads,
					 REASON_MAX);
				return -1;
			}
			t->batch.settings.reject_reason = (int)n;
		}
		t->batch.settings.cancel_approved =
			cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(offer, "cancel_approved"));
		if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(offer, "tz")))
			snprintf(t->tz, sizeof(t->tz), "%s", v->valuestring);
		if ((v = cJSON_GetObjectItemCaseSensitive(offer, "status_words")) && !cJSON_IsNull(v)) {
			char why[256];

			if (status_words_from_cjson(v, &t->words, why, sizeof(why)) < 0) {
				snprintf(err, errlen, "%s: offer \"status_words\": %s", t->o->leads, why);
				return -1;
			}
			t->batch.status_words = t->words;
		}
	}
	if (load_goals(t, cJSON_IsObject(t->leads_doc) ?
				  cJSON_GetObjectItemCaseSensitive(t->leads_doc, "goals") : NULL,
		       t->batch.offer, err, errlen) < 0)
		return -1;
	if (!cJSON_IsArray(leads) || cJSON_GetArraySize(leads) < 1 ||
	    cJSON_GetArraySize(leads) > RULETEST_LEADS_MAX) {
		snprintf(err, errlen, "%s: expected an array of 1..%d leads (or an object with \"leads\")",
			 t->o->leads, RULETEST_LEADS_MAX);
		return -1;
	}
	t->nleads = (size_t)cJSON_GetArraySize(leads);
	t->leads = calloc(t->nleads, sizeof(*t->leads));
	if (!t->leads) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	cJSON_ArrayForEach(j, leads) {
		size_t k;

		if (load_lead(t, j, &t->leads[i], i, err, errlen) < 0)
			return -1;
		for (k = 0; k < i; k++)
			if (t->leads[k].id == t->leads[i].id) {
				snprintf(err, errlen, "lead %" PRId64 " is given twice", t->leads[i].id);
				return -1;
			}
		i++;
	}
	return 0;
}

static int load_params(struct ruletest *t, struct buf *tmp, char *err, size_t errlen)
{
	const char *p = t->o->params;
	const cJSON *v;
	size_t i = 0;

	if (!p)
		return 0;
	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;
	if (*p != '{') {
		if (read_file(p, tmp, err, errlen) < 0)
			return -1;
		p = tmp->p;
	}
	t->params_doc = cJSON_Parse(p);
	if (!cJSON_IsObject(t->params_doc)) {
		snprintf(err, errlen, "--params: expected a JSON object of offer parameters");
		return -1;
	}
	t->params = calloc((size_t)cJSON_GetArraySize(t->params_doc) + 1, sizeof(*t->params));
	if (!t->params) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	cJSON_ArrayForEach(v, t->params_doc) {
		if (cJSON_IsNumber(v) || cJSON_IsBool(v)) {
			/* The printed form is what a CRM gets: keep it as a string. */
			char *s = cJSON_PrintUnformatted(v);
			cJSON *str = s ? cJSON_CreateString(s) : NULL;

			free(s);
			if (!str || !cJSON_ReplaceItemViaPointer(t->params_doc, (cJSON *)v, str)) {
				cJSON_Delete(str);
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			v = str;
		}
		if (!cJSON_IsString(v)) {
			snprintf(err, errlen, "--params: '%s' must be a string, number or boolean", v->string);
			return -1;
		}
		t->params[i].name = v->string;
		t->params[i++].value = v->valuestring;
	}
	t->nparams = i;
	return macro_check_params(t->params, t->nparams, err, errlen);
}

static int parse_day(const char *s, struct macro_civil *c)
{
	int64_t t, y;

	if (strlen(s) != 10 || lead_time_parse(s, &t) < 0)
		return -1;
	tz_civil_from_days(t / 86400, &y, &c->m, &c->d);
	c->y = (int)y;
	return 0;
}

/* The dates variant's range: --from/--to, else the days of the leads'
 * creation in the offer's zone. */
static int make_dates(struct ruletest *t, char *err, size_t errlen)
{
	struct macro_civil from = { 0, 0, 0 }, to = { 0, 0, 0 };
	const char *tz = t->o->tz ? t->o->tz : t->tz;
	size_t i;

	if (t->o->from && parse_day(t->o->from, &from) < 0) {
		snprintf(err, errlen, "--from '%s' is not a date YYYY-MM-DD", t->o->from);
		return -1;
	}
	if (t->o->to && parse_day(t->o->to, &to) < 0) {
		snprintf(err, errlen, "--to '%s' is not a date YYYY-MM-DD", t->o->to);
		return -1;
	}
	for (i = 0; i < t->nleads && (!t->o->from || !t->o->to); i++) {
		struct tm tm;
		struct macro_civil c;

		if (tz_utc_to_local(tz, t->leads[i].created, &tm, err, errlen) < 0)
			return -1;
		c.y = tm.tm_year + 1900;
		c.m = tm.tm_mon + 1;
		c.d = tm.tm_mday;
		if (!t->o->from && (!from.y || tz_days_from_civil(c.y, c.m, c.d) <
						      tz_days_from_civil(from.y, from.m, from.d)))
			from = c;
		if (!t->o->to && (!to.y || tz_days_from_civil(c.y, c.m, c.d) >
						    tz_days_from_civil(to.y, to.m, to.d)))
			to = c;
	}
	if (macro_dates_compute(tz, from, to, &t->dates, err, errlen) < 0)
		return -1;
	t->batch.dates = &t->dates;
	return 0;
}

/* ---- the report ---- */

static cJSON *request_json(const struct rule_request *r)
{
	cJSON *o = cJSON_CreateObject(), *h = cJSON_CreateArray();
	size_t i;

	if (!o || !h) {
		cJSON_Delete(o);
		cJSON_Delete(h);
		return NULL;
	}
	cJSON_AddNumberToObject(o, "page", r->page);
	cJSON_AddStringToObject(o, "method", r->method);
	cJSON_AddStringToObject(o, "url", r->url ? r->url : "");
	for (i = 0; i < r->nheaders; i++) {
		cJSON *pair = cJSON_CreateArray();

		cJSON_AddItemToArray(pair, cJSON_CreateString(r->headers[i].name));
		cJSON_AddItemToArray(pair, cJSON_CreateString(r->headers[i].value));
		cJSON_AddItemToArray(h, pair);
	}
	cJSON_AddItemToObject(o, "headers", h);
	if (r->body) {
		char *b = malloc(r->body_len + 1);

		if (b) {
			memcpy(b, r->body, r->body_len);
			b[r->body_len] = '\0';
			cJSON_AddStringToObject(o, "body", b);
			free(b);
		}
	} else
		cJSON_AddNullToObject(o, "body");
	cJSON_AddStringToObject(o, "format", decode_format_name(r->format));
	return o;
}

static int request_text(struct buf *out, const struct rule_request *r)
{
	size_t i;
	int rc = 0;

	rc |= buf_addf(out, "request   page %u: %s %s\n", r->page, r->method, r->url ? r->url : "");
	for (i = 0; i < r->nheaders; i++)
		rc |= buf_addf(out, "header    %s: %s\n", r->headers[i].name, r->headers[i].value);
	if (r->body) {
		rc |= buf_adds(out, "body      ");
		rc |= buf_add(out, r->body, r->body_len);
		rc |= buf_addc(out, '\n');
	}
	return rc ? -1 : 0;
}

/* One changed lead: "lead 1001  status 2 -> 6, wm 0 -> 5". */
static int change_report(struct ruletest *t, const struct rule_change *c, struct buf *out,
			 cJSON *changes)
{
	const struct lead *before = &t->leads[c->lead];
	struct buf b, a;
	cJSON *jb = NULL, *ja = NULL, *f;
	int rc = -1;
	bool first = true;

	buf_init(&b, 0);
	buf_init(&a, 0);
	if (lead_diff(before, &c->after, &b, &a) < 0)
		goto out;
	if (b.len == 0 || strcmp(b.p, "{}") == 0) {
		rc = 0; /* edits that cancelled out */
		goto out;
	}
	jb = cJSON_Parse(b.p);
	ja = cJSON_Parse(a.p);
	if (!jb || !ja)
		goto out;
	if (changes) {
		cJSON *o = cJSON_CreateObject();

		if (!o)
			goto out;
		cJSON_AddNumberToObject(o, "id", (double)before->id);
		cJSON_AddStringToObject(o, "ext", before->ext);
		cJSON_AddItemToObject(o, "before", jb);
		cJSON_AddItemToObject(o, "after", ja);
		cJSON_AddNumberToObject(o, "edits", c->edits);
		cJSON_AddItemToArray(changes, o);
		jb = ja = NULL;
		rc = 0;
		goto out;
	}
	if (buf_addf(out, "lead %-6" PRId64 "%s", before->id, "") < 0)
		goto out;
	cJSON_ArrayForEach(f, jb) {
		const cJSON *g = cJSON_GetObjectItemCaseSensitive(ja, f->string);
		char *x = cJSON_PrintUnformatted(f), *y = g ? cJSON_PrintUnformatted(g) : NULL;
		int e = buf_addf(out, "%s%s %s -> %s", first ? "" : ", ", f->string, x ? x : "?",
				 y ? y : "?");

		free(x);
		free(y);
		first = false;
		if (e < 0)
			goto out;
	}
	rc = buf_addc(out, '\n');
out:
	cJSON_Delete(jb);
	cJSON_Delete(ja);
	buf_release(&b);
	buf_release(&a);
	return rc;
}

/* Appends each line of text, prefixed, or adds them to a JSON array. */
static int lines_report(const struct buf *text, const char *prefix, struct buf *out, cJSON *arr)
{
	const char *p = text->p, *nl;

	if (!p)
		return 0;
	for (; *p; p = nl + 1) {
		nl = strchr(p, '\n');
		if (!nl)
			nl = p + strlen(p);
		if (arr) {
			char *line = strndup(p, (size_t)(nl - p));

			if (!line)
				return -1;
			cJSON_AddItemToArray(arr, cJSON_CreateString(line));
			free(line);
		} else if (buf_addf(out, "%-10s", prefix) < 0 || buf_add(out, p, (size_t)(nl - p)) < 0 ||
			   buf_addc(out, '\n') < 0)
			return -1;
		if (!*nl)
			break;
	}
	return 0;
}

static int summary_report(struct ruletest *t, struct buf *out, cJSON *report)
{
	const struct rule_result *r = &t->res;
	size_t changed = 0, i;

	for (i = 0; i < r->nchanges; i++) {
		struct buf b, a;
		int n;

		buf_init(&b, 0);
		buf_init(&a, 0);
		n = lead_diff(&t->leads[r->changes[i].lead], &r->changes[i].after, &b, &a);
		buf_release(&b);
		buf_release(&a);
		if (n > 0)
			changed++;
	}
	if (report) {
		cJSON *s = cJSON_AddObjectToObject(report, "summary");

		if (!s)
			return -1;
		cJSON_AddNumberToObject(s, "leads", (double)t->nleads);
		cJSON_AddNumberToObject(s, "changed", (double)changed);
		cJSON_AddNumberToObject(s, "unchanged", (double)(t->nleads - changed));
		cJSON_AddNumberToObject(s, "edits", (double)r->edits);
		cJSON_AddNumberToObject(s, "unknown_ids", (double)r->unknown);
		cJSON_AddNumberToObject(s, "refused", (double)r->refused);
		cJSON_AddNumberToObject(s, "unrecognised", (double)r->unrecognised);
		cJSON_AddNumberToObject(s, "pages", r->pages);
		cJSON_AddBoolToObject(s, "page_cap_reached", r->capped);
		return 0;
	}
	return buf_addf(out,
			"summary   %zu lead%s: %zu changed, %zu unchanged; %zu edit%s, %zu unknown id%s, "
			"%zu refused, %zu unrecognised word%s; %u page%s%s\n",
			t->nleads, t->nleads == 1 ? "" : "s", changed, t->nleads - changed, r->edits,
			r->edits == 1 ? "" : "s", r->unknown, r->unknown == 1 ? "" : "s", r->refused,
			r->unrecognised, r->unrecognised == 1 ? "" : "s", r->pages,
			r->pages == 1 ? "" : "s", r->capped ? " (page cap reached)" : "");
}

static int change_cmp(const void *a, const void *b)
{
	const struct rule_change *x = *(const struct rule_change *const *)a;
	const struct rule_change *y = *(const struct rule_change *const *)b;

	return x->lead < y->lead ? -1 : x->lead > y->lead;
}

static void ruletest_release(struct ruletest *t)
{
	rule_request_release(&t->req);
	rule_result_release(&t->res);
	rule_free(t->rt);
	cJSON_Delete(t->leads_doc);
	cJSON_Delete(t->params_doc);
	cJSON_Delete(t->report);
	free(t->leads);
	free(t->goals);
	free(t->currs);
	free(t->params);
	status_words_free(t->words);
	buf_release(&t->body);
}

int ruletest_run(const struct ruletest_opts *o, struct buf *out, char *err, size_t errlen)
{
	struct ruletest t;
	struct rule_variant_info info;
	const struct rule_request *req;
	cJSON *requests = NULL, *changes = NULL;
	unsigned page;
	size_t i;
	int rc = -1, e = 0;

	memset(&t, 0, sizeof(t));
	t.o = o;
	rule_request_init(&t.req);
	rule_result_init(&t.res);
	buf_init(&t.body, RULETEST_FILE_MAX);
	if (o->json) {
		t.report = cJSON_CreateObject();
		requests = cJSON_AddArrayToObject(t.report, "requests");
		changes = cJSON_AddArrayToObject(t.report, "changes");
		if (!requests || !changes) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		cJSON_AddStringToObject(t.report, "rule", o->rule);
		cJSON_AddStringToObject(t.report, "variant", rule_variant_name(o->variant));
	}
	if (load_leads(&t, &t.body, err, errlen) < 0 || load_params(&t, &t.body, err, errlen) < 0)
		goto out;
	if (rule_load(o->rule, o->limits, &t.rt, err, errlen) < 0)
		goto out;
	rule_variant_info(t.rt, o->variant, &info);
	if (!info.present) {
		snprintf(err, errlen, "%s has no '%s' variant", o->rule, rule_variant_name(o->variant));
		goto out;
	}
	t.batch.leads = t.leads;
	t.batch.nleads = t.nleads;
	t.batch.params = t.params;
	t.batch.nparams = t.nparams;
	t.batch.goals = t.goals;
	t.batch.ngoals = t.ngoals;
	t.batch.currencies = t.currs;
	t.batch.ncurrencies = t.ncurrs;
	t.batch.now = o->now;
	if (o->variant == RULE_DATES && make_dates(&t, err, errlen) < 0)
		goto out;
	if (!o->json) {
		e |= buf_addf(out, "rule      %s, variant %s (%s", o->rule, rule_variant_name(o->variant),
			      decode_format_name(info.format));
		if (o->variant == RULE_DATES)
			e |= buf_addf(out, ", %s .. %s", t.dates.from, t.dates.to);
		else
			e |= buf_addf(out, ", batch %zu", info.batch);
		e |= buf_addf(out, "), %zu lead%s\n", t.nleads, t.nleads == 1 ? "" : "s");
		if (info.batch && o->variant != RULE_DATES && t.nleads > info.batch)
			e |= buf_addf(out, "warning   %zu leads given, the rule asks for %zu per request\n",
				      t.nleads, info.batch);
	}
	if (rule_prepare(t.rt, o->variant, &t.batch, &t.res, &t.req, err, errlen) < 0)
		goto report;
	req = &t.req;
	for (page = 0;; page++) {
		if (o->json)
			cJSON_AddItemToArray(requests, request_json(req));
		else
			e |= request_text(out, req);
		if (page >= o->nresponses) {
			if (!o->json)
				e |= buf_addf(out, "stop      no --response for page %u: not fetched\n", req->page);
			break;
		}
		if (read_file(o->responses[page], &t.body, err, errlen) < 0)
			goto report;
		if (!o->json && o->content_type)
			e |= buf_addf(out, "answer    page %u: HTTP %d, %zu bytes (%s) from %s\n",
				      req->page, o->http_status, t.body.len, o->content_type,
				      o->responses[page]);
		else if (!o->json)
			e |= buf_addf(out, "answer    page %u: HTTP %d, %zu bytes from %s\n", req->page,
				      o->http_status, t.body.len, o->responses[page]);
		if (rule_process(t.rt, o->variant, &t.batch, req, t.body.p, t.body.len, o->http_status,
				 o->content_type, &t.res, err, errlen) < 0)
			goto report;
		if (!t.res.has_next)
			break;
		req = &t.res.next;
	}
	if (page + 1 < o->nresponses && !o->json)
		e |= buf_addf(out, "warning   %u --response file%s not used: the rule asked for no more pages\n",
			      o->nresponses - page - 1, o->nresponses - page - 1 == 1 ? "" : "s");
	/* Batch order, whatever order the rule touched the leads in (pairs()
	 * over a decoded object runs in hash order), so output is stable. */
	{
		const struct rule_change **ord = calloc(t.res.nchanges + 1, sizeof(*ord));

		if (!ord) {
			snprintf(err, errlen, "out of memory");
			goto report;
		}
		for (i = 0; i < t.res.nchanges; i++)
			ord[i] = &t.res.changes[i];
		qsort(ord, t.res.nchanges, sizeof(*ord), change_cmp);
		for (i = 0; i < t.res.nchanges; i++)
			e |= change_report(&t, ord[i], out, changes);
		free(ord);
	}
	rc = 0;
report:
	if (o->json) {
		cJSON *notes = cJSON_AddArrayToObject(t.report, "notes");
		cJSON *log = cJSON_AddArrayToObject(t.report, "log");

		e |= lines_report(&t.res.notes, NULL, out, notes);
		e |= lines_report(&t.res.log, NULL, out, log);
		e |= summary_report(&t, out, t.report);
		if (rc < 0)
			cJSON_AddStringToObject(t.report, "error", err);
		else
			cJSON_AddNullToObject(t.report, "error");
		{
			char *s = cJSON_PrintUnformatted(t.report);

			e |= s ? buf_adds(out, s) : -1;
			e |= buf_addc(out, '\n');
			free(s);
		}
	} else {
		e |= lines_report(&t.res.log, "log", out, NULL);
		e |= lines_report(&t.res.notes, "note", out, NULL);
		if (rc == 0)
			e |= summary_report(&t, out, NULL);
		else {
			e |= buf_addf(out, "error     %s\n", err);
		}
	}
	if (e && rc == 0) {
		snprintf(err, errlen, "report too large or out of memory");
		rc = -1;
	}
out:
	ruletest_release(&t);
	return rc;
}
