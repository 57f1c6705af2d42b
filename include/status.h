/* status: the 12 lead statuses, the reject reasons, and recognition of the
 * status words CRMs and advertisers send (DESIGN.md "Status text
 * recognition" and "Push"). Pure: no I/O, no allocation except in
 * status_words (and the JSON it is built from). The built-in words are
 * folded once, on first use, into static tables shared by all threads. */
#ifndef LEADSYNC_STATUS_H
#define LEADSYNC_STATUS_H

#include <stdbool.h>
#include <stddef.h>

enum lead_status {
	LS_NEW = 1,
	LS_PROCESSING = 2,
	LS_CALLBACK = 3,
	LS_HOLD = 4,
	LS_CANCEL = 5,
	LS_PACKING = 6,
	LS_SENDING = 7,
	LS_TRANSIT = 8,
	LS_DELIVERED = 9,
	LS_PAID = 10,
	LS_RETURN = 11,
	LS_DELETED = 12,
};
#define STATUS_MIN 1
#define STATUS_MAX 12

/* The standard reject reasons 1..17 (seed 001). A network may extend the
 * list up to REASON_MAX; ids past 17 have no built-in name. */
#define REASON_STD_MAX 17
#define REASON_MAX 32 /* room for a network's own reasons; 99 is refused */
#define REASON_TRASH_TEST 6
#define REASON_DUPLICATE 7
#define REASON_FRAUD 12
#define REASON_TIMER 17

bool status_valid(int s);
bool status_is_terminal(int s); /* 5, 10, 11, 12 */
bool status_is_approved(int s); /* 6..11 */
const char *status_code(int s); /* "new" ...; NULL when invalid */
const char *status_name_ru(int s); /* "Новый" ... (UTF-8); NULL when invalid */
/* Status by its exact code ("paid", lower case); 0 when unknown or NULL. */
int status_by_code(const char *code);
bool reason_valid(int r); /* 1..REASON_MAX */
const char *reason_name(int r); /* DESIGN.md's English reading; NULL past 17 */
const char *reason_name_ru(int r); /* seed 001 text without "(треш)"; NULL past 17 */
bool reason_is_trash(int r); /* the "(треш)" marks of seed 001; false past 17 */

/* What a text means. status 0: nothing recognised. accept: run the approval
 * mechanics (status becomes 6). reason 0: none implied (for status 5 the
 * offer's default applies). */
struct status_match {
	int status;
	int reason;
	bool accept;
};

/* Longest text, once trimmed and folded, that can be recognised or stored
 * as an override (bytes). Longer texts are simply not recognised. */
#define STATUS_WORD_MAX 255

/* How texts are compared (built-in words and overrides alike): leading and
 * trailing ASCII whitespace and U+00A0 (no-break space) are dropped; every
 * inner run of them compares as one space ("no  answer" = "no answer");
 * ASCII A-Z and Cyrillic U+0400..U+042F fold to lower case; ё (and Ё)
 * compares as е. Other bytes compare as they are.
 *
 * Trailing notes (polling only, status_recognise and status_words_lookup):
 * a text no level knows as written is read once more without its trailing
 * notes, a count after a space or a note in brackets, repeated ("Недозвон
 * 3", "Отказ (дорого)", "no answer [2] (evening)" read as their first
 * word). The shorter text goes through the same levels in the same order
 * (overrides, then built-in words) but never reads as a number: "1 2" and
 * "3 (x)" are unrecognised. So a word an offer maps with its count
 * ("недозвон 3") beats the word without it. Postbacks take the word as
 * written (seed 000 is a protocol, not a CRM's free text).
 *
 * Per-offer or per-rule words consulted before the built-in ones. Keys are
 * stored folded as above. The table owns its keys; status_words_free()
 * frees everything. Lookups only read it, so one built table may be shared
 * by threads; adding words while others look up is not safe.
 *
 * A word mapped to { status 0, reason 0, accept false } is a blocker: it is
 * recognised as nothing, so the built-in meaning never applies (e.g. a CRM
 * whose "3" is private to it). */
struct status_words;
struct status_words *status_words_new(void); /* NULL when out of memory */
void status_words_free(struct status_words *w); /* NULL is a no-op */
/* Adds or replaces a word; returns 0, or -1 when out of memory, when the
 * word is empty once trimmed or longer than STATUS_WORD_MAX bytes once
 * folded, or when m is not a meaning: status outside 0..12, reason outside
 * 0..REASON_MAX, a reason without status 5. accept with status 0 is stored
 * as status 6 (accept always means 6 unless a later status is given). */
__attribute__((warn_unused_result))
int status_words_add(struct status_words *w, const char *word, struct status_match m);
size_t status_words_count(const struct status_words *w);

/* Looks text up in w alone: the same folding and trailing notes, no
 * numbers, no built-in words. Returns true when text is one of w's words and fills *m with its
 * meaning; a blocker gives true with *m all zero (the word is known and
 * means nothing: look no further). false, *m zeroed, when w is NULL or
 * does not hold the word. text may be NULL when len is 0. */
bool status_words_lookup(const struct status_words *w, const char *text, size_t len,
			 struct status_match *m);

/* Precedence (DESIGN.md "Status text recognition": "an offer (or its rule)
 * can add or override words"). A rule's lead.setstatus/lead.setstc read a
 * text with, in order: the offer's own words (offers.status_words, an
 * admin's per-offer setting, the most specific), the rule's `statuses`
 * map, then the built-in words of status_recognise(). The first level that
 * knows the word decides, and a blocker decides too: a word the offer maps
 * beats the rule's map and the built-ins; a word blocked at any level
 * reads as unrecognised unless a level before it maps the word. Postbacks
 * read the offer's words, then seed 000's table (status_postback). */

/* The offer's status words as JSON: the shape of offers.status_words,
 * which `leadsync import` takes and the poller, the postbacks and
 * `leadsync rule test` read, all through these two functions:
 *   {"word": STATUS}                           a status 1..12
 *   {"word": false}                            blocked: reads as unrecognised
 *   {"word": {"status": S, "reason": R, "accept": true}}
 * In the object form status is 1..12, reason 1..REASON_MAX and needs
 * status 5, accept is a boolean; accept true alone means 6 with the
 * approval mechanics, and accept with a status other than 6 is refused (as
 * in a rule's map); without accept true a status is required. Other keys
 * of the object are ignored. A word must not be empty once trimmed nor
 * longer than STATUS_WORD_MAX bytes once folded, and two words must not
 * fold to the same text ("Won" and "won").
 *
 * On success returns 0 with *out the new table (status_words_free() frees
 * it), or NULL when the object holds no word. On failure returns -1 with
 * *out NULL and err set, naming the word: "word 'won': status 13 is not in
 * 1..12"; the caller adds where the words came from. json is
 * NUL-terminated text; the cJSON form takes an object already parsed (the
 * caller keeps it). */
__attribute__((warn_unused_result))
int status_words_from_json(const char *json, struct status_words **out, char *err,
			   size_t errlen);
struct cJSON;
__attribute__((warn_unused_result))
int status_words_from_cjson(const struct cJSON *obj, struct status_words **out, char *err,
			    size_t errlen);

/* Polling dialect: trims, folds, then: the overrides (if any, may be NULL);
 * a number 1..12 written canonically ("7"; "07", "+7", "7.0", "0", "13" are
 * not ours); our codes; Russian names; the synonym table of DESIGN.md.
 * Returns true and fills *m when recognised, else false with *m zeroed.
 * text may be NULL when len is 0.
 *
 * The built-in words are DESIGN.md's: the synonym table and the extended
 * vocabulary, and the name of every standard reject reason in Russian
 * (seed 001, without "(треш)") and English (reason_name_ru, reason_name),
 * which reads as a cancel with that reason. Where a word could mean two
 * things the table's choice stands ("недозвон" is 3; "не удалось
 * дозвониться" is 5 with reason 11).
 *
 * Numbers, codes and Russian names give the plain status (accept false;
 * the lead module runs the approval mechanics for a move into 6..11);
 * accept words give { 6, 0, true }; a bare cancel gives reason 0.
 *
 * Decision: "new" and "Новый" read as 2 (processing), not 1. A CRM that
 * reports a lead already holds it, and "new" in a CRM means "received, not
 * yet called"; status 1 means "not yet sent to the CRM", which no CRM can
 * say, and reading it so would send the lead to the CRM again. The number
 * "1" still means 1, and status_by_code("new") is still 1. */
bool status_recognise(const struct status_words *over, const char *text, size_t len,
		      struct status_match *m);

/* Postback dialect (seed 000): hold/approved/rejected and the seed's table,
 * read as written there (e.g. "accepted" means hold). The overrides come
 * first. hold → status 2; approved → accept; rejected → 5 with the reason
 * the polling table implies for that word, else 0. No numbers, codes or
 * Russian names. Same folding, same result convention as above. */
bool status_postback(const struct status_words *over, const char *text, size_t len,
		     struct status_match *m);

#endif
