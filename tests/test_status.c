/* Tests of src/status.c: statuses, reasons, and both dialects of status
 * words (every built-in word, folding, overrides). */
#include "status.h"
#include "test.h"

#include <stdio.h>

struct want {
	const char *word;
	int status;
	int reason;
	bool accept;
};

#define ACC(w) { w, 6, 0, true }

/* Every word of DESIGN.md's polling synonym table, our codes and the
 * Russian names, with the meaning we expect. */
static const struct want poll_words[] = {
	/* our codes */
	{ "new", 2, 0, false }, /* decision: a CRM's "new" is our 2 */
	{ "processing", 2, 0, false },
	{ "callback", 3, 0, false },
	{ "hold", 4, 0, false },
	{ "cancel", 5, 0, false },
	{ "packing", 6, 0, false },
	{ "sending", 7, 0, false },
	{ "transit", 8, 0, false },
	{ "delivered", 9, 0, false },
	{ "paid", 10, 0, false },
	{ "return", 11, 0, false },
	{ "deleted", 12, 0, false },
	/* synonyms */
	{ "pending", 2, 0, false },
	{ "open", 2, 0, false },
	{ "waiting", 2, 0, false },
	{ "recall", 3, 0, false },
	{ "no answer", 3, 0, false },
	ACC("accepted"),
	ACC("accept"),
	ACC("approved"),
	ACC("approve"),
	ACC("confirmed"),
	ACC("confirm"),
	{ "shipped", 8, 0, false },
	{ "sent", 8, 0, false },
	{ "sold", 10, 0, false },
	{ "completed", 10, 0, false },
	{ "returned", 11, 0, false },
	{ "refunded", 11, 0, false },
	{ "refund", 11, 0, false },
	{ "spam", 5, 6, false },
	{ "test", 5, 6, false },
	{ "error", 5, 6, false },
	{ "wrong", 5, 6, false },
	{ "trash", 5, 6, false },
	{ "duplicate", 5, 7, false },
	{ "double", 5, 7, false },
	{ "fraud", 5, 12, false },
	{ "canceled", 5, 0, false },
	{ "cancelled", 5, 0, false },
	{ "declined", 5, 0, false },
	{ "rejected", 5, 0, false },
	{ "archived", 5, 0, false },
	{ "archive", 5, 0, false },
	/* Russian names, as written and folded */
	{ "Новый", 2, 0, false }, /* same decision as "new" */
	{ "Обработка", 2, 0, false },
	{ "Перезвонить", 3, 0, false },
	{ "Холд", 4, 0, false },
	{ "Отмена", 5, 0, false },
	{ "Упаковка", 6, 0, false },
	{ "Отправка", 7, 0, false },
	{ "В пути", 8, 0, false },
	{ "Доставлен", 9, 0, false },
	{ "Оплачен", 10, 0, false },
	{ "Возврат", 11, 0, false },
	{ "Удалён", 12, 0, false },
	{ "Удален", 12, 0, false },
	{ "НОВЫЙ", 2, 0, false },
	{ "ОБРАБОТКА", 2, 0, false },
	{ "ПЕРЕЗВОНИТЬ", 3, 0, false },
	{ "ХОЛД", 4, 0, false },
	{ "ОТМЕНА", 5, 0, false },
	{ "УПАКОВКА", 6, 0, false },
	{ "ОТПРАВКА", 7, 0, false },
	{ "В ПУТИ", 8, 0, false },
	{ "ДОСТАВЛЕН", 9, 0, false },
	{ "ОПЛАЧЕН", 10, 0, false },
	{ "ВОЗВРАТ", 11, 0, false },
	{ "УДАЛЁН", 12, 0, false },
	{ "УДАЛЕН", 12, 0, false },
	{ "новый", 2, 0, false },
	{ "обработка", 2, 0, false },
	{ "перезвонить", 3, 0, false },
	{ "холд", 4, 0, false },
	{ "отмена", 5, 0, false },
	{ "упаковка", 6, 0, false },
	{ "отправка", 7, 0, false },
	{ "в пути", 8, 0, false },
	{ "доставлен", 9, 0, false },
	{ "оплачен", 10, 0, false },
	{ "возврат", 11, 0, false },
	{ "удалён", 12, 0, false },
	{ "удален", 12, 0, false },
	{ "ПеРеЗвОнИтЬ", 3, 0, false },
	{ "уДаЛЁн", 12, 0, false },
	{ "В пУТИ", 8, 0, false },
};

/* Seed 000's table, read as written there. */
static const struct want postback_words[] = {
	{ "hold", 2, 0, false },
	ACC("approved"),
	{ "rejected", 5, 0, false },
	/* HOLD */
	{ "shipped", 2, 0, false },
	{ "processing", 2, 0, false },
	{ "accepted", 2, 0, false },
	{ "waiting", 2, 0, false },
	{ "open", 2, 0, false },
	{ "new", 2, 0, false },
	{ "pending", 2, 0, false },
	/* APPROVED */
	ACC("confirmed"),
	ACC("confirm"),
	ACC("paid"),
	ACC("completed"),
	ACC("sold"),
	ACC("delivered"),
	/* REJECTED */
	{ "returned", 5, 0, false },
	{ "canceled", 5, 0, false },
	{ "cancelled", 5, 0, false },
	{ "archived", 5, 0, false },
	{ "refunded", 5, 0, false },
	{ "cancel", 5, 0, false },
	{ "archive", 5, 0, false },
	{ "refund", 5, 0, false },
	{ "spam", 5, 6, false },
	{ "error", 5, 6, false },
	{ "wrong", 5, 6, false },
	{ "test", 5, 6, false },
	{ "declined", 5, 0, false },
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

typedef bool (*recognise_fn)(const struct status_words *, const char *, size_t,
			     struct status_match *);

/* Recognises text with fn and compares with w; records a failure naming
 * the text and returns false on a mismatch. */
static bool check(int line, recognise_fn fn, const struct status_words *over, const char *text,
		  const struct want *w)
{
	struct status_match m = { -7, -7, true };
	bool ok = fn(over, text, strlen(text), &m);

	if (ok != (w->status != 0) || m.status != w->status || m.reason != w->reason ||
	    m.accept != w->accept) {
		test__fail(__FILE__, line,
			   "'%s': got %s {status %d, reason %d, accept %d}, want {%d, %d, %d}",
			   text, ok ? "true" : "false", m.status, m.reason, m.accept, w->status,
			   w->reason, w->accept);
		return false;
	}
	return true;
}

#define CHECK(fn, over, text, st, rs, acc)                                   \
	do {                                                                 \
		const struct want w_ = { NULL, st, rs, acc };                \
		if (!check(__LINE__, fn, over, text, &w_))                   \
			return;                                              \
	} while (0)
#define CHECK_NONE(fn, over, text) CHECK(fn, over, text, 0, 0, false)

/* Runs each word of t as written, upper-cased (ASCII), padded with
 * whitespace and no-break spaces, and with its inner spaces doubled. */
static bool check_table(int line, recognise_fn fn, const struct want *t, size_t n)
{
	char v[300];
	size_t i, j, k;

	for (i = 0; i < n; i++) {
		if (!check(line, fn, NULL, t[i].word, &t[i]))
			return false;
		for (j = 0; t[i].word[j]; j++)
			v[j] = (char)(t[i].word[j] >= 'a' && t[i].word[j] <= 'z'
					      ? t[i].word[j] - 'a' + 'A'
					      : t[i].word[j]);
		v[j] = '\0';
		if (!check(line, fn, NULL, v, &t[i]))
			return false;
		snprintf(v, sizeof(v), " \t\xc2\xa0%s\r\n\xc2\xa0 ", t[i].word);
		if (!check(line, fn, NULL, v, &t[i]))
			return false;
		for (j = k = 0; t[i].word[j] && k + 3 < sizeof(v); j++) {
			v[k++] = t[i].word[j];
			if (t[i].word[j] == ' ') {
				v[k++] = '\t';
				v[k++] = ' ';
			}
		}
		v[k] = '\0';
		if (!check(line, fn, NULL, v, &t[i]))
			return false;
	}
	return true;
}

TEST(status_codes_and_names)
{
	static const char *const codes[] = {
		"new", "processing", "callback", "hold", "cancel", "packing",
		"sending", "transit", "delivered", "paid", "return", "deleted",
	};
	static const char *const ru[] = {
		"Новый", "Обработка", "Перезвонить", "Холд", "Отмена", "Упаковка",
		"Отправка", "В пути", "Доставлен", "Оплачен", "Возврат", "Удалён",
	};
	int s;

	for (s = 1; s <= 12; s++) {
		ASSERT(status_valid(s));
		ASSERT_STREQ(status_code(s), codes[s - 1]);
		ASSERT_STREQ(status_name_ru(s), ru[s - 1]);
		ASSERT_EQ(status_by_code(codes[s - 1]), s);
	}
	ASSERT_EQ(LS_NEW, 1);
	ASSERT_EQ(LS_DELETED, 12);
	ASSERT(!status_valid(0));
	ASSERT(!status_valid(13));
	ASSERT(!status_valid(-1));
	ASSERT(status_code(0) == NULL);
	ASSERT(status_code(13) == NULL);
	ASSERT(status_name_ru(-1) == NULL);
	ASSERT(status_name_ru(13) == NULL);
	ASSERT_EQ(status_by_code("Paid"), 0);
	ASSERT_EQ(status_by_code("sold"), 0);
	ASSERT_EQ(status_by_code(""), 0);
	ASSERT_EQ(status_by_code(NULL), 0);
}

TEST(status_terminal_and_approved_sets)
{
	int s;

	for (s = -1; s <= 13; s++) {
		bool term = s == 5 || s == 10 || s == 11 || s == 12;
		bool appr = s >= 6 && s <= 11;

		if (status_is_terminal(s) != term)
			test__fail(__FILE__, __LINE__, "status_is_terminal(%d) != %d", s, term);
		if (status_is_approved(s) != appr)
			test__fail(__FILE__, __LINE__, "status_is_approved(%d) != %d", s, appr);
		if (test__failed())
			return;
	}
}

TEST(status_reasons_names_and_trash)
{
	static const struct {
		const char *ru;
		bool trash;
	} seed[] = {
		{ "Некорректный номер", true },
		{ "Передумал", false },
		{ "Не заказывал", true },
		{ "Требует сертификат", false },
		{ "Неверное ГЕО", true },
		{ "Треш или тест", true },
		{ "Дублированный заказ", true },
		{ "Заказал в другом месте", true },
		{ "Дорого", false },
		{ "Не устраивает доставка", true },
		{ "Не удалось дозвониться", true },
		{ "Подозрения на фрод", true },
		{ "Не говорит на языке колл-центра", false },
		{ "Товар не подошел", true },
		{ "Оффер отключен", false },
		{ "Консультация", false },
		{ "Отклонён по таймеру", false },
	};
	int r;

	ASSERT_EQ(N(seed), REASON_STD_MAX);
	for (r = 1; r <= REASON_STD_MAX; r++) {
		ASSERT(reason_valid(r));
		ASSERT_STREQ(reason_name_ru(r), seed[r - 1].ru);
		ASSERT(reason_name(r) != NULL && reason_name(r)[0] != '\0');
		if (reason_is_trash(r) != seed[r - 1].trash) {
			test__fail(__FILE__, __LINE__, "reason_is_trash(%d) != %d", r,
				   seed[r - 1].trash);
			return;
		}
	}
	ASSERT_STREQ(reason_name(1), "wrong number");
	ASSERT_STREQ(reason_name(REASON_TRASH_TEST), "trash or test");
	ASSERT_STREQ(reason_name(REASON_DUPLICATE), "duplicate order");
	ASSERT_STREQ(reason_name(REASON_FRAUD), "suspected fraud");
	ASSERT_STREQ(reason_name(REASON_TIMER), "rejected by timer");
	ASSERT(!reason_valid(0));
	ASSERT(reason_valid(18));
	ASSERT(reason_valid(REASON_MAX));
	ASSERT(!reason_valid(REASON_MAX + 1));
	ASSERT(reason_name(0) == NULL);
	ASSERT(reason_name(18) == NULL);
	ASSERT(reason_name_ru(18) == NULL);
	ASSERT(!reason_is_trash(0));
	ASSERT(!reason_is_trash(18));
	ASSERT(!reason_is_trash(-1));
}

TEST(status_poll_every_word)
{
	check_table(__LINE__, status_recognise, poll_words, N(poll_words));
}

TEST(status_postback_every_word)
{
	check_table(__LINE__, status_postback, postback_words, N(postback_words));
}

TEST(status_poll_russian_names_of_every_status)
{
	struct want w = { NULL, 0, 0, false };
	int s;

	for (s = 2; s <= 12; s++) {
		w.status = s;
		if (!check(__LINE__, status_recognise, NULL, status_name_ru(s), &w))
			return;
	}
}

TEST(status_new_reads_as_processing)
{
	CHECK(status_recognise, NULL, "new", 2, 0, false);
	CHECK(status_recognise, NULL, " New ", 2, 0, false);
	CHECK(status_recognise, NULL, "Новый", 2, 0, false);
	CHECK(status_recognise, NULL, "1", 1, 0, false); /* our number is ours */
	ASSERT_EQ(status_by_code("new"), 1);
	CHECK(status_postback, NULL, "new", 2, 0, false);
}

TEST(status_numbers)
{
	char t[16];
	int s;

	for (s = 1; s <= 12; s++) {
		snprintf(t, sizeof(t), "%d", s);
		CHECK(status_recognise, NULL, t, s, 0, false);
		snprintf(t, sizeof(t), " %d\t", s);
		CHECK(status_recognise, NULL, t, s, 0, false);
		/* postbacks speak words only */
		snprintf(t, sizeof(t), "%d", s);
		CHECK_NONE(status_postback, NULL, t);
	}
	CHECK_NONE(status_recognise, NULL, "0");
	CHECK_NONE(status_recognise, NULL, "13");
	CHECK_NONE(status_recognise, NULL, "-1");
	CHECK_NONE(status_recognise, NULL, "+7");
	CHECK_NONE(status_recognise, NULL, "07");
	CHECK_NONE(status_recognise, NULL, "7.0");
	CHECK_NONE(status_recognise, NULL, "100");
	CHECK_NONE(status_recognise, NULL, "1 2");
	CHECK_NONE(status_recognise, NULL, "");
	CHECK_NONE(status_recognise, NULL, " \t\xc2\xa0 ");
}

TEST(status_whitespace_and_case)
{
	CHECK(status_recognise, NULL, "no  answer", 3, 0, false);
	CHECK(status_recognise, NULL, "\tNO \xc2\xa0 Answer\n", 3, 0, false);
	CHECK(status_recognise, NULL, "no\xc2\xa0" "answer", 3, 0, false);
	CHECK(status_recognise, NULL, "В  пути", 8, 0, false);
	CHECK(status_recognise, NULL, "в\xc2\xa0пути", 8, 0, false);
	CHECK(status_recognise, NULL, "\xc2\xa0В\tПУТИ\xc2\xa0", 8, 0, false);
	CHECK(status_recognise, NULL, "PaId", 10, 0, false);
	CHECK_NONE(status_recognise, NULL, "noanswer");
	CHECK_NONE(status_recognise, NULL, "no_answer");
	CHECK_NONE(status_recognise, NULL, "впути");
	CHECK_NONE(status_recognise, NULL, "paid!");
	CHECK_NONE(status_recognise, NULL, "pai");
	CHECK_NONE(status_recognise, NULL, "paidd");
	/* a Р (D0 A0) at the end is a letter, not a no-break space */
	CHECK_NONE(status_recognise, NULL, "ХОЛДР");
	CHECK_NONE(status_recognise, NULL, "холдр");
}

TEST(status_length_with_embedded_nul_and_bounds)
{
	char big[600];
	struct status_match m = { 9, 9, true };

	/* len, not the NUL, ends the text */
	ASSERT(status_recognise(NULL, "paid\0junk", 4, &m));
	ASSERT_EQ(m.status, 10);
	ASSERT(!status_recognise(NULL, "paid\0", 5, &m));
	ASSERT_EQ(m.status, 0);
	ASSERT(status_recognise(NULL, "holdover", 4, &m));
	ASSERT_EQ(m.status, 4);
	ASSERT(!status_recognise(NULL, NULL, 0, &m));
	ASSERT_EQ(m.status, 0);
	/* whitespace is trimmed before the length bound applies */
	memset(big, ' ', sizeof(big));
	memcpy(big + 400, "paid", 4);
	ASSERT(status_recognise(NULL, big, sizeof(big), &m));
	ASSERT_EQ(m.status, 10);
	memset(big, 'a', sizeof(big));
	ASSERT(!status_recognise(NULL, big, sizeof(big), &m));
	ASSERT(!status_postback(NULL, big, sizeof(big), &m));
}

TEST(status_unrecognised_is_zeroed)
{
	static const char *const junk[] = {
		"banana", "approved?", "отменен", "statuses", "\xff\xfe", "\xd0", "\xd0\x41",
		"accept ed",
	};
	struct status_match m;
	size_t i;

	for (i = 0; i < N(junk); i++) {
		m.status = 3;
		m.reason = 4;
		m.accept = true;
		if (status_recognise(NULL, junk[i], strlen(junk[i]), &m) || m.status || m.reason ||
		    m.accept) {
			test__fail(__FILE__, __LINE__, "'%s' recognised or not zeroed", junk[i]);
			return;
		}
		m.status = 3;
		m.accept = true;
		if (status_postback(NULL, junk[i], strlen(junk[i]), &m) || m.status || m.accept) {
			test__fail(__FILE__, __LINE__, "postback '%s' recognised or not zeroed",
				   junk[i]);
			return;
		}
	}
}

TEST(status_dialects_differ)
{
	/* seed 000 and DESIGN.md's polling table disagree on these words */
	CHECK(status_postback, NULL, "accepted", 2, 0, false);
	CHECK(status_recognise, NULL, "accepted", 6, 0, true);
	CHECK(status_postback, NULL, "hold", 2, 0, false);
	CHECK(status_recognise, NULL, "hold", 4, 0, false);
	CHECK(status_postback, NULL, "shipped", 2, 0, false);
	CHECK(status_recognise, NULL, "shipped", 8, 0, false);
	CHECK(status_postback, NULL, "paid", 6, 0, true);
	CHECK(status_recognise, NULL, "paid", 10, 0, false);
	CHECK(status_postback, NULL, "returned", 5, 0, false);
	CHECK(status_recognise, NULL, "returned", 11, 0, false);
	CHECK(status_postback, NULL, "refund", 5, 0, false);
	CHECK(status_recognise, NULL, "refund", 11, 0, false);
	/* words of the polling table only */
	CHECK_NONE(status_postback, NULL, "trash");
	CHECK_NONE(status_postback, NULL, "fraud");
	CHECK_NONE(status_postback, NULL, "duplicate");
	CHECK_NONE(status_postback, NULL, "packing");
	CHECK_NONE(status_postback, NULL, "approve");
	CHECK_NONE(status_postback, NULL, "Холд");
	CHECK_NONE(status_postback, NULL, "deleted");
	/* and the postback reasons are the polling table's */
	CHECK(status_postback, NULL, "SPAM", 5, REASON_TRASH_TEST, false);
	ASSERT(reason_is_trash(REASON_TRASH_TEST));
}

TEST(status_overrides_beat_builtins)
{
	struct status_words *w = status_words_new();
	struct status_match m5 = { 5, 0, false }, paid = { 10, 0, false };
	struct status_match none = { 0, 0, false }, acc = { 0, 0, true };

	ASSERT(w != NULL);
	ASSERT_EQ(status_words_count(w), 0);
	CHECK(status_recognise, w, "1", 1, 0, false); /* empty table: built-ins */
	if (status_words_add(w, "1", m5) || status_words_add(w, "sold", m5) ||
	    status_words_add(w, "  В  ПУТИ ", paid) || status_words_add(w, "3", none) ||
	    status_words_add(w, "Ёлка", acc) || status_words_add(w, "accepted", acc)) {
		test__fail(__FILE__, __LINE__, "status_words_add failed");
		goto out;
	}
	if (status_words_count(w) != 6) {
		test__fail(__FILE__, __LINE__, "count %zu != 6", status_words_count(w));
		goto out;
	}
	if (!check(__LINE__, status_recognise, w, "1", &(struct want){ 0, 5, 0, false }) ||
	    !check(__LINE__, status_recognise, w, " SOLD ", &(struct want){ 0, 5, 0, false }) ||
	    !check(__LINE__, status_recognise, w, "в пути", &(struct want){ 0, 10, 0, false }) ||
	    !check(__LINE__, status_recognise, w, "3", &(struct want){ 0, 0, 0, false }) ||
	    !check(__LINE__, status_recognise, w, "елка", &(struct want){ 0, 6, 0, true }) ||
	    !check(__LINE__, status_recognise, w, "2", &(struct want){ 0, 2, 0, false }) ||
	    !check(__LINE__, status_recognise, w, "paid", &(struct want){ 0, 10, 0, false }) ||
	    /* postbacks consult the same overrides first */
	    !check(__LINE__, status_postback, w, "sold", &(struct want){ 0, 5, 0, false }) ||
	    !check(__LINE__, status_postback, w, "Accepted", &(struct want){ 0, 6, 0, true }) ||
	    !check(__LINE__, status_postback, w, "3", &(struct want){ 0, 0, 0, false }))
		goto out;
	/* replacing keeps the count */
	if (status_words_add(w, "SOLD", paid) || status_words_count(w) != 6) {
		test__fail(__FILE__, __LINE__, "replacing 'sold' failed or changed the count");
		goto out;
	}
	check(__LINE__, status_recognise, w, "sold", &(struct want){ 0, 10, 0, false });
out:
	status_words_free(w);
}

TEST(status_overrides_refuse_bad_words)
{
	struct status_words *w = status_words_new();
	struct status_match ok = { 5, 6, false };
	char longw[STATUS_WORD_MAX + 2];

	ASSERT(w != NULL);
	memset(longw, 'x', sizeof(longw));
	longw[STATUS_WORD_MAX + 1] = '\0';
	if (status_words_add(w, "", ok) != -1 || status_words_add(w, " \t\xc2\xa0", ok) != -1 ||
	    status_words_add(w, NULL, ok) != -1 || status_words_add(NULL, "x", ok) != -1 ||
	    status_words_add(w, longw, ok) != -1 ||
	    status_words_add(w, "x", (struct status_match){ 13, 0, false }) != -1 ||
	    status_words_add(w, "x", (struct status_match){ -1, 0, false }) != -1 ||
	    status_words_add(w, "x", (struct status_match){ 5, REASON_MAX + 1, false }) != -1 ||
	    status_words_add(w, "x", (struct status_match){ 2, 6, false }) != -1 ||
	    status_words_count(w) != 0) {
		test__fail(__FILE__, __LINE__, "a bad word or meaning was accepted");
		goto out;
	}
	/* exactly STATUS_WORD_MAX bytes is fine, and recognised */
	longw[STATUS_WORD_MAX] = '\0';
	if (status_words_add(w, longw, ok) != 0 || status_words_count(w) != 1) {
		test__fail(__FILE__, __LINE__, "a word of STATUS_WORD_MAX bytes was refused");
		goto out;
	}
	check(__LINE__, status_recognise, w, longw, &(struct want){ 0, 5, 6, false });
out:
	status_words_free(w);
	status_words_free(NULL);
	ASSERT_EQ(status_words_count(NULL), 0);
}

TEST(status_overrides_many_words)
{
	struct status_words *w = status_words_new();
	char word[32];
	int i;

	ASSERT(w != NULL);
	for (i = 0; i < 300; i++) {
		snprintf(word, sizeof(word), "CRM-%d", i);
		if (status_words_add(w, word, (struct status_match){ 1 + i % 12, 0, false })) {
			test__fail(__FILE__, __LINE__, "adding '%s' failed", word);
			goto out;
		}
	}
	if (status_words_count(w) != 300) {
		test__fail(__FILE__, __LINE__, "count %zu != 300", status_words_count(w));
		goto out;
	}
	for (i = 0; i < 300; i++) {
		snprintf(word, sizeof(word), "crm-%d", i);
		if (!check(__LINE__, status_recognise, w, word,
			   &(struct want){ 0, 1 + i % 12, 0, false }))
			goto out;
	}
	check(__LINE__, status_recognise, w, "crm-300", &(struct want){ 0, 0, 0, false });
out:
	status_words_free(w);
}

/* The offer's words as JSON: every shape, folded keys, a blocker. */
TEST(status_words_from_json_reads_every_shape)
{
	struct status_words *w = (struct status_words *)1;
	struct status_match m;
	char err[256] = "";

	ASSERT_EQ(status_words_from_json(" { } ", &w, err, sizeof(err)), 0);
	ASSERT(w == NULL);
	ASSERT_EQ(status_words_from_json("{\"WON\": 10, \"Lost\": {\"status\": 5, \"reason\": 7},"
					 " \"ok\": {\"accept\": true}, \"3\": false,"
					 " \"six\": {\"status\": 6, \"accept\": true},"
					 " \"  В  ПУТИ \": {\"status\": 8, \"accept\": false, \"note\": 1}}",
					 &w, err, sizeof(err)),
		  0);
	ASSERT(w != NULL);
	if (status_words_count(w) != 6)
		test__fail(__FILE__, __LINE__, "count %zu != 6", status_words_count(w));
	if (!check(__LINE__, status_recognise, w, "won", &(struct want){ 0, 10, 0, false }) ||
	    !check(__LINE__, status_recognise, w, "LOST", &(struct want){ 0, 5, 7, false }) ||
	    !check(__LINE__, status_recognise, w, "ok", &(struct want){ 0, 6, 0, true }) ||
	    !check(__LINE__, status_recognise, w, "six", &(struct want){ 0, 6, 0, true }) ||
	    !check(__LINE__, status_recognise, w, "в пути", &(struct want){ 0, 8, 0, false }) ||
	    /* false blocks the built-in meaning of "3" */
	    !check(__LINE__, status_recognise, w, "3", &(struct want){ 0, 0, 0, false }) ||
	    !check(__LINE__, status_postback, w, "won", &(struct want){ 0, 10, 0, false }))
		goto out;
	/* the lookup sees the blocker as a known word with no meaning */
	m.status = 99;
	if (!status_words_lookup(w, " 3 ", 3, &m) || m.status || m.reason || m.accept)
		test__fail(__FILE__, __LINE__, "'3' is not a known blocker");
out:
	status_words_free(w);
}

TEST(status_words_from_json_refuses_what_it_cannot_mean)
{
	static const struct {
		const char *json, *want;
	} bad[] = {
		{ "{\"x\": 1", "status words are not valid JSON" },
		{ "[1]", "status words must be a JSON object" },
		{ "{\"x\": 13}", "word 'x': status 13 is not in 1..12" },
		{ "{\"x\": 2.5}", "word 'x': status 2.5 is not in 1..12" },
		{ "{\"x\": true}", "word 'x': give a status 1..12, false (blocked) or" },
		{ "{\"x\": \"paid\"}", "word 'x': give a status" },
		{ "{\"x\": null}", "word 'x': give a status" },
		{ "{\"x\": {\"status\": 0}}", "word 'x': \"status\" is not in 1..12" },
		{ "{\"x\": {\"status\": 5, \"reason\": 99}}", "word 'x': \"reason\" is not in 1.." },
		{ "{\"x\": {\"status\": 2, \"reason\": 6}}", "word 'x': a reason needs status 5" },
		{ "{\"x\": {\"reason\": 6}}", "word 'x': neither \"status\" nor \"accept\": true" },
		{ "{\"x\": {\"accept\": false}}", "word 'x': neither" },
		{ "{\"x\": {\"accept\": \"yes\"}}", "word 'x': \"accept\" is not true or false" },
		{ "{\"x\": {\"status\": 5, \"accept\": true}}", "word 'x': accept approves into status 6" },
		{ "{\"\": 2}", "word '': empty, or longer than 255 bytes" },
		{ "{\" \\u00a0 \": 2}", "empty, or longer than" },
		{ "{\"ok\": 2, \"Won\": 10, \" WON\": false}", "word ' WON': given twice" },
	};
	struct status_words *w;
	char err[256], longj[400];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		w = (struct status_words *)1;
		err[0] = '\0';
		if (status_words_from_json(bad[i].json, &w, err, sizeof(err)) != -1 || w != NULL ||
		    !strstr(err, bad[i].want)) {
			test__fail(__FILE__, __LINE__, "%s: got '%s', want '%s'", bad[i].json, err,
				   bad[i].want);
			if (w != (struct status_words *)1)
				status_words_free(w);
			return;
		}
	}
	snprintf(longj, sizeof(longj), "{\"%0*d\": 2}", STATUS_WORD_MAX + 1, 7);
	ASSERT_EQ(status_words_from_json(longj, &w, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "empty, or longer than 255 bytes");
	ASSERT_EQ(status_words_from_json(NULL, &w, err, sizeof(err)), -1);
	ASSERT(w == NULL);
}

/* The lookup reads the table only: no numbers, no built-in words. */
TEST(status_words_lookup_reads_the_table_only)
{
	struct status_words *w = status_words_new();
	struct status_match m = { 1, 1, true };

	ASSERT(w != NULL);
	ASSERT(!status_words_lookup(NULL, "paid", 4, &m));
	ASSERT_EQ(m.status, 0);
	ASSERT(!status_words_lookup(w, "paid", 4, &m)); /* empty table */
	if (status_words_add(w, "Ёлка", (struct status_match){ 9, 0, false }) < 0) {
		test__fail(__FILE__, __LINE__, "status_words_add failed");
		goto out;
	}
	if (status_words_lookup(w, "paid", 4, &m) || status_words_lookup(w, "7", 1, &m) ||
	    status_words_lookup(w, NULL, 0, &m) || status_words_lookup(w, " ", 1, &m) || m.status)
		test__fail(__FILE__, __LINE__, "a word the table lacks was found");
	else if (!status_words_lookup(w, "\xc2\xa0 ЕЛКА ", strlen("\xc2\xa0 ЕЛКА "), &m) ||
		 m.status != 9 || m.accept)
		test__fail(__FILE__, __LINE__, "folded 'ЕЛКА' not found: status %d", m.status);
out:
	status_words_free(w);
}
