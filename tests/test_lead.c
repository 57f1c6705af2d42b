/* Tests of src/lead.c: every edit rule of lead_apply(), the history diff,
 * money and time formatting, source names. */
#include "lead.h"
#include "status.h"
#include "test.h"

#include <math.h>
#include <stdio.h>

#define NOW INT64_C(1795168800) /* 2026-11-20T10:00:00Z */
#define DAY INT64_C(86400)

static const struct lead_offer offer = { .hold_days = 7, .reject_reason = 9 };
static const struct lead_goal fixed = {
	.id = 5, .payout = PAYOUT_FIXED, .wm = 500, .pay = 800, .ref = 50, .curr = 2
};
/* 12.5 %, 20 %, 1 % */
static const struct lead_goal pct = {
	.id = 6, .payout = PAYOUT_PERCENT, .wm = 1250, .pay = 2000, .ref = 100, .curr = 2
};

static struct lead mk(int status)
{
	struct lead l;

	memset(&l, 0, sizeof(l));
	l.id = 17;
	l.offer = 10;
	l.status = status;
	l.base = 3000;
	l.counts = 1;
	l.curr = 3;
	l.goal = 5;
	l.created = NOW - DAY;
	if (status == LS_CANCEL)
		l.reason = 2;
	if (status == LS_HOLD)
		l.hold_until = NOW + DAY;
	return l;
}

/* An approved lead as the approval mechanics left it. */
static struct lead mk_approved(int status)
{
	struct lead l = mk(status);

	l.wm = 500;
	l.pay = 800;
	l.ref = 50;
	l.approved_at = NOW - DAY;
	return l;
}

static enum lead_result apply(const struct lead *l, const struct lead_edit *e, enum lead_source src,
			      struct lead *out, char *err)
{
	err[0] = '\0';
	return lead_apply(l, &offer, &fixed, e, src, NOW, out, err, 256);
}

static bool lead_eq(const struct lead *a, const struct lead *b)
{
	struct buf x, y;
	int n;

	buf_init(&x, 0);
	buf_init(&y, 0);
	n = lead_diff(a, b, &x, &y);
	buf_release(&x);
	buf_release(&y);
	return n == 0;
}

TEST(lead_accept_fixed)
{
	struct lead l = mk(LS_PROCESSING), out;
	struct lead_edit e = { .set = LF_ACCEPT, .accept = true };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_PACKING);
	ASSERT_EQ(out.reason, 0);
	ASSERT_EQ(out.wm, 500);
	ASSERT_EQ(out.pay, 800);
	ASSERT_EQ(out.ref, 50);
	ASSERT_EQ(out.cash_curr, 0); /* the goal's */
	ASSERT_EQ(out.approved_at, NOW);
	ASSERT_EQ(out.hold_until, 0);
	ASSERT_STREQ(err, "");
}

TEST(lead_accept_false_is_no_edit)
{
	struct lead l = mk(LS_PROCESSING), out;
	struct lead_edit e = { .set = LF_ACCEPT, .accept = false };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_UNCHANGED);
	ASSERT_EQ(out.status, LS_PROCESSING);
}

TEST(lead_accept_percent)
{
	struct lead l = mk(LS_CALLBACK), out;
	struct lead_edit e = { .set = LF_ACCEPT, .accept = true };
	char err[256];

	l.counts = 2; /* 2 × 30.00 = 60.00 */
	ASSERT_EQ(lead_apply(&l, &offer, &pct, &e, SOURCE_POLL, NOW, &out, err, sizeof(err)),
		  LEAD_CHANGED);
	ASSERT_EQ(out.wm, 750);  /* 12.5 % */
	ASSERT_EQ(out.pay, 1200); /* 20 % */
	ASSERT_EQ(out.ref, 60);  /* 1 % */
	ASSERT_EQ(out.cash_curr, 3); /* a percent of the sale is in the sale's currency */
	ASSERT_EQ(out.approved_at, NOW);
}

TEST(lead_accept_percent_rounds_and_counts_zero)
{
	struct lead l = mk(LS_PROCESSING), out;
	struct lead_edit e = { .set = LF_ACCEPT, .accept = true };
	char err[256];

	l.base = 333;  /* 3.33 × 12.5 % = 0.41625 → 0.42; × 20 % = 0.666 → 0.67; × 1 % → 0.03 */
	l.counts = 0;  /* read as 1 */
	ASSERT_EQ(lead_apply(&l, &offer, &pct, &e, SOURCE_POLL, NOW, &out, err, sizeof(err)),
		  LEAD_CHANGED);
	ASSERT_EQ(out.wm, 42);
	ASSERT_EQ(out.pay, 67);
	ASSERT_EQ(out.ref, 3);
	ASSERT_EQ(out.counts, 0);

	l.base = 4;    /* 0.04 × 12.5 % = 0.005 → 0.01 (half away from zero) */
	ASSERT_EQ(lead_apply(&l, &offer, &pct, &e, SOURCE_POLL, NOW, &out, err, sizeof(err)),
		  LEAD_CHANGED);
	ASSERT_EQ(out.wm, 1);
	ASSERT_EQ(out.ref, 0);
}

TEST(lead_accept_percent_uses_new_base_and_goal)
{
	struct lead l = mk(LS_PROCESSING), out;
	struct lead_edit e = { .set = LF_ACCEPT | LF_BASE | LF_COUNTS | LF_GOAL, .accept = true,
			       .base = 10000, .counts = 3, .goal = 6, .new_goal = &pct };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.goal, 6);
	ASSERT_EQ(out.wm, 3750); /* 300.00 × 12.5 % */
	ASSERT_EQ(out.pay, 6000);
}

TEST(lead_percent_overflow_refused)
{
	struct lead l = mk(LS_PROCESSING), out;
	struct lead_edit e = { .set = LF_ACCEPT, .accept = true };
	char err[256];

	l.base = INT64_MAX / 2;
	l.counts = 3;
	ASSERT_EQ(lead_apply(&l, &offer, &pct, &e, SOURCE_POLL, NOW, &out, err, sizeof(err)),
		  LEAD_REFUSED);
	ASSERT_STREQ(err, "lead 17: percent payout of goal 6 overflows");
	ASSERT_EQ(out.status, LS_PROCESSING);
}

TEST(lead_accept_cash_overrides_each_field)
{
	struct lead l = mk(LS_PROCESSING), out;
	/* cc 2 is the goal's currency: no change of currency, pay alone is fine */
	struct lead_edit e = { .set = LF_ACCEPT | LF_CASH_PAY | LF_CASH_CC, .accept = true,
			       .cash_pay = 1234, .cash_cc = 2 };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.wm, 500); /* the goal's */
	ASSERT_EQ(out.pay, 1234);
	ASSERT_EQ(out.ref, 50);
	ASSERT_EQ(out.cash_curr, 2);

	e.set = LF_ACCEPT | LF_CASH_WM;
	e.cash_wm = 0; /* an explicit zero is an override too */
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.wm, 0);
	ASSERT_EQ(out.pay, 800);
	ASSERT_EQ(out.ref, 50);
	ASSERT_EQ(out.cash_curr, 0);

	e.set = LF_ACCEPT | LF_CASH_REF;
	e.cash_ref = 7;
	ASSERT_EQ(lead_apply(&l, &offer, &pct, &e, SOURCE_POLL, NOW, &out, err, sizeof(err)),
		  LEAD_CHANGED);
	ASSERT_EQ(out.wm, 375);
	ASSERT_EQ(out.ref, 7);
}

/* Issue 8 item 7: a cc that changes the payouts' currency must come with
 * wm, pay and ref, else the payouts left out would be relabelled, not
 * converted. */
TEST(lead_cash_cc_change_needs_every_payout)
{
	struct lead l = mk(LS_PROCESSING), a = mk_approved(LS_TRANSIT), out;
	struct lead_edit e = { .set = LF_ACCEPT | LF_CASH_PAY | LF_CASH_CC, .accept = true,
			       .cash_pay = 1234, .cash_cc = 4 };
	char err[256];

	/* pay alone in currency 4 (the goal's is 2): refused, nothing changes */
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	ASSERT_STREQ(err, "lead 17: cash cc changes the payouts' currency without wm, ref: "
			  "give wm, pay and ref together");
	ASSERT(lead_eq(&out, &l));
	e.set = LF_CASH_CC;
	ASSERT_EQ(apply(&a, &e, SOURCE_POSTBACK, &out, err), LEAD_REFUSED);
	ASSERT_CONTAINS(err, "without wm, pay, ref:");
	e.set = LF_CASH_CC | LF_CASH_WM | LF_CASH_REF;
	e.cash_wm = 1;
	e.cash_ref = 2;
	ASSERT_EQ(apply(&a, &e, SOURCE_POSTBACK, &out, err), LEAD_REFUSED);
	ASSERT_CONTAINS(err, "without pay:");

	/* all three: the new currency and its amounts, approval included */
	e.set = LF_ACCEPT | LF_CASH_WM | LF_CASH_PAY | LF_CASH_REF | LF_CASH_CC;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_PACKING);
	ASSERT_EQ(out.wm, 1);
	ASSERT_EQ(out.pay, 1234);
	ASSERT_EQ(out.ref, 2);
	ASSERT_EQ(out.cash_curr, 4);

	/* a cc that names the currency the payouts already have changes nothing */
	a.cash_curr = 4;
	e.set = LF_CASH_PAY | LF_CASH_CC;
	ASSERT_EQ(apply(&a, &e, SOURCE_POSTBACK, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.pay, 1234);
	ASSERT_EQ(out.wm, 500);
	ASSERT_EQ(out.cash_curr, 4);
	/* cc 0 (back to the goal's, 2) is a change too */
	e.cash_cc = 0;
	ASSERT_EQ(apply(&a, &e, SOURCE_POSTBACK, &out, err), LEAD_REFUSED);
	ASSERT_CONTAINS(err, "without wm, ref:");
	/* ... and so is 2 written out; with all three it is taken */
	e.cash_cc = 2;
	e.set = LF_CASH_WM | LF_CASH_PAY | LF_CASH_REF | LF_CASH_CC;
	ASSERT_EQ(apply(&a, &e, SOURCE_POSTBACK, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.cash_curr, 2);
	ASSERT_EQ(out.wm, 1);
}

TEST(lead_cash_on_approved_lead_adjusts_payout)
{
	struct lead l = mk_approved(LS_TRANSIT), out;
	struct lead_edit e = { .set = LF_CASH_PAY, .cash_pay = 900 };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POSTBACK, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.pay, 900);
	ASSERT_EQ(out.wm, 500);
	ASSERT_EQ(out.approved_at, NOW - DAY);
}

TEST(lead_hold_cash_kept_at_approval)
{
	struct lead l = mk(LS_PROCESSING), held, out;
	struct lead_edit hold = { .set = LF_HOLD | LF_CASH_PAY, .hold_days = -1, .cash_pay = 700 };
	struct lead_edit acc = { .set = LF_ACCEPT, .accept = true };
	char err[256];

	ASSERT_EQ(apply(&l, &hold, SOURCE_POLL, &held, err), LEAD_CHANGED);
	ASSERT_EQ(held.pay, 700);
	ASSERT_EQ(held.approved_at, 0);
	ASSERT_EQ(lead_apply(&held, &offer, &fixed, &acc, SOURCE_TIMER, held.hold_until, &out, err,
			     sizeof(err)),
		  LEAD_CHANGED);
	ASSERT_EQ(out.pay, 700);
	ASSERT_EQ(out.wm, 500);
	ASSERT_EQ(out.ref, 50);
}

TEST(lead_accept_twice_is_noop)
{
	struct lead l = mk(LS_PROCESSING), a, b;
	struct lead_edit e = { .set = LF_ACCEPT, .accept = true };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &a, err), LEAD_CHANGED);
	ASSERT_EQ(lead_apply(&a, &offer, &pct, &e, SOURCE_POLL, NOW + 600, &b, err, sizeof(err)),
		  LEAD_UNCHANGED);
	ASSERT(lead_eq(&a, &b));
	ASSERT_EQ(b.approved_at, NOW);

	/* on a delivered lead, accept does not send it back to packing */
	l = mk_approved(LS_DELIVERED);
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &b, err), LEAD_UNCHANGED);
	ASSERT_EQ(b.status, LS_DELIVERED);

	/* other fields of the same edit still apply */
	e.set |= LF_COMMENT;
	e.comment = "confirmed again";
	ASSERT_EQ(apply(&a, &e, SOURCE_POLL, &b, err), LEAD_CHANGED);
	ASSERT_STREQ(b.comment, "confirmed again");
	ASSERT_EQ(b.status, LS_PACKING);
	ASSERT_EQ(b.approved_at, NOW);
	ASSERT_EQ(b.wm, 500);
}

TEST(lead_status_paid_on_unapproved_gets_payouts)
{
	struct lead l = mk(LS_PROCESSING), out;
	struct lead_edit e = { .set = LF_STATUS, .status = LS_PAID };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_PAID);
	ASSERT_EQ(out.approved_at, NOW);
	ASSERT_EQ(out.wm, 500);
	ASSERT_EQ(out.pay, 800);
	ASSERT_EQ(out.ref, 50);

	/* accept with a delivery status: approve, then that status */
	e.set = LF_ACCEPT | LF_STATUS;
	e.accept = true;
	e.status = LS_TRANSIT;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_TRANSIT);
	ASSERT_EQ(out.approved_at, NOW);
	ASSERT_EQ(out.pay, 800);
}

TEST(lead_status_move_within_approved_keeps_payouts)
{
	struct lead l = mk_approved(LS_PACKING), out;
	struct lead_edit e = { .set = LF_STATUS, .status = LS_TRANSIT };
	char err[256];

	ASSERT_EQ(lead_apply(&l, &offer, &pct, &e, SOURCE_POLL, NOW, &out, err, sizeof(err)),
		  LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_TRANSIT);
	ASSERT_EQ(out.wm, 500);
	ASSERT_EQ(out.approved_at, NOW - DAY);
}

TEST(lead_hold_offer_days_and_n_days)
{
	struct lead l = mk(LS_PROCESSING), out;
	struct lead_edit e = { .set = LF_HOLD, .hold_days = -1 };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_HOLD);
	ASSERT_EQ(out.hold_until, NOW + 7 * DAY);
	ASSERT_EQ(out.approved_at, 0);
	ASSERT_EQ(out.wm, 0); /* payouts come when the hold ends */

	e.hold_days = 3;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.hold_until, NOW + 3 * DAY);

	/* no offer: hold = true is a hold of 0 days, released at the next tick */
	e.hold_days = -1;
	ASSERT_EQ(lead_apply(&l, NULL, &fixed, &e, SOURCE_POLL, NOW, &out, err, sizeof(err)),
		  LEAD_CHANGED);
	ASSERT_EQ(out.hold_until, NOW);

	/* status 4 without hold means hold for the offer's days */
	e.set = LF_STATUS;
	e.status = LS_HOLD;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_HOLD);
	ASSERT_EQ(out.hold_until, NOW + 7 * DAY);
}

TEST(lead_hold_again_keeps_deadline)
{
	struct lead l = mk(LS_HOLD), out;
	struct lead_edit e = { .set = LF_HOLD, .hold_days = -1 };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_UNCHANGED);
	ASSERT_EQ(out.hold_until, NOW + DAY);
	e.hold_days = 30;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_UNCHANGED);
	ASSERT_EQ(out.hold_until, NOW + DAY);

	/* a hold without a deadline (imported) gets one */
	l.hold_until = 0;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.hold_until, NOW + 30 * DAY);
}

TEST(lead_hold_out_of_range_refused)
{
	struct lead l = mk(LS_PROCESSING), out;
	struct lead_edit e = { .set = LF_HOLD, .hold_days = -3 };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	ASSERT_STREQ(err, "lead 17: hold of -3 days is not in 0..3650");
	e.hold_days = 3651;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	ASSERT_EQ(out.status, LS_PROCESSING);
}

TEST(lead_hold_of_approved_refused)
{
	struct lead l = mk_approved(LS_SENDING), out;
	struct lead_edit e = { .set = LF_HOLD, .hold_days = 5 };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	ASSERT_STREQ(err, "lead 17 is approved ('sending') and cannot be put on hold");
	ASSERT_EQ(out.status, LS_SENDING);
	ASSERT_EQ(out.hold_until, 0);
}

TEST(lead_accept_in_hold_approves_now)
{
	struct lead l = mk(LS_HOLD), out;
	struct lead_edit e = { .set = LF_ACCEPT, .accept = true };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_PACKING);
	ASSERT_EQ(out.hold_until, 0);
	ASSERT_EQ(out.approved_at, NOW);
	ASSERT_EQ(out.wm, 500);
}

TEST(lead_accept_with_hold_is_a_hold)
{
	struct lead l = mk(LS_PROCESSING), out;
	struct lead_edit e = { .set = LF_ACCEPT | LF_HOLD, .accept = true, .hold_days = 2 };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_HOLD);
	ASSERT_EQ(out.hold_until, NOW + 2 * DAY);
	ASSERT_EQ(out.approved_at, 0);
}

TEST(lead_contradicting_edits_refused)
{
	struct lead l = mk(LS_PROCESSING), out;
	struct lead_edit e = { .set = LF_ACCEPT | LF_STATUS, .accept = true, .status = LS_CANCEL };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	ASSERT_STREQ(err, "lead 17: accept and status 5 contradict");
	e.status = LS_CALLBACK;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	e.set = LF_HOLD | LF_STATUS;
	e.status = LS_PACKING;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	ASSERT_STREQ(err, "lead 17: hold and status 6 contradict");
}

TEST(lead_no_return_to_1_3_after_hold)
{
	struct lead l = mk(LS_HOLD), out;
	struct lead_edit e = { .set = LF_STATUS, .status = LS_PROCESSING };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	ASSERT_STREQ(err, "lead 17 is in 'hold' and cannot go back to 'processing'");
	ASSERT_EQ(out.status, LS_HOLD);

	l = mk(LS_CANCEL);
	e.status = LS_CALLBACK;
	ASSERT_EQ(apply(&l, &e, SOURCE_POSTBACK, &out, err), LEAD_REFUSED);
	ASSERT_STREQ(err, "lead 17 is in 'cancel' and cannot go back to 'callback'");

	l = mk_approved(LS_PAID);
	e.status = LS_NEW;
	ASSERT_EQ(apply(&l, &e, SOURCE_MANUAL, &out, err), LEAD_REFUSED);

	/* below 4 a lead moves freely */
	l = mk(LS_CALLBACK);
	e.status = LS_PROCESSING;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_PROCESSING);
}

TEST(lead_cancel_from_hold)
{
	struct lead l = mk(LS_HOLD), out;
	struct lead_edit e = { .set = LF_STATUS, .status = LS_CANCEL };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_CANCEL);
	ASSERT_EQ(out.reason, 9); /* the offer's */
	ASSERT_EQ(out.hold_until, 0);
	ASSERT_EQ(out.approved_at, 0);
}

TEST(lead_cancel_of_approved_by_source)
{
	struct lead l = mk_approved(LS_DELIVERED), out;
	struct lead_edit e = { .set = LF_STATUS | LF_REASON, .status = LS_CANCEL, .reason = 12 };
	struct lead_offer lax = offer;
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	ASSERT_CONTAINS(err, "lead 17 is approved ('delivered'): only the date-range check");
	ASSERT_CONTAINS(err, "(source 'poll')");
	ASSERT_EQ(out.status, LS_DELIVERED);
	ASSERT_EQ(apply(&l, &e, SOURCE_POSTBACK, &out, err), LEAD_REFUSED);
	ASSERT_EQ(apply(&l, &e, SOURCE_MANUAL, &out, err), LEAD_REFUSED);
	ASSERT_EQ(apply(&l, &e, SOURCE_TIMER, &out, err), LEAD_UNCHANGED); /* not the timer's to do */

	ASSERT_EQ(apply(&l, &e, SOURCE_DATES, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_CANCEL);
	ASSERT_EQ(out.reason, 12);
	ASSERT_EQ(out.wm, 500); /* kept for the record */
	ASSERT_EQ(out.approved_at, NOW - DAY);

	ASSERT_EQ(apply(&l, &e, SOURCE_CHARGEBACK, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_CANCEL);

	lax.cancel_approved = true;
	ASSERT_EQ(lead_apply(&l, &lax, &fixed, &e, SOURCE_POLL, NOW, &out, err, sizeof(err)),
		  LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_CANCEL);
}

TEST(lead_delete_of_approved_by_source)
{
	struct lead l = mk_approved(LS_PAID), out;
	struct lead_edit e = { .set = LF_STATUS, .status = LS_DELETED };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	ASSERT_CONTAINS(err, "may delete it (source 'poll')");
	ASSERT_EQ(apply(&l, &e, SOURCE_MANUAL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_DELETED);
	ASSERT_EQ(apply(&l, &e, SOURCE_CHARGEBACK, &out, err), LEAD_CHANGED);

	l = mk(LS_PROCESSING); /* not approved: any source */
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_DELETED);
}

TEST(lead_deleted_is_frozen)
{
	struct lead l = mk(LS_DELETED), out;
	struct lead_edit e = { .set = LF_STATUS, .status = LS_PROCESSING };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_MANUAL, &out, err), LEAD_REFUSED);
	ASSERT_STREQ(err, "lead 17 is deleted and cannot be edited");
	ASSERT_EQ(out.status, LS_DELETED);
	e.set = LF_COMMENT;
	e.comment = "x";
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	ASSERT_STREQ(out.comment, "");
	e.set = LF_ACCEPT;
	e.accept = true;
	ASSERT_EQ(apply(&l, &e, SOURCE_POSTBACK, &out, err), LEAD_REFUSED);
	ASSERT_EQ(out.approved_at, 0);

	/* "deleted" said again is no news */
	e.set = LF_STATUS;
	e.status = LS_DELETED;
	err[0] = '\0';
	ASSERT_EQ(apply(&l, &e, SOURCE_POSTBACK, &out, err), LEAD_UNCHANGED);
	ASSERT_STREQ(err, "");
}

TEST(lead_cancel_reason_defaults)
{
	struct lead l = mk(LS_PROCESSING), out;
	struct lead_edit e = { .set = LF_STATUS, .status = LS_CANCEL };
	struct lead_offer none = { .hold_days = 7 };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.reason, 9); /* the offer's */
	ASSERT_EQ(lead_apply(&l, &none, &fixed, &e, SOURCE_POLL, NOW, &out, err, sizeof(err)),
		  LEAD_CHANGED);
	ASSERT_EQ(out.reason, LEAD_REASON_DEFAULT);
	ASSERT_EQ(lead_apply(&l, NULL, &fixed, &e, SOURCE_POLL, NOW, &out, err, sizeof(err)),
		  LEAD_CHANGED);
	ASSERT_EQ(out.reason, 2);

	e.set |= LF_REASON;
	e.reason = REASON_TRASH_TEST;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.reason, 6);

	/* a cancel of a cancelled lead keeps its reason; a new reason replaces it */
	l = mk(LS_CANCEL);
	l.reason = REASON_DUPLICATE;
	e.set = LF_STATUS;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_UNCHANGED);
	ASSERT_EQ(out.reason, 7);
	e.set = LF_REASON;
	e.reason = REASON_FRAUD;
	ASSERT_EQ(apply(&l, &e, SOURCE_MANUAL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_CANCEL);
	ASSERT_EQ(out.reason, 12);
}

TEST(lead_reason_ignored_on_other_status)
{
	struct lead l = mk(LS_PROCESSING), out;
	struct lead_edit e = { .set = LF_STATUS | LF_REASON, .status = LS_CALLBACK, .reason = 11 };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_CALLBACK);
	ASSERT_EQ(out.reason, 0);
	e.set = LF_REASON;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_UNCHANGED);
}

TEST(lead_cancelled_lead_approved_again)
{
	struct lead l = mk(LS_CANCEL), out;
	struct lead_edit e = { .set = LF_ACCEPT, .accept = true };
	char err[256];

	/* never approved: the mechanics run, the reason goes */
	ASSERT_EQ(apply(&l, &e, SOURCE_POSTBACK, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_PACKING);
	ASSERT_EQ(out.reason, 0);
	ASSERT_EQ(out.wm, 500);
	ASSERT_EQ(out.approved_at, NOW);

	/* approved, charged back, approved again: first payouts and time kept */
	l = mk_approved(LS_CANCEL);
	l.wm = 111;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_PACKING);
	ASSERT_EQ(out.wm, 111);
	ASSERT_EQ(out.approved_at, NOW - DAY);

	/* a cancelled lead may go on hold again */
	e.set = LF_HOLD;
	e.hold_days = 1;
	ASSERT_EQ(apply(&l, &e, SOURCE_POSTBACK, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_HOLD);
	ASSERT_EQ(out.reason, 0);
}

TEST(lead_closed_moves)
{
	struct lead l = mk_approved(LS_PAID), out;
	struct lead_edit e = { .set = LF_STATUS, .status = LS_RETURN };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED); /* bought, then sent back */
	ASSERT_EQ(out.status, LS_RETURN);
	e.status = LS_TRANSIT;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	ASSERT_STREQ(err, "lead 17 is closed ('paid') and cannot move to 'transit'");
	l.status = LS_RETURN;
	e.status = LS_PAID;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	ASSERT_STREQ(err, "lead 17 is closed ('return') and cannot move to 'paid'");

	/* delivery states before 10/11 move both ways */
	l.status = LS_TRANSIT;
	e.status = LS_SENDING;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_SENDING);
}

TEST(lead_bad_values_refused)
{
	struct lead l = mk(LS_PROCESSING), out;
	struct lead_edit e = { .set = LF_STATUS, .status = 13 };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	ASSERT_STREQ(err, "lead 17: status 13 is not in 1..12");
	e.status = 0;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	ASSERT_STREQ(err, "lead 17: status 0 is not in 1..12");

	e.set = LF_STATUS | LF_REASON;
	e.status = LS_CANCEL;
	e.reason = 99; /* issue 3: reason 99 is refused */
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	ASSERT_STREQ(err, "lead 17: reason 99 is not in 1..32");
	e.reason = 0;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	ASSERT_STREQ(err, "lead 17: reason 0 is not in 1..32");
	e.reason = REASON_MAX; /* a network's own reason */
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.reason, REASON_MAX);

	e.set = LF_BASE | LF_COMMENT;
	e.comment = "not applied";
	e.base = -150;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	ASSERT_STREQ(err, "lead 17: base -1.5 is negative");
	ASSERT_EQ(out.base, 3000);
	ASSERT_STREQ(out.comment, "");

	e.set = LF_COUNTS;
	e.counts = -2;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	ASSERT_STREQ(err, "lead 17: counts -2 is negative");

	e.set = LF_CURR;
	e.curr = -1;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	ASSERT_STREQ(err, "lead 17: curr -1 is not a currency id");

	e.set = LF_ACCEPT | LF_CASH_REF;
	e.accept = true;
	e.cash_ref = -5;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	ASSERT_STREQ(err, "lead 17: cash ref -0.05 is negative");
	ASSERT_EQ(out.status, LS_PROCESSING);

	e.set = LF_GOAL;
	e.goal = 6;
	e.new_goal = NULL;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	ASSERT_STREQ(err, "lead 17: goal 6 is given without its settings");
	e.new_goal = &fixed;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_REFUSED);
	ASSERT_STREQ(err, "lead 17: goal 6 does not match its settings (goal 5)");
}

TEST(lead_plain_fields)
{
	struct lead l = mk_approved(LS_TRANSIT), out;
	struct lead_edit e = { .set = LF_BASE | LF_COUNTS | LF_CURR | LF_GOAL | LF_TRACK | LF_COMMENT,
			       .base = 4550, .counts = 2, .curr = 7, .goal = 6, .new_goal = &pct,
			       .track = "RA123456789RU", .comment = "shipped by post" };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.base, 4550);
	ASSERT_EQ(out.counts, 2);
	ASSERT_EQ(out.curr, 7);
	ASSERT_EQ(out.goal, 6);
	ASSERT_STREQ(out.track, "RA123456789RU");
	ASSERT_STREQ(out.comment, "shipped by post");
	ASSERT_EQ(out.wm, 500); /* an approved lead's payouts stay */
	ASSERT_EQ(out.status, LS_TRANSIT);
}

TEST(lead_unchanged_edit)
{
	struct lead l = mk(LS_CALLBACK), out;
	struct lead_edit e = { 0 };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_UNCHANGED);
	lead_strlcpy(l.comment, sizeof(l.comment), "no answer");
	e.set = LF_STATUS | LF_COMMENT | LF_BASE;
	e.status = LS_CALLBACK;
	e.comment = "no answer";
	e.base = 3000;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_UNCHANGED);
	ASSERT(lead_eq(&l, &out));
	e.comment = "no answer twice";
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_STREQ(out.comment, "no answer twice");
}

TEST(lead_out_may_be_old)
{
	struct lead l = mk(LS_PROCESSING);
	struct lead_edit e = { .set = LF_ACCEPT, .accept = true };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &l, err), LEAD_CHANGED);
	ASSERT_EQ(l.status, LS_PACKING);
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &l, err), LEAD_UNCHANGED);
	e.set = LF_STATUS;
	e.status = LS_NEW;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &l, err), LEAD_REFUSED);
	ASSERT_EQ(l.status, LS_PACKING);
}

TEST(lead_timer_releases_hold)
{
	struct lead l = mk(LS_HOLD), out;
	struct lead_edit e = { .set = LF_ACCEPT, .accept = true };
	char err[256];

	/* before the deadline (the hold was extended meanwhile): nothing */
	ASSERT_EQ(apply(&l, &e, SOURCE_TIMER, &out, err), LEAD_UNCHANGED);
	ASSERT_EQ(out.status, LS_HOLD);

	l.hold_until = NOW;
	ASSERT_EQ(apply(&l, &e, SOURCE_TIMER, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_PACKING);
	ASSERT_EQ(out.approved_at, NOW);
	ASSERT_EQ(out.hold_until, 0);
	ASSERT_EQ(out.pay, 800);

	/* cancelled since the scheduler looked: the timer does not approve it */
	l = mk(LS_CANCEL);
	ASSERT_EQ(apply(&l, &e, SOURCE_TIMER, &out, err), LEAD_UNCHANGED);
	ASSERT_EQ(out.status, LS_CANCEL);
}

TEST(lead_timer_rejects_stuck_lead)
{
	struct lead l = mk(LS_CALLBACK), out;
	struct lead_edit e = { .set = LF_STATUS | LF_REASON, .status = LS_CANCEL,
			       .reason = REASON_TIMER };
	char err[256];

	ASSERT_EQ(apply(&l, &e, SOURCE_TIMER, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_CANCEL);
	ASSERT_EQ(out.reason, 17);

	/* the CRM answered first (hold): the timer leaves it */
	l = mk(LS_HOLD);
	ASSERT_EQ(apply(&l, &e, SOURCE_TIMER, &out, err), LEAD_UNCHANGED);
	ASSERT_EQ(out.status, LS_HOLD);
	/* a CRM may still confirm what the timer gave up on */
	l = mk(LS_CALLBACK);
	ASSERT_EQ(apply(&l, &e, SOURCE_TIMER, &l, err), LEAD_CHANGED);
	e.set = LF_ACCEPT;
	e.accept = true;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(out.status, LS_PACKING);
	ASSERT_EQ(out.reason, 0);
}

TEST(lead_comment_cut_on_utf8_boundary)
{
	struct lead l = mk(LS_PROCESSING), out;
	struct lead_edit e = { .set = LF_COMMENT | LF_TRACK };
	char longc[LEAD_COMMENT_MAX + 8], longt[LEAD_TRACK_MAX + 8], err[256];

	/* 1022 ASCII bytes then "жж": the first ж would straddle byte 1023 */
	memset(longc, 'a', LEAD_COMMENT_MAX - 2);
	memcpy(longc + LEAD_COMMENT_MAX - 2, "жж", sizeof("жж"));
	/* 126 bytes then an emoji (4 bytes) */
	memset(longt, 'T', LEAD_TRACK_MAX - 2);
	memcpy(longt + LEAD_TRACK_MAX - 2, "😀", sizeof("😀"));
	e.comment = longc;
	e.track = longt;
	ASSERT_EQ(apply(&l, &e, SOURCE_POLL, &out, err), LEAD_CHANGED);
	ASSERT_EQ(strlen(out.comment), LEAD_COMMENT_MAX - 2);
	ASSERT_EQ(strlen(out.track), LEAD_TRACK_MAX - 2);
}

TEST(lead_strlcpy_cuts)
{
	char d6[6], d5[5], d4[4], d3[3];

	lead_strlcpy(d5, sizeof(d5), "abcж"); /* 5 bytes: no room for ж */
	ASSERT_STREQ(d5, "abc");
	lead_strlcpy(d5, sizeof(d5), "abж");  /* 4 bytes: fits */
	ASSERT_STREQ(d5, "abж");
	lead_strlcpy(d4, sizeof(d4), "a😀");
	ASSERT_STREQ(d4, "a");
	lead_strlcpy(d6, sizeof(d6), "ab😀"); /* cut at the emoji's last byte: 3 steps back */
	ASSERT_STREQ(d6, "ab");
	lead_strlcpy(d4, sizeof(d4), "abcdef");
	ASSERT_STREQ(d4, "abc");
	lead_strlcpy(d3, sizeof(d3), "\x80\x80\x80\x80\x80"); /* not UTF-8: plain cut */
	ASSERT_EQ(strlen(d3), 2);
	lead_strlcpy(d3, sizeof(d3), NULL);
	ASSERT_STREQ(d3, "");
}

TEST(lead_diff_exact)
{
	struct lead a = mk(LS_PROCESSING), b;
	struct lead_edit e = { .set = LF_ACCEPT | LF_CASH_REF, .accept = true, .cash_ref = 5 };
	struct buf bb, ba;
	char err[256];

	buf_init(&bb, 0);
	buf_init(&ba, 0);
	ASSERT_EQ(apply(&a, &e, SOURCE_POLL, &b, err), LEAD_CHANGED);
	b.pay = 3050;
	ASSERT_EQ(lead_diff(&a, &b, &bb, &ba), 5);
	ASSERT_STREQ(bb.p, "{\"status\":2,\"wm\":0,\"pay\":0,\"ref\":0,\"approved_at\":null}");
	ASSERT_STREQ(ba.p, "{\"status\":6,\"wm\":5,\"pay\":30.5,\"ref\":0.05,"
			   "\"approved_at\":\"2026-11-20T10:00:00Z\"}");

	buf_reset(&bb);
	buf_reset(&ba);
	b = mk(LS_CANCEL);
	b.reason = 6;
	lead_strlcpy(b.comment, sizeof(b.comment), "say \"no\"\nжж");
	b.curr = 0;
	b.hold_until = NOW + DAY;
	ASSERT_EQ(lead_diff(&a, &b, &bb, &ba), 5);
	ASSERT_STREQ(bb.p, "{\"status\":2,\"reason\":null,\"comment\":\"\",\"curr\":3,"
			   "\"hold_until\":null}");
	ASSERT_STREQ(ba.p, "{\"status\":5,\"reason\":6,\"comment\":\"say \\\"no\\\"\\nжж\","
			   "\"curr\":null,\"hold_until\":\"2026-11-21T10:00:00Z\"}");

	buf_reset(&bb);
	buf_reset(&ba);
	ASSERT_EQ(lead_diff(&a, &a, &bb, &ba), 0);
	ASSERT_STREQ(bb.p, "{}");
	ASSERT_STREQ(ba.p, "{}");
	buf_release(&bb);
	buf_release(&ba);
}

TEST(lead_diff_full_buffer_leaves_buffers)
{
	struct lead a = mk(LS_PROCESSING), b = mk_approved(LS_PACKING);
	struct buf bb, ba;
	int n;

	buf_init(&bb, 16);
	buf_init(&ba, 0);
	n = buf_adds(&bb, "x") + buf_adds(&ba, "y");
	ASSERT_EQ(n, 0);
	ASSERT_EQ(lead_diff(&a, &b, &bb, &ba), -1);
	ASSERT_STREQ(bb.p, "x");
	ASSERT_STREQ(ba.p, "y");
	buf_release(&bb);
	buf_release(&ba);
}

TEST(lead_money_format_values)
{
	char out[24];

	ASSERT_EQ(lead_money_format(3000, out, sizeof(out)), 2);
	ASSERT_STREQ(out, "30");
	lead_money_format(3050, out, sizeof(out));
	ASSERT_STREQ(out, "30.5");
	lead_money_format(3005, out, sizeof(out));
	ASSERT_STREQ(out, "30.05");
	lead_money_format(5, out, sizeof(out));
	ASSERT_STREQ(out, "0.05");
	lead_money_format(0, out, sizeof(out));
	ASSERT_STREQ(out, "0");
	lead_money_format(-150, out, sizeof(out));
	ASSERT_STREQ(out, "-1.5");
	lead_money_format(-5, out, sizeof(out));
	ASSERT_STREQ(out, "-0.05");
	lead_money_format(INT64_MIN, out, sizeof(out));
	ASSERT_STREQ(out, "-92233720368547758.08");
	ASSERT_EQ(lead_money_format(3050, out, 4), -1); /* "30.5" needs 5 */
	ASSERT_STREQ(out, "");
}

TEST(lead_money_parse_values)
{
	static const struct {
		const char *s;
		int64_t cents;
	} good[] = {
		{ "30", 3000 },   { "30.5", 3050 }, { "30.05", 3005 }, { "-1.5", -150 },
		{ "0", 0 },       { "-0", 0 },      { "0.125", 13 },   { "0.124999", 12 },
		{ "-0.125", -13 }, { "1.00", 100 }, { "007", 700 },
		{ "92233720368547758.07", INT64_MAX },
		{ "-92233720368547758.08", INT64_MIN },
	};
	static const char *const bad[] = {
		"", "-", "+1", ".5", "5.", "1e3", "1,5", " 1", "1 ", "1.2.3", "abc",
		"92233720368547758.08", "99999999999999999999999", "0x10",
	};
	size_t i;
	int64_t v;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = -777;
		if (lead_money_parse(good[i].s, &v) != 0 || v != good[i].cents) {
			test__fail(__FILE__, __LINE__, "parse \"%s\": %" PRId64, good[i].s, v);
			return;
		}
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = -777;
		if (lead_money_parse(bad[i], &v) != -1 || v != -777) {
			test__fail(__FILE__, __LINE__, "parse \"%s\" accepted", bad[i]);
			return;
		}
	}
	ASSERT_EQ(lead_money_parse(NULL, &v), -1);
}

TEST(lead_time_format_values)
{
	char out[21];

	ASSERT_EQ(lead_time_format(NOW, out, sizeof(out)), 20);
	ASSERT_STREQ(out, "2026-11-20T10:00:00Z");
	ASSERT_EQ(lead_time_format(0, out, sizeof(out)), 20);
	ASSERT_STREQ(out, "1970-01-01T00:00:00Z");
	ASSERT_EQ(lead_time_format(-1, out, sizeof(out)), -1);
	ASSERT_EQ(lead_time_format(INT64_C(253402300800), out, sizeof(out)), -1);
	ASSERT_EQ(lead_time_format(NOW, out, 20), -1);
}

TEST(lead_source_names)
{
	static const char *const names[] = { "poll", "postback", "timer", "manual",
					     "import", "dates", "chargeback" };
	int s;

	for (s = SOURCE_POLL; s <= SOURCE_CHARGEBACK; s++) {
		ASSERT_STREQ(lead_source_name((enum lead_source)s), names[s - 1]);
		ASSERT_EQ(lead_source_by_name(names[s - 1]), s);
	}
	ASSERT_STREQ(lead_source_name((enum lead_source)0), "unknown");
	ASSERT_STREQ(lead_source_name((enum lead_source)99), "unknown");
	ASSERT_EQ(lead_source_by_name("cron"), 0);
	ASSERT_EQ(lead_source_by_name(NULL), 0);
}

/* A double becomes an integer only when whole and in range, the range
 * tested before the conversion (past int64_t it is undefined behaviour,
 * which UBSan in `make test` would report). */
TEST(lead_int_from_double_checks_range_before_converting)
{
	int64_t v = 42;

	ASSERT(lead_int_from_double(12.0, 1, 100, &v));
	ASSERT_EQ(v, 12);
	ASSERT(lead_int_from_double(-5.0, -10, 10, &v));
	ASSERT_EQ(v, -5);
	v = 42;
	ASSERT(!lead_int_from_double(12.5, 1, 100, &v));
	ASSERT(!lead_int_from_double(101.0, 1, 100, &v));
	ASSERT(!lead_int_from_double(0.0, 1, 100, &v));
	ASSERT(!lead_int_from_double(1e300, INT64_MIN, INT64_MAX, &v));
	ASSERT(!lead_int_from_double(-1e300, INT64_MIN, INT64_MAX, &v));
	/* (double)INT64_MAX is 2^63, one past the range */
	ASSERT(!lead_int_from_double(9223372036854775808.0, INT64_MIN, INT64_MAX, &v));
	ASSERT(!lead_int_from_double(NAN, INT64_MIN, INT64_MAX, &v));
	ASSERT(!lead_int_from_double(INFINITY, INT64_MIN, INT64_MAX, &v));
	ASSERT_EQ(v, 42);
	ASSERT(lead_int_from_double(-9223372036854775808.0, INT64_MIN, INT64_MAX, &v));
	ASSERT_EQ(v, INT64_MIN);
	ASSERT(lead_int_from_double(9007199254740992.0, 1, INT64_C(1) << 53, &v));
	ASSERT_EQ(v, INT64_C(1) << 53);
}
