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
		"banana", "approved?", "отменено", "statuses", "\xff\xfe", "\xd0", "\xd0\x41",
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

/* ---- DESIGN.md's extended vocabulary ------------------------------------------ */

/* Every word of the first extended table, spelt as DESIGN.md spells it. */
static const struct want ext_words[] = {
	/* 2 processing */
	{ "новый заказ", 2, 0, false },
	{ "в обработке", 2, 0, false },
	{ "обрабатывается", 2, 0, false },
	{ "ожидает", 2, 0, false },
	{ "ожидание", 2, 0, false },
	{ "принят в работу", 2, 0, false },
	{ "in progress", 2, 0, false },
	{ "in work", 2, 0, false },
	/* 3 callback */
	{ "перезвон", 3, 0, false },
	{ "перезвонить", 3, 0, false },
	{ "недозвон", 3, 0, false },
	{ "не дозвонились", 3, 0, false },
	{ "не отвечает", 3, 0, false },
	{ "не берет трубку", 3, 0, false },
	{ "автоответчик", 3, 0, false },
	{ "no answer", 3, 0, false },
	{ "not reached", 3, 0, false },
	{ "call later", 3, 0, false },
	/* accept */
	ACC("подтвержден"),
	ACC("подтвержденный"),
	ACC("принят"),
	ACC("одобрен"),
	ACC("согласован"),
	ACC("апрув"),
	ACC("аппрув"),
	ACC("approved"),
	ACC("confirmed"),
	/* 7 sending */
	{ "упакован", 7, 0, false },
	{ "собран", 7, 0, false },
	{ "готов к отправке", 7, 0, false },
	{ "packed", 7, 0, false },
	/* 8 transit */
	{ "отправлен", 8, 0, false },
	{ "передан в доставку", 8, 0, false },
	{ "в доставке", 8, 0, false },
	{ "доставляется", 8, 0, false },
	{ "shipped", 8, 0, false },
	{ "in transit", 8, 0, false },
	{ "on the way", 8, 0, false },
	/* 9 delivered */
	{ "прибыл", 9, 0, false },
	{ "в пункте выдачи", 9, 0, false },
	{ "ожидает получения", 9, 0, false },
	{ "arrived", 9, 0, false },
	{ "ready for pickup", 9, 0, false },
	/* 10 paid */
	{ "выкуплен", 10, 0, false },
	{ "вручен", 10, 0, false },
	{ "получен", 10, 0, false },
	{ "оплачен", 10, 0, false },
	{ "выполнен", 10, 0, false },
	{ "завершен", 10, 0, false },
	{ "доставлен и оплачен", 10, 0, false },
	{ "complete", 10, 0, false },
	{ "purchased", 10, 0, false },
	{ "bought", 10, 0, false },
	/* 11 return */
	{ "невыкуп", 11, 0, false },
	{ "не выкуплен", 11, 0, false },
	{ "отказ от получения", 11, 0, false },
	{ "возвращен", 11, 0, false },
	{ "возврат", 11, 0, false },
	{ "return", 11, 0, false },
	{ "returned", 11, 0, false },
	{ "not picked up", 11, 0, false },
	/* 5, the offer's default reason */
	{ "отказ", 5, 0, false },
	{ "отменен", 5, 0, false },
	{ "отклонен", 5, 0, false },
	{ "аннулирован", 5, 0, false },
	{ "отмена", 5, 0, false },
	{ "refused", 5, 0, false },
	{ "rejected", 5, 0, false },
	{ "canceled", 5, 0, false },
};

/* The reasons table: seed 001's name (without "(треш)"), DESIGN.md's
 * English reading and the everyday words, each a cancel with the reason. */
static const struct want reason_words[] = {
	{ "Некорректный номер", 5, 1, false },
	{ "wrong number", 5, 1, false },
	{ "неверный номер", 5, 1, false },
	{ "неправильный номер", 5, 1, false },
	{ "invalid phone", 5, 1, false },
	{ "invalid number", 5, 1, false },
	{ "Передумал", 5, 2, false },
	{ "changed mind", 5, 2, false },
	{ "передумала", 5, 2, false },
	{ "Не заказывал", 5, 3, false },
	{ "did not order", 5, 3, false },
	{ "не заказывала", 5, 3, false },
	{ "not ordered", 5, 3, false },
	{ "Требует сертификат", 5, 4, false },
	{ "wants a certificate", 5, 4, false },
	{ "Неверное ГЕО", 5, 5, false },
	{ "wrong geo", 5, 5, false },
	{ "другое гео", 5, 5, false },
	{ "wrong country", 5, 5, false },
	{ "Треш или тест", 5, 6, false },
	{ "trash or test", 5, 6, false },
	{ "треш", 5, 6, false },
	{ "тест", 5, 6, false },
	{ "спам", 5, 6, false },
	{ "брак", 5, 6, false },
	{ "фейк", 5, 6, false },
	{ "trash", 5, 6, false },
	{ "test", 5, 6, false },
	{ "spam", 5, 6, false },
	{ "fake", 5, 6, false },
	{ "Дублированный заказ", 5, 7, false },
	{ "duplicate order", 5, 7, false },
	{ "дубль", 5, 7, false },
	{ "дубликат", 5, 7, false },
	{ "повтор", 5, 7, false },
	{ "повторный заказ", 5, 7, false },
	{ "duplicate", 5, 7, false },
	{ "double", 5, 7, false },
	{ "Заказал в другом месте", 5, 8, false },
	{ "ordered elsewhere", 5, 8, false },
	{ "заказала в другом месте", 5, 8, false },
	{ "Дорого", 5, 9, false },
	{ "too expensive", 5, 9, false },
	{ "expensive", 5, 9, false },
	{ "Не устраивает доставка", 5, 10, false },
	{ "delivery not suitable", 5, 10, false },
	{ "Не удалось дозвониться", 5, 11, false },
	{ "could not reach", 5, 11, false },
	{ "unreachable", 5, 11, false },
	{ "Подозрения на фрод", 5, 12, false },
	{ "suspected fraud", 5, 12, false },
	{ "фрод", 5, 12, false },
	{ "fraud", 5, 12, false },
	{ "Не говорит на языке колл-центра", 5, 13, false },
	{ "does not speak the language", 5, 13, false },
	{ "language barrier", 5, 13, false },
	{ "Товар не подошел", 5, 14, false },
	{ "product not suitable", 5, 14, false },
	{ "Оффер отключен", 5, 15, false },
	{ "offer disabled", 5, 15, false },
	{ "Консультация", 5, 16, false },
	{ "consultation", 5, 16, false },
	{ "Отклонён по таймеру", 5, 17, false },
	{ "rejected by timer", 5, 17, false },
};

/* dst = src with Cyrillic а..я, ё (and ASCII a..z) upper-cased, or with
 * every е written ё when yo is set. */
static void upcase_ru(char *dst, size_t cap, const char *src, bool yo)
{
	const unsigned char *p = (const unsigned char *)src;
	size_t o = 0;

	for (; *p && o + 3 < cap; p++) {
		if (p[0] == 0xD0 && p[1] == 0xB5 && yo) { /* е → ё */
			dst[o++] = (char)0xD1;
			dst[o++] = (char)0x91;
			p++;
		} else if (yo) {
			dst[o++] = (char)p[0];
		} else if (p[0] == 0xD0 && p[1] >= 0xB0 && p[1] <= 0xBF) { /* а..п */
			dst[o++] = (char)0xD0;
			dst[o++] = (char)(p[1] - 0x20);
			p++;
		} else if (p[0] == 0xD1 && p[1] >= 0x80 && p[1] <= 0x8F) { /* р..я */
			dst[o++] = (char)0xD0;
			dst[o++] = (char)(p[1] + 0x20);
			p++;
		} else if (p[0] == 0xD1 && p[1] == 0x91) { /* ё → Ё */
			dst[o++] = (char)0xD0;
			dst[o++] = (char)0x81;
			p++;
		} else {
			dst[o++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
		}
	}
	dst[o] = '\0';
}

/* Each word as written, in capitals (Cyrillic too), with ё for е, padded,
 * with doubled spaces, and with a trailing count or note. */
static void check_ext(int line, const struct want *t, size_t n)
{
	static const char *const notes[] = { " 3", " (дорого)", "(2)", "  12 ", " [x] (утро)" };
	char v[400], u[400];
	size_t i, j;

	if (!check_table(line, status_recognise, t, n))
		return;
	for (i = 0; i < n; i++) {
		upcase_ru(v, sizeof(v), t[i].word, false);
		if (!check(line, status_recognise, NULL, v, &t[i]))
			return;
		upcase_ru(v, sizeof(v), t[i].word, true);
		if (!check(line, status_recognise, NULL, v, &t[i]))
			return;
		for (j = 0; j < N(notes); j++) {
			upcase_ru(u, sizeof(u), t[i].word, j % 2 == 1);
			snprintf(v, sizeof(v), "%s%s", u, notes[j]);
			if (!check(line, status_recognise, NULL, v, &t[i]))
				return;
		}
	}
}

TEST(status_extended_vocabulary_every_word)
{
	check_ext(__LINE__, ext_words, N(ext_words));
}

TEST(status_reason_names_and_everyday_words_every_word)
{
	check_ext(__LINE__, reason_words, N(reason_words));
}

/* The names reason_name_ru/reason_name give (what `status --reasons`
 * lists) read as a cancel with that reason; every standard reason has
 * its Russian and English name in reason_words above. */
TEST(status_every_reason_name_reads_as_its_reason)
{
	struct want w = { NULL, 5, 0, false };
	int r, ru, en;
	size_t i;

	for (r = 1; r <= REASON_STD_MAX; r++) {
		w.reason = r;
		if (!check(__LINE__, status_recognise, NULL, reason_name_ru(r), &w) ||
		    !check(__LINE__, status_recognise, NULL, reason_name(r), &w))
			return;
		for (i = 0, ru = en = 0; i < N(reason_words); i++) {
			ru += strcmp(reason_words[i].word, reason_name_ru(r)) == 0;
			en += strcmp(reason_words[i].word, reason_name(r)) == 0;
		}
		if (ru != 1 || en != 1) {
			test__fail(__FILE__, __LINE__, "reason %d: names not in reason_words", r);
			return;
		}
	}
}

TEST(status_trailing_notes)
{
	struct status_words *w = status_words_new();

	ASSERT(w != NULL);
	CHECK(status_recognise, NULL, "Недозвон 3", 3, 0, false);
	CHECK(status_recognise, NULL, "Отказ (дорого)", 5, 0, false);
	CHECK(status_recognise, NULL, "  ОТКАЗ \xc2\xa0 (дорого)  ", 5, 0, false);
	CHECK(status_recognise, NULL, "недозвон(3)", 3, 0, false);
	CHECK(status_recognise, NULL, "Недозвон 3 (утро)", 3, 0, false);
	CHECK(status_recognise, NULL, "Дубль [2]", 5, 7, false);
	CHECK(status_recognise, NULL, "Отказ (очень (дорого))", 5, 0, false);
	CHECK(status_recognise, NULL, "paid 100", 10, 0, false);
	/* a note alone, a number with a note, unbalanced brackets, a count
	 * glued to the word, words in the middle: not notes */
	CHECK_NONE(status_recognise, NULL, "(отказ)");
	CHECK_NONE(status_recognise, NULL, "1 2");
	CHECK_NONE(status_recognise, NULL, "3 (x)");
	CHECK_NONE(status_recognise, NULL, "12 (10)");
	CHECK_NONE(status_recognise, NULL, "отказ (");
	CHECK_NONE(status_recognise, NULL, "отказ )");
	CHECK_NONE(status_recognise, NULL, "отказ (a))");
	CHECK_NONE(status_recognise, NULL, "недозвон3");
	CHECK_NONE(status_recognise, NULL, "недозвон 3 раза");
	CHECK_NONE(status_recognise, NULL, "недозвон -3");
	CHECK_NONE(status_recognise, NULL, "отказ: дорого");
	/* postbacks take the word as written */
	CHECK_NONE(status_postback, NULL, "approved 2");
	CHECK_NONE(status_postback, NULL, "approved (manual)");
	CHECK(status_postback, NULL, "approved", 6, 0, true);
	/* overrides: the word as written first, then without its note; a
	 * blocker of the bare word blocks it with a note too */
	if (status_words_add(w, "недозвон 3", (struct status_match){ 5, 11, false }) ||
	    status_words_add(w, "отказ", (struct status_match){ 5, 9, false }) ||
	    status_words_add(w, "дубль", (struct status_match){ 0, 0, false }) ||
	    status_words_add(w, "7", (struct status_match){ 4, 0, false })) {
		test__fail(__FILE__, __LINE__, "status_words_add failed");
		goto out;
	}
	if (!check(__LINE__, status_recognise, w, "НЕДОЗВОН 3", &(struct want){ 0, 5, 11, false }) ||
	    !check(__LINE__, status_recognise, w, "недозвон 4", &(struct want){ 0, 3, 0, false }) ||
	    /* all the notes go at once: "недозвон 3 (утро)" reads as "недозвон" */
	    !check(__LINE__, status_recognise, w, "недозвон 3 (утро)",
		   &(struct want){ 0, 3, 0, false }) ||
	    !check(__LINE__, status_recognise, w, "Отказ (дорого)", &(struct want){ 0, 5, 9, false }) ||
	    !check(__LINE__, status_recognise, w, "Дубль 2", &(struct want){ 0, 0, 0, false }) ||
	    !check(__LINE__, status_recognise, w, "7 (x)", &(struct want){ 0, 0, 0, false }))
		goto out;
	{
		struct status_match m;

		if (!status_words_lookup(w, "Отказ (дорого)", strlen("Отказ (дорого)"), &m) ||
		    m.status != 5 || m.reason != 9)
			test__fail(__FILE__, __LINE__, "lookup ignores the note: %d/%d", m.status,
				   m.reason);
		else if (!status_words_lookup(w, "дубль 2", strlen("дубль 2"), &m) || m.status)
			test__fail(__FILE__, __LINE__, "lookup of a blocked word with a count");
		else if (status_words_lookup(w, "7 (x)", 5, &m))
			test__fail(__FILE__, __LINE__, "a number with a note was looked up");
	}
out:
	status_words_free(w);
}

/* Words that could mean two things read as DESIGN.md's tables choose. */
TEST(status_extended_vocabulary_ambiguities)
{
	CHECK(status_recognise, NULL, "Недозвон", 3, 0, false);
	CHECK(status_recognise, NULL, "Не удалось дозвониться", 5, 11, false);
	CHECK(status_recognise, NULL, "Ожидает", 2, 0, false);
	CHECK(status_recognise, NULL, "Ожидает получения", 9, 0, false);
	CHECK(status_recognise, NULL, "Принят", 6, 0, true);
	CHECK(status_recognise, NULL, "Принят в работу", 2, 0, false);
	CHECK(status_recognise, NULL, "Доставлен", 9, 0, false);
	CHECK(status_recognise, NULL, "Доставлен и оплачен", 10, 0, false);
	CHECK(status_recognise, NULL, "Отказ", 5, 0, false);
	CHECK(status_recognise, NULL, "Отказ от получения", 11, 0, false);
	CHECK(status_recognise, NULL, "wrong", 5, 6, false);
	CHECK(status_recognise, NULL, "Wrong Number", 5, 1, false);
	CHECK(status_recognise, NULL, "rejected", 5, 0, false);
	CHECK(status_recognise, NULL, "Rejected by timer", 5, 17, false);
	/* the postback dialect keeps seed 000's meanings and learns none */
	CHECK(status_postback, NULL, "accepted", 2, 0, false);
	CHECK(status_postback, NULL, "shipped", 2, 0, false);
	CHECK_NONE(status_postback, NULL, "Отказ");
	CHECK_NONE(status_postback, NULL, "refused");
	CHECK_NONE(status_postback, NULL, "wrong number");
	CHECK_NONE(status_postback, NULL, "Подтвержден");
}
