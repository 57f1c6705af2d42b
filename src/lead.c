/* lead: what an edit does to a lead (approval, hold, cancel, payouts) and the
 * field-by-field diff a history row records; pure, see include/lead.h. */
#include "lead.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "status.h"
#include "tz.h"

#define LEAD_DAY 86400
#define LEAD_TIME_MAX INT64_C(253402300799) /* 9999-12-31T23:59:59Z */

static const char *const lead_sources[] = {
	[SOURCE_POLL] = "poll",
	[SOURCE_POSTBACK] = "postback",
	[SOURCE_TIMER] = "timer",
	[SOURCE_MANUAL] = "manual",
	[SOURCE_IMPORT] = "import",
	[SOURCE_DATES] = "dates",
	[SOURCE_CHARGEBACK] = "chargeback",
};

const char *lead_source_name(enum lead_source s)
{
	if ((int)s < SOURCE_POLL || (int)s > SOURCE_CHARGEBACK)
		return "unknown";
	return lead_sources[s];
}

int lead_source_by_name(const char *name)
{
	int s, found = 0;

	for (s = SOURCE_POLL; name && s <= SOURCE_CHARGEBACK && !found; s++)
		if (strcmp(name, lead_sources[s]) == 0)
			found = s;
	return found;
}

bool lead_int_from_double(double d, int64_t min, int64_t max, int64_t *out)
{
	/* false for NaN too: every comparison with it is false. The bounds
	 * of int64_t itself are tested apart: (double)INT64_MAX rounds up to
	 * 2^63, which does not fit. */
	if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) ||
	    !(d >= (double)min && d <= (double)max) || d != floor(d))
		return false;
	*out = (int64_t)d;
	return true;
}

void lead_strlcpy(char *dst, size_t dstlen, const char *s)
{
	size_t n, k;

	if (!dstlen)
		return;
	if (!s)
		s = "";
	n = strnlen(s, dstlen);
	if (n == dstlen) {
		/* s[n] is the first byte left out; when it continues a
		 * character, the whole character goes. More than three
		 * continuation bytes is not UTF-8: cut where the room ends. */
		n = dstlen - 1;
		for (k = 0; k < 3 && n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80; k++)
			n--;
		if (((unsigned char)s[n] & 0xc0) == 0x80)
			n = dstlen - 1;
	}
	memcpy(dst, s, n);
	dst[n] = '\0';
}

int lead_money_format(int64_t cents, char *out, size_t len)
{
	uint64_t mag = cents < 0 ? (uint64_t)0 - (uint64_t)cents : (uint64_t)cents;
	unsigned frac = (unsigned)(mag % 100);
	const char *sign = cents < 0 ? "-" : "";
	int n;

	if (frac == 0)
		n = snprintf(out, len, "%s%" PRIu64, sign, mag / 100);
	else if (frac % 10 == 0)
		n = snprintf(out, len, "%s%" PRIu64 ".%u", sign, mag / 100, frac / 10);
	else
		n = snprintf(out, len, "%s%" PRIu64 ".%02u", sign, mag / 100, frac);
	if (n < 0 || (size_t)n >= len) {
		if (len)
			out[0] = '\0';
		n = -1;
	}
	return n;
}

static bool lead__digit(char c)
{
	return c >= '0' && c <= '9';
}

int lead_money_parse(const char *s, int64_t *cents)
{
	const char *p = s;
	uint64_t units = 0, frac = 0, total, limit;
	int decimals = 0, rc = -1;
	bool neg = false, up = false;

	if (!p)
		goto out;
	if (*p == '-') {
		neg = true;
		p++;
	}
	if (!lead__digit(*p))
		goto out;
	for (; lead__digit(*p); p++)
		if (__builtin_mul_overflow(units, 10, &units) ||
		    __builtin_add_overflow(units, (uint64_t)(*p - '0'), &units))
			goto out;
	if (*p == '.') {
		p++;
		if (!lead__digit(*p))
			goto out;
		for (; lead__digit(*p); p++, decimals++) {
			if (decimals < 2)
				frac = frac * 10 + (uint64_t)(*p - '0');
			else if (decimals == 2)
				up = *p >= '5'; /* the digits after cannot reach .005 alone */
		}
	}
	if (*p)
		goto out;
	if (decimals == 1)
		frac *= 10;
	limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	if (__builtin_mul_overflow(units, 100, &total) || __builtin_add_overflow(total, frac, &total) ||
	    __builtin_add_overflow(total, (uint64_t)up, &total) || total > limit)
		goto out;
	if (!neg)
		*cents = (int64_t)total;
	else if (total == 0)
		*cents = 0;
	else
		*cents = -(int64_t)(total - 1) - 1;
	rc = 0;
out:
	return rc;
}

int lead_time_format(int64_t t, char *out, size_t len)
{
	struct tm tm;
	time_t tt = (time_t)t;
	int n = -1;

	if (len)
		out[0] = '\0';
	if (t < 0 || t > LEAD_TIME_MAX || !gmtime_r(&tt, &tm))
		goto out;
	n = snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (n < 0 || (size_t)n >= len) {
		if (len)
			out[0] = '\0';
		n = -1;
	}
out:
	return n;
}

/* The fields a history row compares, in lead_diff()'s order. The same table
 * decides whether an edit changed anything, so the two never disagree. */
enum lead_fkind {
	FK_NUM,   /* integer */
	FK_ID,    /* integer, null when 0 */
	FK_MONEY, /* cents, written in units */
	FK_TIME,  /* UNIX seconds, written ISO-8601, null when 0 */
	FK_STR,
};

struct lead_fdesc {
	const char *name;
	enum lead_fkind kind;
	size_t off, size;
};

#define LEAD_F(P, f, k) { #f, FK_##k, offsetof(struct lead, f), sizeof(((struct lead *)0)->f) }
static const struct lead_fdesc lead_fields[] = { LEAD_FIELDS(LEAD_F, LEAD_SEP_COMMA, ~) };
#define LEAD_NFIELDS (sizeof(lead_fields) / sizeof(lead_fields[0]))

static int64_t lead__num(const struct lead *l, const struct lead_fdesc *f)
{
	const char *p = (const char *)l + f->off;
	int64_t v64;
	int v;

	if (f->size == sizeof(int64_t)) {
		memcpy(&v64, p, sizeof(v64));
		return v64;
	}
	memcpy(&v, p, sizeof(v));
	return v;
}

static const char *lead__str(const struct lead *l, const struct lead_fdesc *f, size_t *n)
{
	const char *p = (const char *)l + f->off;

	*n = strnlen(p, f->size);
	return p;
}

static bool lead__field_same(const struct lead *a, const struct lead *b, const struct lead_fdesc *f)
{
	size_t na, nb;
	const char *sa, *sb;

	if (f->kind != FK_STR)
		return lead__num(a, f) == lead__num(b, f);
	sa = lead__str(a, f, &na);
	sb = lead__str(b, f, &nb);
	return na == nb && memcmp(sa, sb, na) == 0;
}

static bool lead__same(const struct lead *a, const struct lead *b)
{
	size_t i;

	for (i = 0; i < LEAD_NFIELDS; i++)
		if (!lead__field_same(a, b, &lead_fields[i]))
			return false;
	return true;
}

static int lead__field_json(struct buf *b, const struct lead *l, const struct lead_fdesc *f)
{
	char tmp[32];
	const char *s;
	size_t n;
	int64_t v = 0;

	if (f->kind == FK_STR) {
		s = lead__str(l, f, &n);
		return buf_add_json_str(b, s, n);
	}
	v = lead__num(l, f);
	if ((f->kind == FK_ID || f->kind == FK_TIME) && v == 0)
		return buf_adds(b, "null");
	if (f->kind == FK_MONEY && lead_money_format(v, tmp, sizeof(tmp)) >= 0)
		return buf_adds(b, tmp);
	if (f->kind == FK_TIME && lead_time_format(v, tmp, sizeof(tmp)) >= 0)
		return buf_addf(b, "\"%s\"", tmp);
	/* numbers, and a time too far out for a calendar: the raw integer */
	return buf_addf(b, "%" PRId64, v);
}

static void lead__cut(struct buf *b, size_t len)
{
	b->len = len;
	if (b->p)
		b->p[len] = '\0';
}

int lead_diff(const struct lead *a, const struct lead *b, struct buf *before, struct buf *after)
{
	size_t i, b0 = before->len, a0 = after->len;
	int n = 0, rc = -1;

	if (buf_addc(before, '{') < 0 || buf_addc(after, '{') < 0)
		goto out;
	for (i = 0; i < LEAD_NFIELDS; i++) {
		const struct lead_fdesc *f = &lead_fields[i];
		const char *sep = n ? "," : "";

		if (lead__field_same(a, b, f))
			continue;
		if (buf_addf(before, "%s\"%s\":", sep, f->name) < 0 ||
		    lead__field_json(before, a, f) < 0 ||
		    buf_addf(after, "%s\"%s\":", sep, f->name) < 0 ||
		    lead__field_json(after, b, f) < 0)
			goto out;
		n++;
	}
	if (buf_addc(before, '}') < 0 || buf_addc(after, '}') < 0)
		goto out;
	rc = n;
out:
	if (rc < 0) {
		lead__cut(before, b0);
		lead__cut(after, a0);
	}
	return rc;
}

__attribute__((format(printf, 3, 4)))
static int lead__err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* The checks that do not depend on the lead's state. */
static int lead__check(const struct lead *old, const struct lead_edit *e, unsigned set, char *err,
		       size_t errlen)
{
	static const struct {
		unsigned flag;
		const char *name;
		size_t off;
	} cash[] = {
		{ LF_CASH_WM, "wm", offsetof(struct lead_edit, cash_wm) },
		{ LF_CASH_PAY, "pay", offsetof(struct lead_edit, cash_pay) },
		{ LF_CASH_REF, "ref", offsetof(struct lead_edit, cash_ref) },
	};
	char m[32];
	size_t i;
	int64_t v;
	int rc = -1;

	if ((set & LF_STATUS) && !status_valid(e->status)) {
		lead__err(err, errlen, "lead %" PRId64 ": status %d is not in %d..%d", old->id,
			  e->status, STATUS_MIN, STATUS_MAX);
		goto out;
	}
	if ((set & LF_REASON) && !reason_valid(e->reason)) {
		lead__err(err, errlen, "lead %" PRId64 ": reason %d is not in 1..%d", old->id,
			  e->reason, REASON_MAX);
		goto out;
	}
	if ((set & LF_HOLD) && e->hold_days != -1 &&
	    (e->hold_days < 0 || e->hold_days > LEAD_HOLD_DAYS_MAX)) {
		lead__err(err, errlen, "lead %" PRId64 ": hold of %d days is not in 0..%d", old->id,
			  e->hold_days, LEAD_HOLD_DAYS_MAX);
		goto out;
	}
	if ((set & LF_BASE) && e->base < 0) {
		lead_money_format(e->base, m, sizeof(m));
		lead__err(err, errlen, "lead %" PRId64 ": base %s is negative", old->id, m);
		goto out;
	}
	if ((set & LF_COUNTS) && e->counts < 0) {
		lead__err(err, errlen, "lead %" PRId64 ": counts %d is negative", old->id, e->counts);
		goto out;
	}
	if ((set & LF_CURR) && e->curr < 0) {
		lead__err(err, errlen, "lead %" PRId64 ": curr %d is not a currency id", old->id,
			  e->curr);
		goto out;
	}
	if ((set & LF_CASH_CC) && e->cash_cc < 0) {
		lead__err(err, errlen, "lead %" PRId64 ": cash cc %d is not a currency id", old->id,
			  e->cash_cc);
		goto out;
	}
	if (set & LF_GOAL) {
		if (e->goal < 0) {
			lead__err(err, errlen, "lead %" PRId64 ": goal %" PRId64 " is not a goal id",
				  old->id, e->goal);
			goto out;
		}
		if (e->goal > 0 && !e->new_goal) {
			lead__err(err, errlen,
				  "lead %" PRId64 ": goal %" PRId64 " is given without its settings",
				  old->id, e->goal);
			goto out;
		}
		if (e->new_goal && e->new_goal->id != e->goal) {
			lead__err(err, errlen,
				  "lead %" PRId64 ": goal %" PRId64 " does not match its settings (goal %" PRId64 ")",
				  old->id, e->goal, e->new_goal->id);
			goto out;
		}
	}
	for (i = 0; i < sizeof(cash) / sizeof(cash[0]); i++) {
		if (!(set & cash[i].flag))
			continue;
		memcpy(&v, (const char *)e + cash[i].off, sizeof(v));
		if (v < 0) {
			lead_money_format(v, m, sizeof(m));
			lead__err(err, errlen, "lead %" PRId64 ": cash %s %s is negative", old->id,
				  cash[i].name, m);
			goto out;
		}
	}
	rc = 0;
out:
	return rc;
}

/* A payout currency change must restate every payout: lead_apply has no
 * exchange rates, so a payout left out would keep its number and take the
 * new currency's name (lead.h). The currency before is the lead's
 * cash_curr, or its goal's when 0; a cc of 0 names the goal's currency
 * (the new goal's when the edit changes the goal). */
static int lead__check_cc(const struct lead *old, const struct lead_goal *goal,
			  const struct lead_edit *e, unsigned set, char *err, size_t errlen)
{
	static const struct {
		unsigned flag;
		const char *name;
	} need[] = { { LF_CASH_WM, "wm" }, { LF_CASH_PAY, "pay" }, { LF_CASH_REF, "ref" } };
	const struct lead_goal *ng = (set & LF_GOAL) ? e->new_goal : goal;
	int from = old->cash_curr ? old->cash_curr : goal ? goal->curr : 0;
	int to = e->cash_cc ? e->cash_cc : ng ? ng->curr : 0;
	char missing[32] = "";
	size_t i, n = 0;

	if (!(set & LF_CASH_CC) || from == to)
		return 0;
	for (i = 0; i < sizeof(need) / sizeof(need[0]); i++)
		if (!(set & need[i].flag))
			n += (size_t)snprintf(missing + n, sizeof(missing) - n, "%s%s", n ? ", " : "",
					      need[i].name);
	if (!n)
		return 0;
	return lead__err(err, errlen,
			 "lead %" PRId64 ": cash cc changes the payouts' currency without %s: "
			 "give wm, pay and ref together",
			 old->id, missing);
}

/* round(base * counts * pct / 10000), half away from zero; -1 on overflow. */
static int lead__percent(int64_t base, int counts, int64_t pct, int64_t *out)
{
	int64_t p, q, r;

	if (__builtin_mul_overflow(base, (int64_t)(counts > 0 ? counts : 1), &p) ||
	    __builtin_mul_overflow(p, pct, &p))
		return -1;
	q = p / 10000;
	r = p % 10000;
	if (r >= 5000)
		q++;
	else if (r <= -5000)
		q--;
	*out = q;
	return 0;
}

/* The payouts of the approval mechanics (see lead.h): a payout this edit's
 * cash sets, or one already set (a cash that came with the hold), is kept;
 * the others come from the goal. */
static int lead__payouts(struct lead *n, const struct lead_goal *g, unsigned set, char *err,
			 size_t errlen)
{
	int64_t *dst[3] = { &n->wm, &n->pay, &n->ref };
	const unsigned flag[3] = { LF_CASH_WM, LF_CASH_PAY, LF_CASH_REF };
	int64_t amount[3];
	bool computed = false;
	size_t i;
	int rc = -1;

	if (!g) {
		rc = 0;
		goto out;
	}
	amount[0] = g->wm;
	amount[1] = g->pay;
	amount[2] = g->ref;
	for (i = 0; i < 3; i++) {
		if ((set & flag[i]) || *dst[i] != 0)
			continue;
		if (g->payout != PAYOUT_PERCENT)
			*dst[i] = amount[i]; /* fixed; recurring pays its amount per lead */
		else if (lead__percent(n->base, n->counts, amount[i], dst[i]) < 0) {
			lead__err(err, errlen,
				  "lead %" PRId64 ": percent payout of goal %" PRId64 " overflows", n->id,
				  g->id);
			goto out;
		}
		computed = true;
	}
	/* a percent of the sale is in the sale's currency */
	if (computed && g->payout == PAYOUT_PERCENT && !(set & LF_CASH_CC) && n->curr)
		n->cash_curr = n->curr;
	rc = 0;
out:
	return rc;
}

static bool lead__is_closed(int s)
{
	return s == LS_PAID || s == LS_RETURN;
}

/* May a lead move from status o to t (o != t) on behalf of source? */
static int lead__move_ok(const struct lead *old, int t, const struct lead_offer *offer,
			 enum lead_source source, char *err, size_t errlen)
{
	int o = old->status, rc = -1;
	bool unapprove = source == SOURCE_DATES || source == SOURCE_CHARGEBACK || offer->cancel_approved;

	if (t <= LS_CALLBACK && o >= LS_HOLD) {
		lead__err(err, errlen, "lead %" PRId64 " is in '%s' and cannot go back to '%s'",
			  old->id, status_code(o), status_code(t));
		goto out;
	}
	if (status_is_approved(o)) {
		if (t == LS_HOLD) {
			lead__err(err, errlen,
				  "lead %" PRId64 " is approved ('%s') and cannot be put on hold",
				  old->id, status_code(o));
			goto out;
		}
		if (t == LS_CANCEL && !unapprove) {
			lead__err(err, errlen,
				  "lead %" PRId64 " is approved ('%s'): only the date-range check, a "
				  "chargeback or the offer's cancel_approved setting may cancel it (source '%s')",
				  old->id, status_code(o), lead_source_name(source));
			goto out;
		}
		if (t == LS_DELETED && !unapprove && source != SOURCE_MANUAL) {
			lead__err(err, errlen,
				  "lead %" PRId64 " is approved ('%s'): only an operator, the date-range "
				  "check, a chargeback or the offer's cancel_approved setting may delete it (source '%s')",
				  old->id, status_code(o), lead_source_name(source));
			goto out;
		}
		if (lead__is_closed(o) && status_is_approved(t) && !(o == LS_PAID && t == LS_RETURN)) {
			lead__err(err, errlen, "lead %" PRId64 " is closed ('%s') and cannot move to '%s'",
				  old->id, status_code(o), status_code(t));
			goto out;
		}
	}
	rc = 0;
out:
	return rc;
}

/* Mirrors lead_apply for an edit that keeps the status: no move check and
 * no approval; the reason is cleared unless the status is 5 (then the
 * edit's, else kept when valid); hold_until is cleared unless the status
 * is 4 (then kept, unless a status 4 finds it unset); the comment is the
 * edit's text when it fits whole. Deleted leads (12) take the full way. */
bool lead_edit_is_noop(const struct lead *cur, const struct lead_edit *e)
{
	const unsigned only = LF_STATUS | LF_REASON | LF_COMMENT;
	int s = cur->status;
	bool st = e->set & LF_STATUS, rs = e->set & LF_REASON;

	if ((e->set & ~only) || (st && e->status != s) || !status_valid(s) || s == LS_DELETED)
		return false;
	if (rs && !reason_valid(e->reason))
		return false;
	if (s == LS_CANCEL ? (rs ? e->reason != cur->reason : !reason_valid(cur->reason))
			   : cur->reason != 0)
		return false;
	if (s == LS_HOLD ? st && cur->hold_until == 0 : cur->hold_until != 0)
		return false;
	if (e->set & LF_COMMENT) {
		const char *t = e->comment ? e->comment : "";
		size_t l = strnlen(t, LEAD_COMMENT_MAX);

		if (l == LEAD_COMMENT_MAX || memcmp(cur->comment, t, l + 1) != 0)
			return false;
	}
	return true;
}

enum lead_result lead_apply(const struct lead *old, const struct lead_offer *offer,
			    const struct lead_goal *goal, const struct lead_edit *e,
			    enum lead_source source, int64_t now, struct lead *out, char *err,
			    size_t errlen)
{
	static const struct lead_offer no_offer;
	const struct lead_goal *g = goal;
	enum lead_result rc = LEAD_REFUSED;
	unsigned set = e->set;
	struct lead n = *old;
	int o = old->status, want = 0, fin, hold_days = -1;
	bool accept;

	if (!offer)
		offer = &no_offer;
	if (!e->accept)
		set &= ~(unsigned)LF_ACCEPT;
	accept = set & LF_ACCEPT;
	if (lead__check(old, e, set, err, errlen) < 0 ||
	    lead__check_cc(old, goal, e, set, err, errlen) < 0)
		goto out;
	if (o == LS_DELETED) {
		/* a repeated "deleted" (a postback sent twice) is no news */
		if ((set & ~(unsigned)LF_STATUS) == 0 && (!(set & LF_STATUS) || e->status == LS_DELETED))
			rc = LEAD_UNCHANGED;
		else
			lead__err(err, errlen, "lead %" PRId64 " is deleted and cannot be edited", old->id);
		goto out;
	}

	/* the status the edit asks for; 0: the lead's own */
	if (set & LF_STATUS)
		want = e->status;
	if (set & LF_HOLD) {
		if (want && want != LS_HOLD) {
			lead__err(err, errlen, "lead %" PRId64 ": hold and status %d contradict", old->id,
				  want);
			goto out;
		}
		want = LS_HOLD;
		hold_days = e->hold_days;
	}
	if (accept) {
		if (!want)
			want = status_is_approved(o) ? 0 : LS_PACKING;
		else if (want != LS_HOLD && !status_is_approved(want)) {
			lead__err(err, errlen, "lead %" PRId64 ": accept and status %d contradict",
				  old->id, want);
			goto out;
		}
	}
	if (hold_days < 0)
		hold_days = offer->hold_days > 0 ? offer->hold_days : 0;
	if (hold_days > LEAD_HOLD_DAYS_MAX)
		hold_days = LEAD_HOLD_DAYS_MAX;

	/* The timer acts on what it read a moment ago; if the lead has moved
	 * on since (cancelled, hold extended, answered), there is nothing to do. */
	if (source == SOURCE_TIMER &&
	    ((status_is_approved(want) && (o != LS_HOLD || old->hold_until > now)) ||
	     (want == LS_CANCEL && (o < LS_NEW || o > LS_CALLBACK)))) {
		rc = LEAD_UNCHANGED;
		goto out;
	}

	fin = want ? want : o;
	if (fin != o && lead__move_ok(old, fin, offer, source, err, errlen) < 0)
		goto out;

	if (set & LF_COMMENT)
		lead_strlcpy(n.comment, sizeof(n.comment), e->comment);
	if (set & LF_TRACK)
		lead_strlcpy(n.track, sizeof(n.track), e->track);
	if (set & LF_BASE)
		n.base = e->base;
	if (set & LF_COUNTS)
		n.counts = e->counts;
	if (set & LF_CURR)
		n.curr = e->curr;
	if (set & LF_GOAL) {
		n.goal = e->goal;
		g = e->new_goal;
	}
	if (set & LF_CASH_WM)
		n.wm = e->cash_wm;
	if (set & LF_CASH_PAY)
		n.pay = e->cash_pay;
	if (set & LF_CASH_REF)
		n.ref = e->cash_ref;
	if (set & LF_CASH_CC)
		n.cash_curr = e->cash_cc;

	if (status_is_approved(fin) && !status_is_approved(o) && old->approved_at == 0) {
		if (lead__payouts(&n, g, set, err, errlen) < 0)
			goto out;
		n.approved_at = now;
	}

	if (fin != LS_HOLD)
		n.hold_until = 0;
	else if (want == LS_HOLD && (o != LS_HOLD || old->hold_until == 0))
		n.hold_until = now + (int64_t)hold_days * LEAD_DAY;

	n.status = fin;
	if (fin != LS_CANCEL)
		n.reason = 0;
	else if (set & LF_REASON)
		n.reason = e->reason;
	else if (o != LS_CANCEL || !reason_valid(old->reason))
		n.reason = reason_valid(offer->reject_reason) ? offer->reject_reason : LEAD_REASON_DEFAULT;

	rc = lead__same(old, &n) ? LEAD_UNCHANGED : LEAD_CHANGED;
out:
	if (rc == LEAD_CHANGED)
		*out = n;
	else if (out != old)
		*out = *old;
	return rc;
}

/* Reads exactly n decimal digits at s. */
static bool lead__digits(const char *s, int n, int *out)
{
	int i, v = 0;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* ISO-8601: YYYY-MM-DD, optionally followed by T or space, HH:MM[:SS[.f]]
 * and a zone (Z, ±HH, ±HHMM, ±HH:MM; none means UTC). */
int lead_time_parse(const char *s, int64_t *out)
{
	int y, mo, d, h = 0, mi = 0, sec = 0, zh = 0, zm = 0, sign = 1;
	const char *p = s;

	if (strlen(s) < 10 || !lead__digits(p, 4, &y) || p[4] != '-' ||
	    !lead__digits(p + 5, 2, &mo) || p[7] != '-' || !lead__digits(p + 8, 2, &d))
		return -1;
	p += 10;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		p++;
		if (!lead__digits(p, 2, &h) || p[2] != ':' || !lead__digits(p + 3, 2, &mi))
			return -1;
		p += 5;
		if (*p == ':') {
			if (!lead__digits(p + 1, 2, &sec))
				return -1;
			p += 3;
			if (*p == '.' || *p == ',') {
				p++;
				if (*p < '0' || *p > '9')
					return -1;
				while (*p >= '0' && *p <= '9')
					p++;
			}
		}
		if (*p == 'Z' || *p == 'z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			sign = *p == '-' ? -1 : 1;
			p++;
			if (!lead__digits(p, 2, &zh))
				return -1;
			p += 2;
			if (*p == ':')
				p++;
			if (*p && !lead__digits(p, 2, &zm))
				return -1;
			if (*p)
				p += 2;
		}
	}
	if (*p || !tz_date_valid(y, mo, d) || h > 23 || mi > 59 || sec > 59 || zh > 23 || zm > 59)
		return -1;
	*out = tz_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
	       sign * (zh * 3600 + zm * 60);
	return 0;
}
