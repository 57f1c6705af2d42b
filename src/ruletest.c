/* ruletest: a rule run offline on files, for `leadsync rule test`. */
#include "ruletest.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "import.h"
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
	const char *zone;          /* the zone in force: --tz, the file's, LEADSYNC_TZ, UTC */
	const cJSON *secret_names; /* the offer's secret_params */
	struct mask mask;
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

/* A whole JSON number in min..max, range checked before the conversion. */
static int json_int(const cJSON *v, int64_t min, int64_t max, int64_t *out)
{
	return cJSON_IsNumber(v) && lead_int_from_double(v->valuedouble, min, max, out) ? 0 : -1;
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

static int currency_of(const char *iso, const void *data)
{
	return currency_by_iso(data, iso);
}

/* One lead of the file, validated as import validates a lead record (the
 * file's offer standing in for an absent "offer"), then given the defaults
 * a new lead gets in the database: counts 1, the offer's reason for a
 * cancel, approved_at = created when approved, and the file's first goal. */
static int load_lead(struct ruletest *t, const cJSON *j, struct lead *l, size_t idx, char *err,
		     size_t errlen)
{
	struct import_lead r;
	char why[512];

	if (import_lead_check(j, currency_of, t, t->batch.offer, &r, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s: lead %zu: %s", t->o->leads, idx + 1, why);
		return -1;
	}
	if (!IMPORT_LEAD_SET(&r, ILK_ID)) {
		snprintf(err, errlen, "%s: lead %zu: missing 'id'", t->o->leads, idx + 1);
		return -1;
	}
	*l = r.lead;
	if (l->offer != t->batch.offer) {
		snprintf(err, errlen, "%s: lead %" PRId64 ": offer %" PRId64 " is not the file's offer %"
			 PRId64, t->o->leads, l->id, l->offer, t->batch.offer);
		return -1;
	}
	if (!IMPORT_LEAD_SET(&r, ILK_COUNTS))
		l->counts = 1;
	if (l->status == LS_CANCEL && !l->reason)
		l->reason = t->batch.settings.reject_reason ? t->batch.settings.reject_reason
							     : LEAD_REASON_DEFAULT;
	if (r.goal[0]) {
		if (!(l->goal = goal_by_code(t, r.goal))) {
			snprintf(err, errlen, "%s: lead %" PRId64 ": no goal '%s' in the file", t->o->leads,
				 l->id, r.goal);
			return -1;
		}
	} else {
		l->goal = t->ngoals ? t->goals[0].goal.id : 0;
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
	/* as import takes its lines: what the database would refuse (or store
	 * mangled) is refused here too, before the rule sees it */
	if (!buf_utf8_ok(tmp->p, tmp->len)) {
		snprintf(err, errlen, "%s: not UTF-8 text (or holds a NUL byte): save it as UTF-8",
			 t->o->leads);
		return -1;
	}
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
		if ((v = cJSON_GetObjectItemCaseSensitive(offer, "secret_params")) && !cJSON_IsNull(v)) {
			const cJSON *nm;

			if (!cJSON_IsArray(v)) {
				snprintf(err, errlen, "%s: offer \"secret_params\" must be an array of names",
					 t->o->leads);
				return -1;
			}
			cJSON_ArrayForEach(nm, v) {
				if (!cJSON_IsString(nm)) {
					snprintf(err, errlen, "%s: offer \"secret_params\" must be an array of names",
						 t->o->leads);
					return -1;
				}
			}
			t->secret_names = v;
		}
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
	char why[512];

	if (!p) {
		if (!t->o->param_list)
			return 0;
		t->params = calloc(t->o->nparam_list + 1, sizeof(*t->params));
		if (!t->params) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		memcpy(t->params, t->o->param_list, t->o->nparam_list * sizeof(*t->params));
		t->nparams = t->o->nparam_list;
		return 0;
	}
	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;
	if (*p != '{') {
		if (read_file(p, tmp, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "--params: %s", why);
			return RULETEST_EUSAGE;
		}
		p = tmp->p;
	}
	t->params_doc = cJSON_Parse(p);
	if (!cJSON_IsObject(t->params_doc)) {
		snprintf(err, errlen, "--params: expected a JSON object of offer parameters");
		return RULETEST_EUSAGE;
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
			return RULETEST_EUSAGE;
		}
		t->params[i].name = v->string;
		t->params[i++].value = v->valuestring;
	}
	t->nparams = i;
	if (macro_check_params(t->params, t->nparams, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "--params: %s", why);
		return RULETEST_EUSAGE;
	}
	return 0;
}

/* The secrets to mask: params named by the offer's secret_params or by
 * --secret, and those whose name looks like a credential. */
static int make_mask(struct ruletest *t, char *err, size_t errlen)
{
	size_t i;
	unsigned k;

	for (i = 0; i < t->nparams; i++) {
		const char *name = t->params[i].name, *value = t->params[i].value;
		const cJSON *n;
		bool listed = false;

		cJSON_ArrayForEach(n, t->secret_names)
			if (strcmp(n->valuestring, name) == 0)
				listed = true;
		for (k = 0; k < t->o->nsecrets; k++)
			if (strcmp(t->o->secrets[k], name) == 0)
				listed = true;
		if (mask_param(&t->mask, name, value ? value : "", listed) < 0) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	return 0;
}

/* The zone in force, checked: an unknown zone from an option is a usage
 * error, one from the leads file the file's fault. */
static int pick_zone(struct ruletest *t, char *err, size_t errlen)
{
	const char *from;

	if (t->o->tz) {
		t->zone = t->o->tz;
		from = "--tz";
	} else if (t->tz[0]) {
		t->zone = t->tz;
		from = NULL;
	} else {
		t->zone = t->o->tz_default && *t->o->tz_default ? t->o->tz_default : "UTC";
		from = "LEADSYNC_TZ";
	}
	if (tz_valid(t->zone))
		return 0;
	if (!from) {
		snprintf(err, errlen, "%s: offer \"tz\": unknown time zone '%s'", t->o->leads, t->zone);
		return -1;
	}
	snprintf(err, errlen, "%s: unknown time zone '%s'", from, t->zone);
	return RULETEST_EUSAGE;
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
	const char *tz = t->zone;
	size_t i;

	if (t->o->from && parse_day(t->o->from, &from) < 0) {
		snprintf(err, errlen, "--from '%s' is not a date YYYY-MM-DD", t->o->from);
		return RULETEST_EUSAGE;
	}
	if (t->o->to && parse_day(t->o->to, &to) < 0) {
		snprintf(err, errlen, "--to '%s' is not a date YYYY-MM-DD", t->o->to);
		return RULETEST_EUSAGE;
	}
	if (t->o->from && t->o->to && tz_days_from_civil(from.y, from.m, from.d) >
					     tz_days_from_civil(to.y, to.m, to.d)) {
		snprintf(err, errlen, "--from '%s' is after --to '%s'", t->o->from, t->o->to);
		return RULETEST_EUSAGE;
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

/* A body is masked as a form when the request says it is one. */
static enum mask_kind body_kind(const struct rule_request *r)
{
	size_t i;

	for (i = 0; i < r->nheaders; i++)
		if (strcasecmp(r->headers[i].name, "Content-Type") == 0 &&
		    strstr(r->headers[i].value, "x-www-form-urlencoded"))
			return MASK_FORM;
	return MASK_TEXT;
}

/* The request as printed: URL, header values and body masked. */
struct shown_request {
	char *url, *body;
	char **values;
};

static void shown_release(struct shown_request *s, size_t nheaders)
{
	size_t i;

	free(s->url);
	free(s->body);
	for (i = 0; s->values && i < nheaders; i++)
		free(s->values[i]);
	free(s->values);
}

static int shown_make(const struct mask *m, const struct rule_request *r, struct shown_request *s)
{
	size_t i;

	memset(s, 0, sizeof(*s));
	s->url = mask_dup(m, r->url ? r->url : "", r->url ? strlen(r->url) : 0, MASK_URL);
	s->values = calloc(r->nheaders + 1, sizeof(*s->values));
	if (!s->url || !s->values)
		return -1;
	for (i = 0; i < r->nheaders; i++) {
		struct buf b;

		buf_init(&b, 0);
		if (mask_header(m, r->headers[i].name, r->headers[i].value, &b) < 0) {
			buf_release(&b);
			return -1;
		}
		s->values[i] = buf_steal(&b);
		if (!s->values[i])
			return -1;
	}
	if (r->body && !(s->body = mask_dup(m, r->body, r->body_len, body_kind(r))))
		return -1;
	return 0;
}

static cJSON *request_json(const struct mask *m, const struct rule_request *r)
{
	cJSON *o = cJSON_CreateObject(), *h = cJSON_CreateArray();
	struct shown_request sh;
	size_t i;

	if (!o || !h || shown_make(m, r, &sh) < 0) {
		cJSON_Delete(o);
		cJSON_Delete(h);
		shown_release(&sh, r->nheaders);
		return NULL;
	}
	cJSON_AddNumberToObject(o, "page", r->page);
	cJSON_AddStringToObject(o, "method", r->method);
	cJSON_AddStringToObject(o, "url", sh.url);
	for (i = 0; i < r->nheaders; i++) {
		cJSON *pair = cJSON_CreateArray();

		cJSON_AddItemToArray(pair, cJSON_CreateString(r->headers[i].name));
		cJSON_AddItemToArray(pair, cJSON_CreateString(sh.values[i]));
		cJSON_AddItemToArray(h, pair);
	}
	cJSON_AddItemToObject(o, "headers", h);
	if (sh.body)
		cJSON_AddStringToObject(o, "body", sh.body);
	else
		cJSON_AddNullToObject(o, "body");
	cJSON_AddStringToObject(o, "format", decode_format_name(r->format));
	shown_release(&sh, r->nheaders);
	return o;
}

static int request_text(const struct mask *m, struct buf *out, const struct rule_request *r)
{
	struct shown_request sh;
	size_t i;
	int rc = 0;

	if (shown_make(m, r, &sh) < 0) {
		shown_release(&sh, r->nheaders);
		return -1;
	}
	rc |= buf_addf(out, "request   page %u: %s %s\n", r->page, r->method, sh.url);
	for (i = 0; i < r->nheaders; i++)
		rc |= buf_addf(out, "header    %s: %s\n", r->headers[i].name, sh.values[i]);
	if (sh.body) {
		rc |= buf_adds(out, "body      ");
		rc |= buf_adds(out, sh.body);
		rc |= buf_addc(out, '\n');
	}
	shown_release(&sh, r->nheaders);
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
	if (t->mask.n) { /* a comment may quote a secret; *** keeps the JSON valid */
		char *mb = mask_dup(&t->mask, b.p, b.len, MASK_TEXT);
		char *ma = mask_dup(&t->mask, a.p, a.len, MASK_TEXT);

		jb = mb ? cJSON_Parse(mb) : NULL;
		ja = ma ? cJSON_Parse(ma) : NULL;
		free(mb);
		free(ma);
	} else {
		jb = cJSON_Parse(b.p);
		ja = cJSON_Parse(a.p);
	}
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

	if (!p || !text->len)
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
	mask_release(&t->mask);
}

/* The name an answer is reported under: relative to the case folder. */
static const char *answer_label(const struct ruletest_opts *o, const char *path)
{
	size_t n = o->label_base ? strlen(o->label_base) : 0;

	if (n && strncmp(path, o->label_base, n) == 0 && path[n] == '/')
		return path + n + 1;
	return path;
}

static int page_status(const struct ruletest_opts *o, unsigned page)
{
	if (o->nstatuses)
		return o->statuses[page < o->nstatuses ? page : o->nstatuses - 1];
	return o->http_status ? o->http_status : 200;
}

/* Masked lines of text into the report. */
static int masked_lines(struct ruletest *t, const struct buf *text, const char *prefix,
			struct buf *out, cJSON *arr)
{
	struct buf m;
	int rc;

	if (!text->len)
		return 0;
	buf_init(&m, 0);
	rc = mask_text(&t->mask, text->p, text->len, MASK_TEXT, &m);
	if (rc == 0)
		rc = lines_report(&m, prefix, out, arr);
	buf_release(&m);
	return rc;
}

/* Masks err in place. */
static void mask_err(struct ruletest *t, char *err, size_t errlen)
{
	char *m;

	if (!t->mask.n || !*err)
		return;
	m = mask_dup(&t->mask, err, strlen(err), MASK_TEXT);
	if (m) {
		snprintf(err, errlen, "%s", m);
		free(m);
	}
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
	mask_init(&t.mask);
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
		cJSON_AddStringToObject(t.report, "rule", o->rule_label ? o->rule_label : o->rule);
		cJSON_AddStringToObject(t.report, "variant", rule_variant_name(o->variant));
	}
	/* options first: a wrong one is a usage error, reported before any work */
	if ((rc = load_params(&t, &t.body, err, errlen)) < 0)
		goto out;
	rc = -1;
	if (load_leads(&t, &t.body, err, errlen) < 0 || make_mask(&t, err, errlen) < 0)
		goto out;
	if ((rc = pick_zone(&t, err, errlen)) < 0)
		goto out;
	t.batch.leads = t.leads;
	t.batch.nleads = t.nleads;
	t.batch.params = t.params;
	t.batch.nparams = t.nparams;
	t.batch.goals = t.goals;
	t.batch.ngoals = t.ngoals;
	t.batch.currencies = t.currs;
	t.batch.ncurrencies = t.ncurrs;
	t.batch.now = o->now;
	if (o->variant == RULE_DATES && (rc = make_dates(&t, err, errlen)) < 0)
		goto out;
	rc = -1;
	if (rule_load(o->rule, o->limits, &t.rt, err, errlen) < 0)
		goto out;
	rule_variant_info(t.rt, o->variant, &info);
	if (!info.present) {
		snprintf(err, errlen, "%s has no '%s' variant", o->rule, rule_variant_name(o->variant));
		goto out;
	}
	if (!o->json) {
		e |= buf_addf(out, "rule      %s, variant %s (%s", o->rule_label ? o->rule_label : o->rule,
			      rule_variant_name(o->variant),
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
		int status = page_status(o, page);

		if (o->json)
			cJSON_AddItemToArray(requests, request_json(&t.mask, req));
		else
			e |= request_text(&t.mask, out, req);
		if (page >= o->nresponses) {
			if (!o->json)
				e |= buf_addf(out, "stop      no --response for page %u: not fetched\n", req->page);
			break;
		}
		if (read_file(o->responses[page], &t.body, err, errlen) < 0)
			goto report;
		if (!o->json && o->content_type)
			e |= buf_addf(out, "answer    page %u: HTTP %d, %zu bytes (%s) from %s\n",
				      req->page, status, t.body.len, o->content_type,
				      answer_label(o, o->responses[page]));
		else if (!o->json)
			e |= buf_addf(out, "answer    page %u: HTTP %d, %zu bytes from %s\n", req->page,
				      status, t.body.len, answer_label(o, o->responses[page]));
		if (rule_process(t.rt, o->variant, &t.batch, req, t.body.p, t.body.len, status,
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
	if (rc < 0)
		mask_err(&t, err, errlen);
	if (o->json) {
		cJSON *notes = cJSON_AddArrayToObject(t.report, "notes");
		cJSON *log = cJSON_AddArrayToObject(t.report, "log");

		e |= masked_lines(&t, &t.res.notes, NULL, out, notes);
		e |= masked_lines(&t, &t.res.log, NULL, out, log);
		e |= summary_report(&t, out, t.report);
		if (rc < 0)
			cJSON_AddStringToObject(t.report, "error", err);
		else
			cJSON_AddNullToObject(t.report, "error");
		{
			char *js = cJSON_PrintUnformatted(t.report);

			e |= js ? buf_adds(out, js) : -1;
			e |= buf_addc(out, '\n');
			free(js);
		}
	} else {
		e |= masked_lines(&t, &t.res.log, "log", out, NULL);
		e |= masked_lines(&t, &t.res.notes, "note", out, NULL);
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
	if (rc == -1)
		mask_err(&t, err, errlen);
	ruletest_release(&t);
	return rc;
}

/* ---- case folders ---- */

/* Splits args on blanks ("double quotes" group), {case} → dir. */
static int case_split(const char *args, const char *dir, struct ruletest_case *c, char *err,
		      size_t errlen)
{
	const char *p = args;
	size_t offs[RULETEST_ARGS_MAX];
	int n = 0, i;

	while (*p) {
		bool q = false;

		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
			p++;
		if (!*p)
			break;
		if (n == RULETEST_ARGS_MAX) {
			snprintf(err, errlen, "%s/args: more than %d words", dir, RULETEST_ARGS_MAX);
			return -1;
		}
		offs[n++] = c->store.len;
		for (; *p && (q || (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')); p++) {
			if (*p == '"') {
				q = !q;
				continue;
			}
			if (strncmp(p, "{case}", 6) == 0) {
				if (buf_adds(&c->store, dir) < 0)
					goto full;
				p += 5;
				continue;
			}
			if (buf_addc(&c->store, *p) < 0)
				goto full;
		}
		if (buf_addc(&c->store, '\0') < 0)
			goto full;
	}
	for (i = 0; i < n; i++)
		c->argv[i] = c->store.p + offs[i];
	c->argv[n] = NULL;
	c->argc = n;
	return 0;
full:
	snprintf(err, errlen, "%s/args: too long", dir);
	return -1;
}

int ruletest_case_read(const char *dir, struct ruletest_case *c, char *err, size_t errlen)
{
	struct buf b, path;
	struct stat st;
	int rc = -1;

	memset(c, 0, sizeof(*c));
	buf_init(&c->store, (size_t)1 << 20);
	buf_init(&b, (size_t)1 << 20);
	buf_init(&path, 4096);
	if (buf_addf(&path, "%s/args", dir) < 0 || read_file(path.p, &b, err, errlen) < 0)
		goto out;
	if (case_split(b.p ? b.p : "", dir, c, err, errlen) < 0)
		goto out;
	buf_reset(&path);
	if (buf_addf(&path, "%s/expected.txt", dir) < 0 || read_file(path.p, &b, err, errlen) < 0)
		goto out;
	c->expected = buf_steal(&b);
	buf_init(&b, 64);
	buf_reset(&path);
	if (buf_addf(&path, "%s/exit", dir) < 0)
		goto out;
	if (stat(path.p, &st) == 0) {
		char *end;

		if (read_file(path.p, &b, err, errlen) < 0)
			goto out;
		long v = strtol(b.p ? b.p : "", &end, 10);

		while (*end == '\n' || *end == ' ' || *end == '\r')
			end++;
		if (!b.p || end == b.p || *end || v < 0 || v > 255) {
			snprintf(err, errlen, "%s: not an exit code", path.p);
			goto out;
		}
		c->exit_code = (int)v;
	}
	rc = 0;
out:
	buf_release(&b);
	buf_release(&path);
	return rc;
}

void ruletest_case_release(struct ruletest_case *c)
{
	buf_release(&c->store);
	free(c->expected);
	memset(c, 0, sizeof(*c));
}

/* ---- diff ---- */

struct dline {
	const char *p;
	size_t len; /* with its '\n', if it has one */
};

static struct dline *diff_lines(const char *s, size_t *n)
{
	size_t cap = 1, k = 0;
	const char *p;
	struct dline *v;

	for (p = s; *p; p++)
		cap += *p == '\n';
	v = calloc(cap + 1, sizeof(*v));
	if (!v)
		return NULL;
	for (p = s; *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) + 1 : strlen(p);

		v[k].p = p;
		v[k++].len = len;
		p += len;
	}
	*n = k;
	return v;
}

static bool dline_eq(const struct dline *a, const struct dline *b)
{
	return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

static int diff_put(struct buf *out, char op, const struct dline *l)
{
	int e = buf_addc(out, op);

	e |= buf_add(out, l->p, l->len);
	if (!l->len || l->p[l->len - 1] != '\n')
		e |= buf_adds(out, "\n\\ No newline at end of file\n");
	return e ? -1 : 0;
}

#define DIFF_CONTEXT 3
#define DIFF_CELLS_MAX ((size_t)4 << 20)

int ruletest_diff(const char *want, const char *got, const char *want_name, const char *got_name,
		  struct buf *out)
{
	struct dline *a = NULL, *b = NULL;
	size_t na = 0, nb = 0, pre = 0, suf = 0, ma, mb, i, j, nops = 0, k;
	unsigned *lcs = NULL;
	char *op = NULL;      /* ' ', '-', '+' */
	size_t *ai = NULL, *bi = NULL;
	int rc = -1, e = 0;

	if (strcmp(want, got) == 0)
		return 0;
	a = diff_lines(want, &na);
	b = diff_lines(got, &nb);
	op = malloc(na + nb + 1);
	ai = calloc(na + nb + 1, sizeof(*ai));
	bi = calloc(na + nb + 1, sizeof(*bi));
	if (!a || !b || !op || !ai || !bi)
		goto out;
	while (pre < na && pre < nb && dline_eq(&a[pre], &b[pre]))
		pre++;
	while (suf < na - pre && suf < nb - pre && dline_eq(&a[na - 1 - suf], &b[nb - 1 - suf]))
		suf++;
	ma = na - pre - suf;
	mb = nb - pre - suf;
	for (i = 0; i < pre; i++, nops++) {
		op[nops] = ' ';
		ai[nops] = i;
		bi[nops] = i;
	}
	if ((ma + 1) * (mb + 1) <= DIFF_CELLS_MAX) {
		/* longest common subsequence of the middles, from the end */
		lcs = calloc((ma + 1) * (mb + 1), sizeof(*lcs));
		if (!lcs)
			goto out;
#define L(x, y) lcs[(x) * (mb + 1) + (y)]
		for (i = ma; i-- > 0;)
			for (j = mb; j-- > 0;)
				L(i, j) = dline_eq(&a[pre + i], &b[pre + j])
						  ? L(i + 1, j + 1) + 1
						  : (L(i + 1, j) >= L(i, j + 1) ? L(i + 1, j) : L(i, j + 1));
		for (i = 0, j = 0; i < ma || j < mb; nops++) {
			if (i < ma && j < mb && dline_eq(&a[pre + i], &b[pre + j])) {
				op[nops] = ' ';
				ai[nops] = pre + i++;
				bi[nops] = pre + j++;
			} else if (i < ma && (j == mb || L(i + 1, j) >= L(i, j + 1))) {
				op[nops] = '-';
				ai[nops] = pre + i++;
				bi[nops] = pre + j;
			} else {
				op[nops] = '+';
				ai[nops] = pre + i;
				bi[nops] = pre + j++;
			}
		}
#undef L
	} else {
		for (i = 0; i < ma; i++, nops++) {
			op[nops] = '-';
			ai[nops] = pre + i;
			bi[nops] = pre;
		}
		for (j = 0; j < mb; j++, nops++) {
			op[nops] = '+';
			ai[nops] = pre + ma;
			bi[nops] = pre + j;
		}
	}
	for (i = 0; i < suf; i++, nops++) {
		op[nops] = ' ';
		ai[nops] = na - suf + i;
		bi[nops] = nb - suf + i;
	}
	e |= buf_addf(out, "--- %s\n+++ %s\n", want_name, got_name);
	for (k = 0; k < nops;) {
		size_t start, end, last, acount = 0, bcount = 0, x;

		while (k < nops && op[k] == ' ')
			k++;
		if (k == nops)
			break;
		start = k > DIFF_CONTEXT ? k - DIFF_CONTEXT : 0;
		last = k;
		/* extend while the next change is within two contexts */
		for (x = k; x < nops; x++)
			if (op[x] != ' ') {
				if (x - last > 2 * DIFF_CONTEXT)
					break;
				last = x;
			}
		end = last + DIFF_CONTEXT + 1 < nops ? last + DIFF_CONTEXT + 1 : nops;
		for (x = start; x < end; x++) {
			acount += op[x] != '+';
			bcount += op[x] != '-';
		}
		e |= buf_addf(out, "@@ -%zu,%zu +%zu,%zu @@\n", ai[start] + (acount ? 1 : 0), acount,
			      bi[start] + (bcount ? 1 : 0), bcount);
		for (x = start; x < end; x++)
			e |= diff_put(out, op[x], op[x] == '+' ? &b[bi[x]] : &a[ai[x]]);
		k = end;
	}
	rc = e ? -1 : 1;
out:
	free(a);
	free(b);
	free(op);
	free(ai);
	free(bi);
	free(lcs);
	return rc;
}

/* ---- saving a live poll as a case ---- */

static int write_file(const char *dir, const char *name, const char *data, size_t len, char *err,
		      size_t errlen)
{
	char path[4096];
	FILE *f;
	int rc = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f) {
		snprintf(err, errlen, "cannot create '%s': %s", path, strerror(errno));
		return -1;
	}
	if (len && fwrite(data, 1, len, f) != len)
		rc = -1;
	if (fclose(f) != 0)
		rc = -1;
	if (rc < 0)
		snprintf(err, errlen, "cannot write '%s': %s", path, strerror(errno));
	return rc;
}

static const char *iso_of(const struct ruletest_save *sv, int id)
{
	size_t i;

	for (i = 0; id && i < sv->ncurrs; i++)
		if (sv->currs[i].id == id)
			return sv->currs[i].iso;
	return NULL;
}

static void add_money(cJSON *o, const char *name, int64_t cents)
{
	char m[32];

	if (lead_money_format(cents, m, sizeof(m)) >= 0)
		cJSON_AddRawToObject(o, name, m);
}

static void add_time(cJSON *o, const char *name, int64_t t)
{
	char s[32];

	if (t && lead_time_format(t, s, sizeof(s)) >= 0)
		cJSON_AddStringToObject(o, name, s);
}

/* A param is saved masked when its value is one of the offer's secrets. */
static bool param_secret(const struct ruletest_save *sv, const struct macro_param *p)
{
	size_t k;

	for (k = 0; sv->mask && p->value && *p->value && k < sv->mask->n; k++)
		if (strcmp(sv->mask->values[k], p->value) == 0)
			return true;
	return false;
}

static cJSON *save_leads_doc(const struct ruletest_save *sv)
{
	cJSON *doc = cJSON_CreateObject(), *off, *arr, *x;
	size_t i;

	if (!doc)
		return NULL;
	off = cJSON_AddObjectToObject(doc, "offer");
	cJSON_AddNumberToObject(off, "id", (double)sv->offer);
	cJSON_AddStringToObject(off, "rule", sv->rule);
	cJSON_AddStringToObject(off, "tz", sv->tz && *sv->tz ? sv->tz : "UTC");
	cJSON_AddNumberToObject(off, "hold_days", sv->settings.hold_days);
	if (sv->settings.reject_reason)
		cJSON_AddNumberToObject(off, "reject_reason", sv->settings.reject_reason);
	cJSON_AddBoolToObject(off, "cancel_approved", sv->settings.cancel_approved);
	if (sv->status_words && (x = cJSON_Parse(sv->status_words))) {
		if (cJSON_IsObject(x) && cJSON_GetArraySize(x) > 0)
			cJSON_AddItemToObject(off, "status_words", x);
		else
			cJSON_Delete(x);
	}
	arr = cJSON_AddArrayToObject(off, "secret_params");
	for (i = 0; i < sv->nparams; i++)
		if (param_secret(sv, &sv->params[i]))
			cJSON_AddItemToArray(arr, cJSON_CreateString(sv->params[i].name));
	arr = cJSON_AddArrayToObject(doc, "goals");
	for (i = 0; i < sv->ngoals; i++) {
		static const char *const kinds[] = { "fixed", "percent", "recurring" };
		const struct rule_goal *g = &sv->goals[i];
		cJSON *o = cJSON_CreateObject();

		if (g->offer != sv->offer || !o) {
			cJSON_Delete(o);
			continue;
		}
		cJSON_AddStringToObject(o, "code", g->code);
		cJSON_AddStringToObject(o, "payout", kinds[(unsigned)g->goal.payout < 3 ? g->goal.payout : 0]);
		add_money(o, "wm", g->goal.wm);
		add_money(o, "pay", g->goal.pay);
		add_money(o, "ref", g->goal.ref);
		if (iso_of(sv, g->goal.curr))
			cJSON_AddStringToObject(o, "currency", iso_of(sv, g->goal.curr));
		cJSON_AddItemToArray(arr, o);
	}
	arr = cJSON_AddArrayToObject(doc, "currencies");
	for (i = 0; i < sv->ncurrs; i++) {
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "iso", sv->currs[i].iso);
		cJSON_AddNumberToObject(o, "id", sv->currs[i].id);
		cJSON_AddItemToArray(arr, o);
	}
	arr = cJSON_AddArrayToObject(doc, "leads");
	for (i = 0; i < sv->nleads; i++) {
		const struct lead *l = &sv->leads[i];
		cJSON *o = cJSON_CreateObject();
		size_t k;

		cJSON_AddNumberToObject(o, "id", (double)l->id);
		if (l->ext[0]) /* import's lead record takes no empty ext */
			cJSON_AddStringToObject(o, "ext", l->ext);
		cJSON_AddNumberToObject(o, "status", l->status);
		if (l->reason)
			cJSON_AddNumberToObject(o, "reason", l->reason);
		add_time(o, "created", l->created);
		for (k = 0; k < sv->ngoals; k++)
			if (sv->goals[k].goal.id == l->goal)
				cJSON_AddStringToObject(o, "goal", sv->goals[k].code);
		add_money(o, "base", l->base);
		cJSON_AddNumberToObject(o, "counts", l->counts);
		if (iso_of(sv, l->curr))
			cJSON_AddStringToObject(o, "curr", iso_of(sv, l->curr));
		if (l->comment[0])
			cJSON_AddStringToObject(o, "comment", l->comment);
		if (l->track[0])
			cJSON_AddStringToObject(o, "track", l->track);
		add_money(o, "wm", l->wm);
		add_money(o, "pay", l->pay);
		add_money(o, "ref", l->ref);
		if (iso_of(sv, l->cash_curr))
			cJSON_AddStringToObject(o, "cash_curr", iso_of(sv, l->cash_curr));
		add_time(o, "approved_at", l->approved_at);
		add_time(o, "hold_until", l->hold_until);
		cJSON_AddItemToArray(arr, o);
	}
	return doc;
}

/* The charset of a Content-Type, when it is not UTF-8 (else NULL). */
static bool foreign_charset(const char *ct)
{
	const char *c = ct;

	while (c && *c && strncasecmp(c, "charset=", 8) != 0)
		c++;
	if (!c || !*c)
		return false;
	c += 8;
	if (*c == '"')
		c++;
	return strncasecmp(c, "utf-8", 5) != 0 && strncasecmp(c, "utf8", 4) != 0;
}

int ruletest_case_save(const struct ruletest_save *sv, char *err, size_t errlen)
{
	struct ruletest_opts o;
	struct buf args, out, path, names;
	cJSON *doc = NULL, *params = NULL;
	char *text = NULL, now[32], why[1024];
	char *resp[RULETEST_PAGES_MAX];
	size_t i;
	int rc = -1, e = 0, run;

	memset(&o, 0, sizeof(o));
	memset(resp, 0, sizeof(resp));
	buf_init(&args, 0);
	buf_init(&out, 0);
	buf_init(&path, 4096);
	buf_init(&names, 0);
	if (sv->npages > RULETEST_PAGES_MAX) {
		snprintf(err, errlen, "more than %d pages: not saved", RULETEST_PAGES_MAX);
		goto out;
	}
	if (mkdir(sv->dir, 0777) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot make '%s': %s", sv->dir, strerror(errno));
		goto out;
	}
	/* leads.json and params.json (secrets as ***) */
	doc = save_leads_doc(sv);
	params = cJSON_CreateObject();
	if (!doc || !params)
		goto oom;
	for (i = 0; i < sv->nparams; i++)
		cJSON_AddStringToObject(params, sv->params[i].name,
					param_secret(sv, &sv->params[i]) ? "***"
					: sv->params[i].value ? sv->params[i].value : "");
	text = cJSON_Print(doc);
	if (!text || write_file(sv->dir, "leads.json", text, strlen(text), err, errlen) < 0)
		goto fail;
	free(text);
	text = cJSON_Print(params);
	if (!text || write_file(sv->dir, "params.json", text, strlen(text), err, errlen) < 0)
		goto fail;
	/* the answers, and args */
	e |= buf_addf(&args, "%s --variant %s --leads {case}/leads.json", sv->rule,
		      rule_variant_name(sv->variant));
	for (i = 0; i < sv->npages; i++) {
		const struct ruletest_page *pg = &sv->pages[i];
		const char *f = decode_format_name(pg->format);
		char name[64];

		snprintf(name, sizeof(name), "answer%zu.%s", i + 1,
			 strcmp(f, "json") == 0 || strcmp(f, "xml") == 0 ? f : "txt");
		if (write_file(sv->dir, name, pg->body, pg->len, err, errlen) < 0)
			goto fail;
		e |= buf_addf(&args, " --response {case}/%s", name);
		buf_reset(&path);
		e |= buf_addf(&path, "%s/%s", sv->dir, name);
		if (!(resp[i] = strdup(path.p ? path.p : "")))
			goto oom;
		o.responses[i] = resp[i];
		o.statuses[i] = pg->status;
	}
	o.nresponses = (unsigned)sv->npages;
	for (i = 0; i < sv->npages && sv->pages[i].status == 200; i++)
		;
	if (i < sv->npages) { /* one --status per page, in order */
		o.nstatuses = (unsigned)sv->npages;
		for (i = 0; i < sv->npages; i++)
			e |= buf_addf(&args, " --status %d", sv->pages[i].status);
	}
	for (i = 0; i < sv->npages; i++)
		if (foreign_charset(sv->pages[i].content_type)) {
			/* `rule test --content-type` gives the answers their charset */
			e |= buf_addf(&args, " --content-type \"%s\"", sv->pages[i].content_type);
			o.content_type = sv->pages[i].content_type;
			break;
		}
	e |= buf_adds(&args, " --params {case}/params.json");
	if (lead_time_format(sv->now, now, sizeof(now)) < 0)
		goto oom;
	e |= buf_addf(&args, " --now %s", now);
	if (sv->dates) {
		e |= buf_addf(&args, " --from %s --to %s", sv->dates->from, sv->dates->to);
		o.from = sv->dates->from;
		o.to = sv->dates->to;
	}
	e |= buf_addc(&args, '\n');
	if (e)
		goto oom;
	if (write_file(sv->dir, "args", args.p, args.len, err, errlen) < 0)
		goto fail;
	/* expected.txt: this run's report, with the real params, masked */
	buf_reset(&path);
	if (buf_addf(&path, "%s/%s.lua", sv->rules_dir, sv->rule) < 0)
		goto oom;
	buf_reset(&names);
	if (buf_addf(&names, "%s/leads.json", sv->dir) < 0)
		goto oom;
	o.rule = path.p;
	o.rule_label = sv->rule;
	o.variant = sv->variant;
	o.leads = names.p;
	o.param_list = sv->params;
	o.nparam_list = sv->nparams;
	o.now = sv->now;
	o.label_base = sv->dir;
	o.limits = sv->limits;
	run = ruletest_run(&o, &out, why, sizeof(why));
	if (run == RULETEST_EUSAGE) {
		snprintf(err, errlen, "the saved case does not run: %s", why);
		goto out;
	}
	if (write_file(sv->dir, "expected.txt", out.p ? out.p : "", out.len, err, errlen) < 0)
		goto fail;
	if (run < 0) {
		if (write_file(sv->dir, "exit", "1\n", 2, err, errlen) < 0)
			goto fail;
	} else {
		buf_reset(&path);
		if (buf_addf(&path, "%s/exit", sv->dir) < 0)
			goto oom;
		if (remove(path.p) < 0 && errno != ENOENT) {
			snprintf(err, errlen, "cannot remove '%s': %s", path.p, strerror(errno));
			goto out;
		}
	}
	rc = 0;
	goto out;
oom:
	snprintf(err, errlen, "out of memory");
	goto out;
fail:
	if (!text)
		snprintf(err, errlen, "out of memory");
out:
	for (i = 0; i < RULETEST_PAGES_MAX; i++)
		free(resp[i]);
	free(text);
	cJSON_Delete(doc);
	cJSON_Delete(params);
	buf_release(&args);
	buf_release(&out);
	buf_release(&path);
	buf_release(&names);
	return rc;
}
