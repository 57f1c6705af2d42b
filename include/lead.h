/* lead: the edit semantics of DESIGN.md as a pure function. Given a lead,
 * its offer's settings, its goal and an edit, lead_apply() computes the new
 * lead, or refuses the edit with a reason. Nothing here does I/O; the
 * caller writes the result and the history row (lead_diff()) together.
 *
 * Money is kept in hundredths (cents) as int64; percents in hundredths of a
 * percent (1250 = 12.5 %). Times are UNIX seconds; 0 means unset.
 *
 * The rules lead_apply() keeps (DESIGN.md "The lead model", and the
 * decisions taken where it is silent, marked *):
 *  - Checked first, whatever the lead's state: status 1..12, reason
 *    1..REASON_MAX, hold days -1 or 0..LEAD_HOLD_DAYS_MAX, base, counts,
 *    curr, goal and cash amounts not negative, a goal change carries its
 *    new_goal with the same id. A bad value refuses the whole edit.
 *  - Deleted (12) is frozen: every edit is refused, except one that only
 *    repeats status 12 (LEAD_UNCHANGED)*.
 *  - Approval mechanics run when a lead that was never approved
 *    (approved_at == 0) moves into 6..11, by accept or by status: each of
 *    wm/pay/ref comes from the edit's cash if given, else stays as it is if
 *    not 0 (a cash given earlier, e.g. with the hold)*, else from the goal:
 *    fixed (and recurring*) → the goal's amount; percent → round(base *
 *    max(counts,1) * pct / 10000). A percent payout is in the order's
 *    currency, so cash_curr becomes curr unless cash.cc is given*.
 *    approved_at = now. A lead approved before (approved_at != 0, e.g.
 *    cancelled by a chargeback) keeps its payouts and approval time*.
 *  - accept moves 1..5 to 6 and is a no-op on 6..11; with a status it must
 *    be 4 or 6..11 (approve, then set that status); with hold the hold wins
 *    (the hold is a deferred approval)*.
 *  - hold (or status 4, which means hold for the offer's days*) puts the
 *    lead in 4 until now + days; a lead already in 4 keeps its earlier
 *    hold_until, because CRMs answer "hold" at every poll and the hold must
 *    run out*. Approved leads (6..11) cannot be put on hold.
 *  - Nothing in 4..12 goes back to 1..3. 10 (paid) may only become 11
 *    (return), 5 or 12*; 11 only 5 or 12*. Moves among 6..9 and from 6..9
 *    to 10/11 are free (the CRM's delivery truth)*.
 *  - Cancel (5) of an approved lead (6..11) only from SOURCE_DATES,
 *    SOURCE_CHARGEBACK or an offer with cancel_approved; delete (12) of an
 *    approved lead likewise, or from SOURCE_MANUAL*.
 *  - A cancelled lead (5) may be approved or held again by any source but
 *    the timer*: the advertiser's CRM is the authority on whether the order
 *    happened (a lead the timer gave up on may be confirmed later).
 *  - Status 5 always has a reason: the edit's, else the one it has when
 *    already 5, else the offer's reject_reason, else LEAD_REASON_DEFAULT*.
 *    Leaving 5 clears it. A reason with any other final status is ignored,
 *    so the status change it came with is not lost*.
 *  - Leaving 4 clears hold_until.
 *  - SOURCE_TIMER edits whose premise no longer holds are LEAD_UNCHANGED*
 *    (the lead moved on between the scheduler's read and the write): an
 *    accept needs the lead in 4 with hold_until <= now; a cancel needs it
 *    in 1..3.
 *  - cash fields set wm/pay/ref/cash_curr directly on any lead (an
 *    advertiser adjusting a payout). A goal change never recomputes the
 *    payouts of an approved lead*.
 *  - An edit whose cash.cc changes the payouts' currency (from the lead's
 *    cash_curr, or its goal's currency when that is 0, to cc, or to the
 *    goal's when cc is 0) must give wm, pay and ref too, else it is
 *    refused, naming the missing ones ("lead 17: cash cc changes the
 *    payouts' currency without wm, ref: give wm, pay and ref together")*:
 *    there are no exchange rates here, and a payout left out would keep
 *    its number under the new currency's name. A cc equal to the current
 *    currency changes nothing and needs no amounts.
 *  - An edit that changes none of the fields lead_diff() compares returns
 *    LEAD_UNCHANGED: no history row. */
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
#define LEAD_HOLD_DAYS_MAX 3650
/* Reason of a cancel when neither the edit nor the offer names one: 2
 * "changed mind", a neutral reason that does not count as trash. */
#define LEAD_REASON_DEFAULT 2

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

/* The fields of a lead that edits change and history records, in
 * lead_diff()'s order: the one list of them. Each is X(P, name, KIND), S()
 * between two, P passed through to X (a context: a table alias, a macro).
 * KIND says how the field is kept:
 *   NUM    an integer, always set
 *   ID     an integer id, 0 for none (NULL in the database)
 *   MONEY  cents here and on the wire, units (numeric) in the database
 *   TIME   UNIX seconds here and on the wire, 0 for none (NULL)
 *   STR    text, '' for none
 * lead.c's diff and lead_store.h's SQL pieces are built from it. Adding a
 * column: a migration (the column, and the lead_fields() SQL function),
 * the member in struct lead, one row here, and its merge in import.c's
 * apply (whose rules differ per field). */
#define LEAD_FIELDS(X, S, P)                                                                  	X(P, status, NUM) S() X(P, reason, ID) S() X(P, comment, STR) S() X(P, track, STR) S()  	X(P, base, MONEY) S() X(P, counts, NUM) S() X(P, curr, ID) S() X(P, goal, ID) S()       	X(P, wm, MONEY) S() X(P, pay, MONEY) S() X(P, ref, MONEY) S() X(P, cash_curr, ID) S()   	X(P, approved_at, TIME) S() X(P, hold_until, TIME)
/* Separators for S: nothing, a comma token (initializers), an SQL list's
 * comma (string literals). */
#define LEAD_SEP_NONE()
#define LEAD_SEP_COMMA() ,
#define LEAD_SEP_SQL() ","

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
/* "poll", "postback", "timer", "manual", "import", "dates", "chargeback";
 * "unknown" for anything else. */
const char *lead_source_name(enum lead_source s);
/* The source named by lead_source_name(); 0 when unknown. */
int lead_source_by_name(const char *name);

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
	bool accept;       /* LF_ACCEPT with false is no edit */
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
 * goal is the lead's current goal and may be NULL (no payouts computed);
 * offer may be NULL (hold 0 days, no default reason, no cancel_approved).
 * err is written only on LEAD_REFUSED. out may be old. */
enum lead_result lead_apply(const struct lead *old, const struct lead_offer *offer,
			    const struct lead_goal *goal, const struct lead_edit *e,
			    enum lead_source source, int64_t now, struct lead *out, char *err,
			    size_t errlen);

/* True only when lead_apply(cur, ..., e, ...) would surely answer
 * LEAD_UNCHANGED, decided from a few fields without copying the lead, so
 * the common poll (the CRM repeats what we know) stays cheap. Only edits
 * of status, reason and comment that leave the status as it is qualify;
 * for anything else it says false and the caller takes the full way.
 * Kept beside lead_apply so the two change together; a test checks they
 * agree on every combination. */
bool lead_edit_is_noop(const struct lead *cur, const struct lead_edit *e);

/* Appends to before/after two JSON objects holding only the fields that
 * differ between a and b (names as in `lead show --json`), compact and in
 * this order: status, reason, comment, track, base, counts, curr, goal, wm,
 * pay, ref, cash_curr, approved_at, hold_until. Money (base, wm, pay, ref)
 * is a number in units (lead_money_format); times are ISO-8601 UTC strings
 * ("2026-11-20T10:00:00Z"); reason, curr, goal, cash_curr, approved_at and
 * hold_until are null when 0. No differences: "{}" and "{}", returns 0.
 * Returns the number of differing fields, or -1 when a buffer is full
 * (both buffers are then left as they were). */
__attribute__((warn_unused_result))
int lead_diff(const struct lead *a, const struct lead *b, struct buf *before, struct buf *after);

/* Copies s (NULL: "") into dst (size dstlen > 0), cut on a UTF-8 boundary
 * so no character is split; bytes are otherwise copied as they are. */
void lead_strlcpy(char *dst, size_t dstlen, const char *s);

/* Writes cents as a decimal number of units with trailing zeros trimmed:
 * 3000 → "30", 3050 → "30.5", 5 → "0.05", -150 → "-1.5". Valid as a JSON
 * number. Returns the length written, or -1 when out (len bytes) is too
 * small (out then holds ""). 24 bytes always suffice. */
int lead_money_format(int64_t cents, char *out, size_t len);

/* Parses "30", "30.5", "30.05", "-1.5" into cents. More than two decimals
 * are rounded half away from zero ("0.125" → 13), as CRMs send payouts
 * like 0.125 and refusing would lose the edit. Refused (-1, *cents
 * untouched): empty text, spaces, "+", ".5", "5.", exponents, commas,
 * anything past int64. Returns 0 on success. */
__attribute__((warn_unused_result))
int lead_money_parse(const char *s, int64_t *cents);

/* The integer d holds, when d is finite, whole and in min..max: sets *out
 * and returns true; else false and *out is untouched. The range is checked
 * before the conversion, as converting a double outside int64_t's range is
 * undefined behaviour. Bounds past 2^53 are compared as the doubles they
 * round to. Use it for every JSON or Lua number that becomes an integer. */
bool lead_int_from_double(double d, int64_t min, int64_t max, int64_t *out);

/* Writes t (UNIX seconds) as "2026-11-20T10:00:00Z". Returns the length, or
 * -1 when t is before 1970 or after 9999 or out (len bytes, 21 suffice) is
 * too small. */
int lead_time_format(int64_t t, char *out, size_t len);
/* Parses ISO-8601: YYYY-MM-DD, optionally followed by T or space,
 * HH:MM[:SS[.fraction]] and a zone (Z, +HH, +HHMM, +HH:MM; none means UTC)
 * into UNIX time. Returns 0, or -1 when s is not such a time. */
__attribute__((warn_unused_result)) int lead_time_parse(const char *s, int64_t *out);

#endif
