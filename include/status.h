/* status: the 12 lead statuses, the reject reasons, and recognition of the
 * status words CRMs and advertisers send (DESIGN.md "Status text
 * recognition" and "Push"). Pure: no I/O, no allocation except in
 * status_words. */
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
#define REASON_MAX 99
#define REASON_TRASH_TEST 6
#define REASON_DUPLICATE 7
#define REASON_FRAUD 12
#define REASON_TIMER 17

bool status_valid(int s);
bool status_is_terminal(int s); /* 5, 10, 11, 12 */
bool status_is_approved(int s); /* 6..11 */
const char *status_code(int s); /* "new" ...; NULL when invalid */
const char *status_name_ru(int s); /* "Новый" ... */
/* Status by its code ("paid"); 0 when unknown. */
int status_by_code(const char *code);
bool reason_valid(int r); /* 1..REASON_MAX */
const char *reason_name(int r); /* English name; NULL past 17 */
const char *reason_name_ru(int r);
bool reason_is_trash(int r);

/* What a text means. status 0: nothing recognised. accept: run the approval
 * mechanics (status becomes 6). reason 0: none implied (for status 5 the
 * offer's default applies). */
struct status_match {
	int status;
	int reason;
	bool accept;
};

/* Per-offer or per-rule words consulted before the built-in ones. Keys are
 * stored trimmed and case-folded (ASCII and Cyrillic). */
struct status_words;
struct status_words *status_words_new(void);
void status_words_free(struct status_words *w);
/* Adds or replaces a word; returns 0, or -1 when out of memory or the word
 * is empty / longer than 255 bytes. */
__attribute__((warn_unused_result))
int status_words_add(struct status_words *w, const char *word, struct status_match m);
size_t status_words_count(const struct status_words *w);

/* Polling dialect: trims, folds case, then: the overrides (if any); a
 * number 1..12; our codes; Russian names (ё and е alike); the synonym
 * table. Returns true and fills *m when recognised, else false with *m
 * zeroed. */
bool status_recognise(const struct status_words *over, const char *text, size_t len,
		      struct status_match *m);

/* Postback dialect (seed 000): hold/approved/rejected and the seed's table,
 * read as written there (e.g. "accepted" means hold). The overrides come
 * first. hold → status 2; approved → accept; rejected → 5 with the reason
 * the polling table implies for that word, else 0. */
bool status_postback(const struct status_words *over, const char *text, size_t len,
		     struct status_match *m);

#endif
