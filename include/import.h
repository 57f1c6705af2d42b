/* import: `leadsync import`, JSON lines of advertisers, offers, goals and
 * leads upserted into the database (DESIGN.md "Interfaces other tools rely
 * on"). One line is one record: {"advertiser": {...}}, {"offer": {...}},
 * {"goal": {...}}, {"lead": {...}} or {"click": {...}}. Blank lines and
 * lines starting with '#' are skipped.
 *
 * One file is one transaction: the first bad line (invalid JSON or UTF-8,
 * an unknown record kind, a missing required key, a value of the wrong type
 * or range, an unknown offer, advertiser, currency or goal code, a database
 * error) rolls everything back and import_run() returns -1 with
 * "line N: what is wrong" in err. Nothing is written then.
 *
 * Keys and fields (required ones marked *; a key that is not listed here is
 * ignored, so a line may carry more than this):
 *   advertiser  id*, name*, api_key*, postback_sources (array of networks,
 *               "192.0.2.0/24", "2001:db8::/32" or an address; null or []:
 *               postbacks from any address), postback_secret (16..255 bytes;
 *               null: postbacks need no signature) (pbauth.h)
 *   offer       id*, advertiser*, name*, rule (null: not polled, and no
 *               poll_schedule rows: migration 005), params
 *               (object of strings, numbers, booleans), secret_params (array
 *               of param names), intervals {processing, accepted, dates}
 *               (seconds, null: the rule's), batch {processing, accepted} or
 *               one number for both, days (a number, or {dates}), hold_days,
 *               reject_reason, reject_after_days, tz (an IANA zone name
 *               PostgreSQL knows: pg_timezone_names), landing_url,
 *               click_param, enabled, status_words, cancel_approved,
 *               rate_limit (requests per minute)
 *   goal        offer*, code*, payout* (fixed, percent, recurring),
 *               currency* (ISO code), wm, pay, ref (money; percents when
 *               payout is percent), name
 *   click       id* (UUID), offer*, wm, created: a click recorded elsewhere,
 *               so that postbacks naming it are taken
 *   lead        offer*, status* (1..12), id or ext* (one at least), ext,
 *               created (ISO-8601; no zone means UTC), goal (the goal's
 *               code), click_id (UUID), base, counts, reason, comment, track,
 *               curr and cash_curr (ISO codes), wm, pay, ref, request_id,
 *               customer_id, approved_at, hold_until
 * Money is a JSON number or a decimal string in units ("30.5"), 0 up to
 * 999999999999.99; more than two decimals are rounded (lead_money_parse).
 * Ids are positive integers up to 2^53. In intervals/batch/days, a key that
 * is not a variant is an error (a typo would otherwise be lost); a group
 * given replaces all of it (a variant left out becomes null).
 *
 * Upsert keys: advertiser, offer and click by id, goal by (offer, code),
 * lead by id when given, else by (offer, ext). An existing record keeps the fields a
 * line leaves out (a line is a patch); a new one gets the defaults. A field
 * given as null is set to null (or its default when it cannot be null).
 *
 * Leads: a lead may appear once per file (by id, or by (offer, ext) for a
 * line without id), and a line without id may not share its ext with
 * another line. (offer, ext) is not unique in the database: a line without
 * id whose ext matches several leads is refused. request_id is unique per
 * offer, in the file and in the database. A lead's offer cannot change. The
 * lead invariants hold after import: status 5 has a reason (the line's, the
 * one it had, else the offer's reject_reason); a reason with any other
 * status is dropped; status 4 has a hold_until (the line's, the one it had,
 * else now + the offer's hold_days) and other statuses have none; a lead in
 * 6..11 has an approved_at (the line's, the one it had, else its created
 * time). Import does not run the approval mechanics: wm/pay/ref are what
 * the line says (default 0). comment longer than LEAD_COMMENT_MAX - 1 bytes
 * is cut on a UTF-8 boundary; a longer ext or track is an error.
 *
 * History: a new lead, and any change to an existing one, writes one
 * lead_history row with source 'import' (source_id NULL): before {} and
 * after the lead's non-empty fields for a new lead, the changed fields for
 * an existing one, in lead_diff()'s form. A line that changes nothing
 * writes nothing. Ids drawn for new leads come from the leads sequence,
 * which is then raised past the largest imported id.
 *
 * Leads are staged with COPY into a temporary table and applied by a few
 * set-based statements at the end, so a million leads is one pass. */
#ifndef LEADSYNC_IMPORT_H
#define LEADSYNC_IMPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <libpq-fe.h>

#include "buf.h"
#include "lead.h"

struct cJSON;

#define IMPORT_LINE_MAX ((size_t)1 << 20) /* bytes per line */
/* Distinct rule names remembered per import for import_missing_rules(): a
 * rule serves every offer of one CRM, so a file names few. */
#define IMPORT_RULES_MAX 64
#define IMPORT_RULE_NAME_MAX 64
#define IMPORT_TEXT_MAX 255 /* bytes of names, request_id, customer_id */
#define IMPORT_GOAL_CODE_MAX 64

struct import_rule {
	int64_t offer; /* the first offer line naming it */
	size_t offers; /* offer lines naming it */
	char name[IMPORT_RULE_NAME_MAX + 1];
};

struct import_stats {
	size_t advertisers, offers, goals, leads, clicks; /* records read, per kind */
	size_t lines; /* lines read, blank and comment lines included */
	/* The rules the file's offer lines name (rule not null), in the order
	 * first named; names past IMPORT_RULES_MAX are counted in rules_more. */
	struct import_rule rules[IMPORT_RULES_MAX];
	size_t nrules, rules_more;
};

/* Reads JSON lines from in until EOF and upserts them in one transaction on
 * c (which must not be inside a transaction). st is zeroed first and counts
 * what was read, also on failure (up to the failing line). Returns 0, or -1
 * with err set and nothing written. */
__attribute__((warn_unused_result))
int import_run(PGconn *c, FILE *in, struct import_stats *st, char *err, size_t errlen);

/* After an import: appends to out one warning line per rule that st's
 * offers name and rules_dir does not hold as NAME.lua (a rule may be
 * deployed after its offers, so this is no error; until then their polls
 * fail), e.g.
 *   "offer 10 names rule 'acme_crm', but rules/acme_crm.lua does not exist
 *    (imported: deploy the rule to poll it)"
 * and one line when names went unchecked (rules_more). Returns the number
 * of lines appended, or -1 when out is full. */
__attribute__((warn_unused_result))
int import_missing_rules(const struct import_stats *st, const char *rules_dir, struct buf *out);

/* ---- records: one lead record, and a set of them in one transaction ----
 *
 * The lead record of the file above, for the three that take one: import's
 * own line reader, the lead intake (POST /api/leads, intake.h) and `rule
 * test` (ruletest.h, which resolves goals and currencies from its files).
 * import_lead_check() validates one parsed record; import_begin(),
 * import_lead_add() and import_commit() write a set of them with the SQL
 * import uses (the lead invariants and history rows described above).
 * Positions in messages are the caller's: the functions write what is wrong
 * ("lead 1001: 'status' must be an integer 1..12") and the caller says
 * where ("line 3: ...", "lead 2: ..."). */

/* The keys of a lead record, in the order of the staging table's columns. */
enum import_lead_key {
	ILK_ID, ILK_OFFER, ILK_EXT, ILK_STATUS, ILK_REASON, ILK_CREATED, ILK_GOAL, ILK_CLICK,
	ILK_BASE, ILK_COUNTS, ILK_COMMENT, ILK_TRACK, ILK_CURR, ILK_WM, ILK_PAY, ILK_REF,
	ILK_CASH_CURR, ILK_REQUEST_ID, ILK_CUSTOMER_ID, ILK_APPROVED_AT, ILK_HOLD_UNTIL,
	ILK_COUNT
};

/* A validated lead record. A key the record left out is neither given nor
 * set; a key given as null is given, not set (the lead's field becomes
 * null, or its default when it cannot be null). Fields not set hold 0 or "";
 * no defaults are filled in (they depend on the lead that exists). */
struct import_lead {
	struct lead lead; /* id, offer, ext, status, reason, created, base, counts,
			   * comment, track, curr, wm, pay, ref, cash_curr (currency
			   * ids), approved_at, hold_until; goal is 0 (see code) */
	char goal[IMPORT_GOAL_CODE_MAX + 1]; /* the goal's code */
	char click[37];                      /* click_id as 8-4-4-4-12, lower case */
	char request_id[IMPORT_TEXT_MAX + 1];
	char customer_id[IMPORT_TEXT_MAX + 1];
	unsigned given; /* 1u << ILK_*: keys the record holds, null included */
	unsigned set;   /* 1u << ILK_*: keys holding a value */
};
#define IMPORT_LEAD_SET(l, k) ((((l)->set) >> (k)) & 1u)

/* An ISO 4217 code's currency id; 0: unknown. */
typedef int (*import_currency_fn)(const char *iso, const void *data);

/* Validates rec, the object of a lead record (the x of {"lead": x}), into
 * *out, with the rules of the lead record above: types and ranges, 'id' or
 * 'ext' given, currencies known to currency(iso, data). offer > 0 is the
 * lead's offer when rec names none (`rule test` names it once per file);
 * 0: rec must. What needs the database (offers, goals, duplicates) is
 * checked by import_commit(). Returns 0, or -1 with err naming the field
 * and, once read, the lead's id ("lead: 'status' must be an integer
 * 1..12"). */
__attribute__((warn_unused_result))
int import_lead_check(const struct cJSON *rec, import_currency_fn currency, const void *data,
		      int64_t offer, struct import_lead *out, char *err, size_t errlen);

struct import; /* one import transaction */

/* Begins an import on c, which must not be inside a transaction: BEGIN and
 * the currencies read. st is zeroed first and counts the records. Returns
 * the import, freed by import_free(), or NULL with err set. */
__attribute__((warn_unused_result))
struct import *import_begin(PGconn *c, struct import_stats *st, char *err, size_t errlen);

/* The import's currencies as an import_currency_fn: data is the import. */
int import_currency(const char *iso, const void *im);

/* Stages l (import_lead_check()) as the record at position pos (1, 2, ...,
 * increasing: the position import_commit() reports, and that the "already
 * on line N" messages name). Returns 0, or -1 with err set; the import must
 * then be freed without commit. */
__attribute__((warn_unused_result))
int import_lead_add(struct import *im, size_t pos, const struct import_lead *l, char *err,
		    size_t errlen);

/* Checks the staged leads against the database and one another, writes
 * them with their history rows and commits. ids (may be NULL) gets the
 * first maxids leads' ids in position order, *nids (may be NULL) their
 * number. Returns 0, or -1 with err set, nothing written, and *pos the
 * position of the record at fault (0: none, e.g. a database error). */
__attribute__((warn_unused_result))
int import_commit(struct import *im, int64_t *ids, size_t maxids, size_t *nids, size_t *pos,
		  char *err, size_t errlen);

/* Ends im: what was not committed is rolled back. NULL is ignored. */
void import_free(struct import *im);

#endif
