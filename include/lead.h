/* lead: the edit semantics of DESIGN.md as a pure function. Given a lead,
 * its offer's settings, its goal and an edit, lead_apply() computes the new
 * lead, or refuses the edit with a reason. Nothing here does I/O; the
 * caller writes the result and the history row (lead_diff()) together.
 *
 * Money is kept in hundredths (cents) as int64; percents in hundredths of a
 * percent (1250 = 12.5 %). Times are UNIX seconds; 0 means unset. */
#ifndef LEADSYNC_LEAD_H
#define LEADSYNC_LEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define LEAD_COMMENT_MAX 1024 /* bytes, with NUL; longer text is cut on a UTF-8 boundary */
#define LEAD_TRACK_MAX 128
#define LEAD_EXT_MAX 128
#define LEAD_CURR_MAX 4 /* ISO 4217 code + NUL */

struct lead {
	int64_t id;
	int64_t offer;
	char ext[LEAD_EXT_MAX];
	int status;
	int reason; /* 0: none; always set when status is 5 */
	char comment[LEAD_COMMENT_MAX];
	char track[LEAD_TRACK_MAX];
	int64_t base;   /* price of one unit, cents */
	int counts;     /* units */
	int curr;       /* currency id of the order; 0 unset */
	int64_t goal;   /* goal id; 0 unset */
	int64_t wm, pay, ref; /* payouts, cents */
	int cash_curr;  /* currency id of the payouts; 0: the goal's */
	int64_t created;
	int64_t approved_at;
	int64_t hold_until;
};

enum goal_payout { PAYOUT_FIXED = 0, PAYOUT_PERCENT = 1, PAYOUT_RECURRING = 2 };

struct lead_goal {
	int64_t id;
	enum goal_payout payout;
	int64_t wm, pay, ref; /* cents when fixed, hundredths of a percent when percent */
	int curr;
};

struct lead_offer {
	int hold_days;          /* for hold = true */
	int reject_reason;      /* default reason of a cancel */
	bool cancel_approved;   /* offer setting: any source may cancel 6..11 */
};

enum lead_source {
	SOURCE_POLL = 1,
	SOURCE_POSTBACK,
	SOURCE_TIMER,
	SOURCE_MANUAL,
	SOURCE_IMPORT,
	SOURCE_DATES, /* the date-range poll: may cancel approved leads */
	SOURCE_CHARGEBACK,
};
const char *lead_source_name(enum lead_source s); /* "poll", "postback", ... */

/* Which fields of an edit are present. */
enum lead_field {
	LF_ACCEPT = 1u << 0,
	LF_STATUS = 1u << 1,
	LF_REASON = 1u << 2,
	LF_HOLD = 1u << 3,
	LF_COMMENT = 1u << 4,
	LF_BASE = 1u << 5,
	LF_COUNTS = 1u << 6,
	LF_CURR = 1u << 7,
	LF_GOAL = 1u << 8,
	LF_TRACK = 1u << 9,
	LF_CASH_WM = 1u << 10,
	LF_CASH_PAY = 1u << 11,
	LF_CASH_REF = 1u << 12,
	LF_CASH_CC = 1u << 13,
};

struct lead_edit {
	unsigned set;      /* LF_* bits */
	bool accept;
	int status;
	int reason;
	int hold_days;     /* -1: the offer's hold days (hold = true) */
	const char *comment; /* borrowed */
	int64_t base;
	int counts;
	int curr;
	int64_t goal;      /* a goal change also needs new_goal */
	const struct lead_goal *new_goal;
	const char *track; /* borrowed */
	int64_t cash_wm, cash_pay, cash_ref;
	int cash_cc;
};

enum lead_result {
	LEAD_CHANGED = 1,
	LEAD_UNCHANGED = 0,
	LEAD_REFUSED = -1,
};

/* Applies e to old as source at time now. On LEAD_CHANGED *out is the new
 * lead; on LEAD_UNCHANGED *out equals *old; on LEAD_REFUSED *out equals
 * *old and err says why ("lead 17 is deleted and cannot be edited").
 * goal may be NULL (no payouts computed). */
enum lead_result lead_apply(const struct lead *old, const struct lead_offer *offer,
			    const struct lead_goal *goal, const struct lead_edit *e,
			    enum lead_source source, int64_t now, struct lead *out, char *err,
			    size_t errlen);

/* Appends to before/after two JSON objects holding only the fields that
 * differ between a and b (names as in `lead show --json`). Returns the
 * number of differing fields, or -1 when a buffer is full. */
int lead_diff(const struct lead *a, const struct lead *b, struct buf *before, struct buf *after);

/* Copies s into dst (size dstlen), cut on a UTF-8 boundary. */
void lead_strlcpy(char *dst, size_t dstlen, const char *s);

#endif
