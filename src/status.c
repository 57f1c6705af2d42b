/* status: the lead statuses and reject reasons, and the recognition of the
 * status words CRMs (polling) and advertisers (postbacks) send. */
#include "status.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

/* ---- statuses and reasons ---------------------------------------------- */

static const char *const status_codes[STATUS_MAX + 1] = {
	NULL, "new", "processing", "callback", "hold", "cancel", "packing",
	"sending", "transit", "delivered", "paid", "return", "deleted",
};

static const char *const status_names_ru[STATUS_MAX + 1] = {
	NULL, "Новый", "Обработка", "Перезвонить", "Холд", "Отмена", "Упаковка",
	"Отправка", "В пути", "Доставлен", "Оплачен", "Возврат", "Удалён",
};

struct reason {
	const char *en;
	const char *ru;
	bool trash;
};

/* Seed 001 "Стандартные причины отказа"; trash = the "(треш)" mark. */
static const struct reason reasons[REASON_STD_MAX + 1] = {
	{ NULL, NULL, false },
	{ "wrong number", "Некорректный номер", true },
	{ "changed mind", "Передумал", false },
	{ "did not order", "Не заказывал", true },
	{ "requires a certificate", "Требует сертификат", false },
	{ "wrong geo", "Неверное ГЕО", true },
	{ "trash or test", "Треш или тест", true },
	{ "duplicate order", "Дублированный заказ", true },
	{ "ordered elsewhere", "Заказал в другом месте", true },
	{ "too expensive", "Дорого", false },
	{ "delivery does not suit", "Не устраивает доставка", true },
	{ "could not get through", "Не удалось дозвониться", true },
	{ "suspected fraud", "Подозрения на фрод", true },
	{ "does not speak the call centre's language", "Не говорит на языке колл-центра",
	  false },
	{ "product did not suit", "Товар не подошел", true },
	{ "offer disabled", "Оффер отключен", false },
	{ "consultation", "Консультация", false },
	{ "rejected by timer", "Отклонён по таймеру", false },
};

bool status_valid(int s)
{
	return s >= STATUS_MIN && s <= STATUS_MAX;
}

bool status_is_terminal(int s)
{
	return s == LS_CANCEL || s == LS_PAID || s == LS_RETURN || s == LS_DELETED;
}

bool status_is_approved(int s)
{
	return s >= LS_PACKING && s <= LS_RETURN;
}

const char *status_code(int s)
{
	return status_valid(s) ? status_codes[s] : NULL;
}

const char *status_name_ru(int s)
{
	return status_valid(s) ? status_names_ru[s] : NULL;
}

int status_by_code(const char *code)
{
	int s;

	if (!code)
		return 0;
	for (s = STATUS_MIN; s <= STATUS_MAX; s++)
		if (strcmp(code, status_codes[s]) == 0)
			return s;
	return 0;
}

bool reason_valid(int r)
{
	return r >= 1 && r <= REASON_MAX;
}

const char *reason_name(int r)
{
	return r >= 1 && r <= REASON_STD_MAX ? reasons[r].en : NULL;
}

const char *reason_name_ru(int r)
{
	return r >= 1 && r <= REASON_STD_MAX ? reasons[r].ru : NULL;
}

bool reason_is_trash(int r)
{
	return r >= 1 && r <= REASON_STD_MAX && reasons[r].trash;
}

/* ---- folding -------------------------------------------------------------- */

/* Width of the whitespace character at p (ASCII space, \t \n \v \f \r, or
 * UTF-8 U+00A0), 0 when p holds none. */
static size_t status__space(const unsigned char *p, const unsigned char *end)
{
	if (*p == ' ' || (*p >= '\t' && *p <= '\r'))
		return 1;
	if (*p == 0xC2 && end - p >= 2 && p[1] == 0xA0)
		return 2;
	return 0;
}

/* Width of the whitespace character that ends at end, 0 when none. 0xC2 is
 * a lead byte, never a continuation, so "C2 A0" at the end is a no-break
 * space even after a multi-byte character (Р is D0 A0). */
static size_t status__space_before(const unsigned char *start, const unsigned char *end)
{
	unsigned char c = end[-1];

	if (c == ' ' || (c >= '\t' && c <= '\r'))
		return 1;
	if (c == 0xA0 && end - start >= 2 && end[-2] == 0xC2)
		return 2;
	return 0;
}

/* Folds text into out (STATUS_WORD_MAX + 1 bytes, NUL-terminated) as the
 * header describes. Returns the folded length (0 when only whitespace), or
 * -1 when it would pass STATUS_WORD_MAX. Folding never lengthens a
 * character, so the work is bounded by STATUS_WORD_MAX plus the trim. */
static int status__fold(const char *text, size_t len, char *out)
{
	const unsigned char *p, *end;
	unsigned char c[2];
	size_t o = 0, n, w;

	if (!text)
		len = 0;
	p = (const unsigned char *)(text ? text : "");
	end = p + len;
	while (p < end && (n = status__space(p, end)) > 0)
		p += n;
	while (p < end && (n = status__space_before(p, end)) > 0)
		end -= n;
	while (p < end) {
		n = status__space(p, end);
		if (n) {
			do
				p += n;
			while (p < end && (n = status__space(p, end)) > 0);
			c[0] = ' ';
			w = 1;
		} else if ((p[0] == 0xD0 || p[0] == 0xD1) && end - p >= 2 &&
			   (p[1] & 0xC0) == 0x80) {
			c[0] = p[0];
			c[1] = p[1];
			if ((c[0] == 0xD0 && c[1] == 0x81) || (c[0] == 0xD1 && c[1] == 0x91)) {
				c[0] = 0xD0; /* Ё, ё → е */
				c[1] = 0xB5;
			} else if (c[0] == 0xD0 && c[1] <= 0x8F) { /* Ѐ..Џ → ѐ..џ */
				c[0] = 0xD1;
				c[1] = (unsigned char)(c[1] + 0x10);
			} else if (c[0] == 0xD0 && c[1] >= 0x90 && c[1] <= 0x9F) { /* А..П */
				c[1] = (unsigned char)(c[1] + 0x20);
			} else if (c[0] == 0xD0 && c[1] >= 0xA0 && c[1] <= 0xAF) { /* Р..Я */
				c[0] = 0xD1;
				c[1] = (unsigned char)(c[1] - 0x20);
			}
			p += 2;
			w = 2;
		} else {
			c[0] = p[0];
			if (c[0] >= 'A' && c[0] <= 'Z')
				c[0] = (unsigned char)(c[0] + ('a' - 'A'));
			p++;
			w = 1;
		}
		if (o + w > STATUS_WORD_MAX)
			return -1;
		memcpy(out + o, c, w);
		o += w;
	}
	out[o] = '\0';
	return (int)o;
}

/* ---- built-in words --------------------------------------------------------- */

struct status_builtin {
	const char *w; /* folded */
	unsigned char len;
	struct status_match m;
};

#define W(word, st, rs, acc) { word, sizeof(word) - 1, { st, rs, acc } }
#define ACCEPT(word) W(word, LS_PACKING, 0, true)

/* Polling dialect: our codes, Russian names (folded: lower case, е for ё)
 * and DESIGN.md's synonym table, merged into one table. They agree on every
 * word they share except "new" (see status.h: 2, not 1). Sorted by bytes
 * (memcmp, shorter first) for the binary search; the per-word tests catch a
 * word out of order. */
static const struct status_builtin poll_words[] = {
	ACCEPT("accept"),
	ACCEPT("accepted"),
	ACCEPT("approve"),
	ACCEPT("approved"),
	W("archive", LS_CANCEL, 0, false),
	W("archived", LS_CANCEL, 0, false),
	W("callback", LS_CALLBACK, 0, false),
	W("cancel", LS_CANCEL, 0, false),
	W("canceled", LS_CANCEL, 0, false),
	W("cancelled", LS_CANCEL, 0, false),
	W("completed", LS_PAID, 0, false),
	ACCEPT("confirm"),
	ACCEPT("confirmed"),
	W("declined", LS_CANCEL, 0, false),
	W("deleted", LS_DELETED, 0, false),
	W("delivered", LS_DELIVERED, 0, false),
	W("double", LS_CANCEL, REASON_DUPLICATE, false),
	W("duplicate", LS_CANCEL, REASON_DUPLICATE, false),
	W("error", LS_CANCEL, REASON_TRASH_TEST, false),
	W("fraud", LS_CANCEL, REASON_FRAUD, false),
	W("hold", LS_HOLD, 0, false),
	W("new", LS_PROCESSING, 0, false),
	W("no answer", LS_CALLBACK, 0, false),
	W("open", LS_PROCESSING, 0, false),
	W("packing", LS_PACKING, 0, false),
	W("paid", LS_PAID, 0, false),
	W("pending", LS_PROCESSING, 0, false),
	W("processing", LS_PROCESSING, 0, false),
	W("recall", LS_CALLBACK, 0, false),
	W("refund", LS_RETURN, 0, false),
	W("refunded", LS_RETURN, 0, false),
	W("rejected", LS_CANCEL, 0, false),
	W("return", LS_RETURN, 0, false),
	W("returned", LS_RETURN, 0, false),
	W("sending", LS_SENDING, 0, false),
	W("sent", LS_TRANSIT, 0, false),
	W("shipped", LS_TRANSIT, 0, false),
	W("sold", LS_PAID, 0, false),
	W("spam", LS_CANCEL, REASON_TRASH_TEST, false),
	W("test", LS_CANCEL, REASON_TRASH_TEST, false),
	W("transit", LS_TRANSIT, 0, false),
	W("trash", LS_CANCEL, REASON_TRASH_TEST, false),
	W("waiting", LS_PROCESSING, 0, false),
	W("wrong", LS_CANCEL, REASON_TRASH_TEST, false),
	W("в пути", LS_TRANSIT, 0, false),
	W("возврат", LS_RETURN, 0, false),
	W("доставлен", LS_DELIVERED, 0, false),
	W("новый", LS_PROCESSING, 0, false),
	W("обработка", LS_PROCESSING, 0, false),
	W("оплачен", LS_PAID, 0, false),
	W("отмена", LS_CANCEL, 0, false),
	W("отправка", LS_SENDING, 0, false),
	W("перезвонить", LS_CALLBACK, 0, false),
	W("удален", LS_DELETED, 0, false),
	W("упаковка", LS_PACKING, 0, false),
	W("холд", LS_HOLD, 0, false),
};

/* Postback dialect: seed 000's three statuses and its table as written
 * (HOLD → 2, APPROVED → accept, REJECTED → 5 with the polling table's
 * reason for the word). Sorted like poll_words. */
static const struct status_builtin postback_words[] = {
	W("accepted", LS_PROCESSING, 0, false),
	ACCEPT("approved"),
	W("archive", LS_CANCEL, 0, false),
	W("archived", LS_CANCEL, 0, false),
	W("cancel", LS_CANCEL, 0, false),
	W("canceled", LS_CANCEL, 0, false),
	W("cancelled", LS_CANCEL, 0, false),
	ACCEPT("completed"),
	ACCEPT("confirm"),
	ACCEPT("confirmed"),
	W("declined", LS_CANCEL, 0, false),
	ACCEPT("delivered"),
	W("error", LS_CANCEL, REASON_TRASH_TEST, false),
	W("hold", LS_PROCESSING, 0, false),
	W("new", LS_PROCESSING, 0, false),
	W("open", LS_PROCESSING, 0, false),
	ACCEPT("paid"),
	W("pending", LS_PROCESSING, 0, false),
	W("processing", LS_PROCESSING, 0, false),
	W("refund", LS_CANCEL, 0, false),
	W("refunded", LS_CANCEL, 0, false),
	W("rejected", LS_CANCEL, 0, false),
	W("returned", LS_CANCEL, 0, false),
	W("shipped", LS_PROCESSING, 0, false),
	ACCEPT("sold"),
	W("spam", LS_CANCEL, REASON_TRASH_TEST, false),
	W("test", LS_CANCEL, REASON_TRASH_TEST, false),
	W("waiting", LS_PROCESSING, 0, false),
	W("wrong", LS_CANCEL, REASON_TRASH_TEST, false),
};

#undef ACCEPT
#undef W

static int status__cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static const struct status_match *status__builtin(const struct status_builtin *t, size_t n,
						  const char *key, size_t len)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = status__cmp(key, len, t[mid].w, t[mid].len);

		if (c == 0)
			return &t[mid].m;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* "1".."12" exactly: no sign, no leading zero, no fraction. */
static int status__number(const char *k, size_t len)
{
	if (len == 1 && k[0] >= '1' && k[0] <= '9')
		return k[0] - '0';
	if (len == 2 && k[0] == '1' && k[1] >= '0' && k[1] <= '2')
		return 10 + (k[1] - '0');
	return 0;
}

/* ---- overrides ----------------------------------------------------------------- */

struct status_word {
	uint32_t hash;
	size_t len;
	struct status_match m;
	char key[]; /* folded, NUL-terminated */
};

/* Open addressing, linear probing; cap is 0 or a power of two, at most
 * half full. */
struct status_words {
	struct status_word **slot;
	size_t cap;
	size_t count;
};

static uint32_t status__hash(const char *k, size_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (unsigned char)k[i];
		h *= 16777619u;
	}
	return h;
}

/* Slot of key, or of the empty slot where it would go. cap must be > 0. */
static size_t status__probe(struct status_word *const *slot, size_t cap, uint32_t h,
			    const char *key, size_t len)
{
	size_t i = h & (cap - 1);

	while (slot[i] &&
	       !(slot[i]->hash == h && slot[i]->len == len && memcmp(slot[i]->key, key, len) == 0))
		i = (i + 1) & (cap - 1);
	return i;
}

struct status_words *status_words_new(void)
{
	return calloc(1, sizeof(struct status_words));
}

void status_words_free(struct status_words *w)
{
	size_t i;

	if (!w)
		return;
	for (i = 0; i < w->cap; i++)
		free(w->slot[i]);
	free(w->slot);
	free(w);
}

size_t status_words_count(const struct status_words *w)
{
	return w ? w->count : 0;
}

static int status__grow(struct status_words *w)
{
	size_t cap = w->cap ? w->cap * 2 : 16, i;
	struct status_word **slot = calloc(cap, sizeof(*slot));

	if (!slot)
		return -1;
	for (i = 0; i < w->cap; i++) {
		struct status_word *e = w->slot[i];

		if (e)
			slot[status__probe(slot, cap, e->hash, e->key, e->len)] = e;
	}
	free(w->slot);
	w->slot = slot;
	w->cap = cap;
	return 0;
}

int status_words_add(struct status_words *w, const char *word, struct status_match m)
{
	char key[STATUS_WORD_MAX + 1];
	struct status_word *e;
	int len;
	uint32_t h;
	size_t i;

	if (!w || !word)
		return -1;
	if (m.status < 0 || m.status > STATUS_MAX || m.reason < 0 || m.reason > REASON_MAX ||
	    (m.reason && m.status != LS_CANCEL))
		return -1;
	if (m.accept && m.status == 0)
		m.status = LS_PACKING;
	len = status__fold(word, strlen(word), key);
	if (len <= 0)
		return -1;
	if (2 * (w->count + 1) > w->cap && status__grow(w) < 0)
		return -1;
	h = status__hash(key, (size_t)len);
	i = status__probe(w->slot, w->cap, h, key, (size_t)len);
	if (w->slot[i]) {
		w->slot[i]->m = m;
		return 0;
	}
	e = malloc(sizeof(*e) + (size_t)len + 1);
	if (!e)
		return -1;
	e->hash = h;
	e->len = (size_t)len;
	e->m = m;
	memcpy(e->key, key, (size_t)len + 1);
	w->slot[i] = e;
	w->count++;
	return 0;
}

static const struct status_word *status__override(const struct status_words *w,
						  const char *key, size_t len)
{
	size_t i;

	if (!w || w->count == 0)
		return NULL;
	i = status__probe(w->slot, w->cap, status__hash(key, len), key, len);
	return w->slot[i];
}

bool status_words_lookup(const struct status_words *w, const char *text, size_t len,
			 struct status_match *m)
{
	char key[STATUS_WORD_MAX + 1];
	const struct status_word *o = NULL;
	int klen;

	memset(m, 0, sizeof(*m));
	if (!w || w->count == 0)
		return false;
	klen = status__fold(text, len, key);
	if (klen > 0)
		o = status__override(w, key, (size_t)klen);
	if (o)
		*m = o->m;
	return o != NULL;
}

/* ---- recognition ------------------------------------------------------------ */

/* The common path of both dialects: overrides, then (polling only) a
 * number, then the dialect's table. */
static bool status__recognise(const struct status_words *over, const char *text, size_t len,
			      bool numbers, const struct status_builtin *t, size_t n,
			      struct status_match *m)
{
	char key[STATUS_WORD_MAX + 1];
	const struct status_word *o;
	const struct status_match *b;
	int klen, s;
	bool ok = false;

	memset(m, 0, sizeof(*m));
	klen = status__fold(text, len, key);
	if (klen <= 0)
		goto out;
	o = status__override(over, key, (size_t)klen);
	if (o) {
		*m = o->m;
		ok = o->m.status != 0; /* a blocker stops here, unrecognised */
		goto out;
	}
	if (numbers) {
		s = status__number(key, (size_t)klen);
		if (s) {
			m->status = s;
			ok = true;
			goto out;
		}
	}
	b = status__builtin(t, n, key, (size_t)klen);
	if (b) {
		*m = *b;
		ok = true;
	}
out:
	if (!ok)
		memset(m, 0, sizeof(*m));
	return ok;
}

bool status_recognise(const struct status_words *over, const char *text, size_t len,
		      struct status_match *m)
{
	return status__recognise(over, text, len, true, poll_words,
				 sizeof(poll_words) / sizeof(poll_words[0]), m);
}

bool status_postback(const struct status_words *over, const char *text, size_t len,
		     struct status_match *m)
{
	return status__recognise(over, text, len, false, postback_words,
				 sizeof(postback_words) / sizeof(postback_words[0]), m);
}

/* ---- words from JSON ------------------------------------------------------------ */

/* An integer JSON number in min..max. */
static bool status__json_int(const cJSON *v, int min, int max, int *out)
{
	if (!cJSON_IsNumber(v) || v->valuedouble < min || v->valuedouble > max ||
	    v->valuedouble != (double)(int)v->valuedouble)
		return false;
	*out = (int)v->valuedouble;
	return true;
}

/* One value of the object → *m; 0, or -1 with err. */
static int status__json_value(const cJSON *e, struct status_match *m, char *err, size_t errlen)
{
	const cJSON *s, *r, *a;

	memset(m, 0, sizeof(*m));
	if (cJSON_IsFalse(e))
		return 0; /* blocked */
	if (cJSON_IsNumber(e)) {
		if (status__json_int(e, STATUS_MIN, STATUS_MAX, &m->status))
			return 0;
		snprintf(err, errlen, "word '%.80s': status %g is not in 1..12", e->string,
			 e->valuedouble);
		return -1;
	}
	if (!cJSON_IsObject(e)) {
		snprintf(err, errlen,
			 "word '%.80s': give a status 1..12, false (blocked) or "
			 "{\"status\", \"reason\", \"accept\"}",
			 e->string);
		return -1;
	}
	s = cJSON_GetObjectItemCaseSensitive(e, "status");
	r = cJSON_GetObjectItemCaseSensitive(e, "reason");
	a = cJSON_GetObjectItemCaseSensitive(e, "accept");
	if (s && !status__json_int(s, STATUS_MIN, STATUS_MAX, &m->status)) {
		snprintf(err, errlen, "word '%.80s': \"status\" is not in 1..12", e->string);
		return -1;
	}
	if (r && !status__json_int(r, 1, REASON_MAX, &m->reason)) {
		snprintf(err, errlen, "word '%.80s': \"reason\" is not in 1..%d", e->string,
			 REASON_MAX);
		return -1;
	}
	if (a && !cJSON_IsBool(a)) {
		snprintf(err, errlen, "word '%.80s': \"accept\" is not true or false", e->string);
		return -1;
	}
	m->accept = cJSON_IsTrue(a);
	if (m->accept && m->status && m->status != LS_PACKING) {
		snprintf(err, errlen,
			 "word '%.80s': accept approves into status 6; give accept or a status, "
			 "not both",
			 e->string);
		return -1;
	}
	if (m->accept)
		m->status = LS_PACKING;
	if (!m->status) {
		snprintf(err, errlen, "word '%.80s': neither \"status\" nor \"accept\": true",
			 e->string);
		return -1;
	}
	if (m->reason && m->status != LS_CANCEL) {
		snprintf(err, errlen, "word '%.80s': a reason needs status 5", e->string);
		return -1;
	}
	return 0;
}

int status_words_from_cjson(const struct cJSON *obj, struct status_words **out, char *err,
			    size_t errlen)
{
	struct status_words *w = NULL;
	struct status_match m, prev;
	const cJSON *e;
	int rc = -1;

	*out = NULL;
	if (!cJSON_IsObject(obj)) {
		snprintf(err, errlen, "status words must be a JSON object");
		goto out;
	}
	if (!obj->child) {
		rc = 0;
		goto out;
	}
	w = status_words_new();
	if (!w) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	cJSON_ArrayForEach(e, obj) {
		char key[STATUS_WORD_MAX + 1];
		int klen = status__fold(e->string, strlen(e->string), key);

		if (klen <= 0) {
			snprintf(err, errlen, "word '%.80s': empty, or longer than %d bytes", e->string,
				 STATUS_WORD_MAX);
			goto out;
		}
		if (status__json_value(e, &m, err, errlen) < 0)
			goto out;
		if (status_words_lookup(w, key, (size_t)klen, &prev)) {
			snprintf(err, errlen, "word '%.80s': given twice (words compare folded: '%.80s')",
				 e->string, key);
			goto out;
		}
		if (status_words_add(w, key, m) < 0) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
	}
	*out = w;
	w = NULL;
	rc = 0;
out:
	status_words_free(w);
	return rc;
}

int status_words_from_json(const char *json, struct status_words **out, char *err,
			   size_t errlen)
{
	cJSON *root = json ? cJSON_Parse(json) : NULL;
	int rc;

	*out = NULL;
	if (!root) {
		snprintf(err, errlen, "status words are not valid JSON");
		return -1;
	}
	rc = status_words_from_cjson(root, out, err, errlen);
	cJSON_Delete(root);
	return rc;
}
