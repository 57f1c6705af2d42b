/* fuzz target status: status text recognition (status.h): the offer's
 * words from JSON (status_words_from_json), words added one by one
 * (status_words_add) and looked up (status_words_lookup), and any text
 * through status_recognise and status_postback with and without them.
 * Checked: a match is a meaning (status 0..12, reason 0..REASON_MAX, a
 * reason only with 5), no match is all zero; a word just added is found
 * with its meaning; and the folding rules hold: the same text with
 * surrounding spaces, or ASCII letters in upper case, reads the same.
 *
 * Input, NUL-separated: the words JSON; a word to add; 3 bytes of its
 * meaning (status %13, reason %34, accept bit); then the text (the rest,
 * NULs included). */
#include <ctype.h>
#include <stdio.h>

#include "fuzz.h"
#include "status.h"

static void check_meaning(bool ok, const struct status_match *m)
{
	if (!ok) {
		if (m->status || m->reason || m->accept)
			abort();
		return;
	}
	if (m->status < 0 || m->status > STATUS_MAX || m->reason < 0 || m->reason > REASON_MAX)
		abort();
	if (m->reason && m->status != LS_CANCEL)
		abort();
}

static bool same(const struct status_match *a, const struct status_match *b)
{
	return a->status == b->status && a->reason == b->reason && a->accept == b->accept;
}

typedef bool (*recog_fn)(const struct status_words *, const char *, size_t, struct status_match *);

static void check_fold(recog_fn fn, const struct status_words *w, const char *text, size_t n)
{
	struct status_match a, b;
	bool ra, rb;
	char *t = malloc(n + 4);
	size_t i;

	if (!t)
		return;
	ra = fn(w, text, n, &a);
	check_meaning(ra, &a);
	/* Surrounding whitespace is dropped. */
	t[0] = ' ';
	t[1] = '\t';
	memcpy(t + 2, text, n);
	t[n + 2] = ' ';
	rb = fn(w, t, n + 3, &b);
	if (ra != rb || !same(&a, &b)) {
		fprintf(stderr, "status: '%.*s' and its padded form read differently\n", (int)n, text);
		abort();
	}
	/* ASCII case does not matter. */
	for (i = 0; i < n; i++)
		t[i] = (char)toupper((unsigned char)text[i]);
	rb = fn(w, t, n, &b);
	if (ra != rb || !same(&a, &b)) {
		fprintf(stderr, "status: '%.*s' and its upper case read differently\n", (int)n, text);
		abort();
	}
	free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct status_words *w = NULL, *mine;
	struct status_match m, got;
	const char *json, *word, *text;
	char err[256];
	size_t n;
	struct fz f;

	if (fz_open(&f, data, size) < 0)
		return 0;
	json = fz_next(&f);
	word = fz_next(&f);
	m.status = (int)(fz_byte(&f) % 13);
	m.reason = (int)(fz_byte(&f) % (REASON_MAX + 2));
	m.accept = fz_byte(&f) & 1;
	text = fz_rest(&f, &n);

	if (status_words_from_json(json, &w, err, sizeof(err)) < 0) {
		if (w || !err[0])
			abort();
	}
	mine = status_words_new();
	if (mine && status_words_add(mine, word, m) == 0) {
		bool ok = status_words_lookup(mine, word, strlen(word), &got);
		struct status_match want = m;

		if (want.accept && want.status == 0)
			want.status = LS_PACKING; /* accept alone is stored as 6 */
		if (!ok || !same(&got, &want)) {
			fprintf(stderr, "status: added '%s' (%d,%d,%d), found %d (%d,%d,%d)\n", word,
				m.status, m.reason, m.accept, ok, got.status, got.reason, got.accept);
			abort();
		}
		if (status_words_count(mine) != 1)
			abort();
	}
	check_fold(status_recognise, NULL, text, n);
	check_fold(status_recognise, w, text, n);
	check_fold(status_postback, NULL, text, n);
	check_fold(status_postback, w, text, n);
	check_fold(status_words_lookup, w, text, n);
	check_fold(status_recognise, mine, text, n);
	status_words_free(mine);
	status_words_free(w);
	fz_close(&f);
	return 0;
}
