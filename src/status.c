/* status: the lead statuses and reject reasons, and the recognition of the
 * status words CRMs (polling) and advertisers (postbacks) send. */
#include "status.h"

#include <pthread.h>
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

/* Seed 001 "Стандартные причины отказа"; trash = the "(треш)" mark; en is
 * DESIGN.md's English reading. Both names are also status words (a cancel
 * with that reason), folded into the polling dictionary below. */
static const struct reason reasons[REASON_STD_MAX + 1] = {
	{ NULL, NULL, false },
	{ "wrong number", "Некорректный номер", true },
	{ "changed mind", "Передумал", false },
	{ "did not order", "Не заказывал", true },
	{ "wants a certificate", "Требует сертификат", false },
	{ "wrong geo", "Неверное ГЕО", true },
	{ "trash or test", "Треш или тест", true },
	{ "duplicate order", "Дублированный заказ", true },
	{ "ordered elsewhere", "Заказал в другом месте", true },
	{ "too expensive", "Дорого", false },
	{ "delivery not suitable", "Не устраивает доставка", true },
	{ "could not reach", "Не удалось дозвониться", true },
	{ "suspected fraud", "Подозрения на фрод", true },
	{ "does not speak the language", "Не говорит на языке колл-центра", false },
	{ "product not suitable", "Товар не подошел", true },
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
	unsigned char *o, *lim;
	size_t n;

	if (!text)
		len = 0;
	p = (const unsigned char *)(text ? text : "");
	end = p + len;
	while (p < end && (n = status__space(p, end)) > 0)
		p += n;
	while (p < end && (n = status__space_before(p, end)) > 0)
		end -= n;
	o = (unsigned char *)out;
	lim = o + STATUS_WORD_MAX;
	while (p < end) {
		unsigned char b = p[0];

		if (b < 0x80 && b != ' ' && (b < '\t' || b > '\r')) { /* ASCII, not a space */
			if (o == lim)
				return -1;
			*o++ = b >= 'A' && b <= 'Z' ? (unsigned char)(b + ('a' - 'A')) : b;
			p++;
		} else if ((b == 0xD0 || b == 0xD1) && end - p >= 2 && (p[1] & 0xC0) == 0x80) {
			unsigned char c = p[1];

			if (lim - o < 2)
				return -1;
			if ((b == 0xD0 && c == 0x81) || (b == 0xD1 && c == 0x91)) {
				b = 0xD0; /* Ё, ё → е */
				c = 0xB5;
			} else if (b == 0xD0 && c <= 0x8F) { /* Ѐ..Џ → ѐ..џ */
				b = 0xD1;
				c = (unsigned char)(c + 0x10);
			} else if (b == 0xD0 && c >= 0x90 && c <= 0x9F) { /* А..П */
				c = (unsigned char)(c + 0x20);
			} else if (b == 0xD0 && c >= 0xA0 && c <= 0xAF) { /* Р..Я */
				b = 0xD1;
				c = (unsigned char)(c - 0x20);
			}
			o[0] = b;
			o[1] = c;
			o += 2;
			p += 2;
		} else if ((n = status__space(p, end)) > 0) { /* a run of spaces: one */
			do
				p += n;
			while (p < end && (n = status__space(p, end)) > 0);
			if (o == lim)
				return -1;
			*o++ = ' ';
		} else {
			if (o == lim)
				return -1;
			*o++ = b;
			p++;
		}
	}
	*o = '\0';
	return (int)(o - (unsigned char *)out);
}

/* ---- built-in words --------------------------------------------------------- */

/* Hash of a folded key for the dictionaries and the overrides: its length
 * and its first and last 8 bytes, multiplied through. A serial byte hash
 * (FNV) costs more than the rest of a lookup on a 40-byte Cyrillic phrase;
 * keys that share both ends and the length only share a probe chain, and
 * the memcmp of the probe tells them apart. In-process only: the byte
 * order of the loads does not matter. */
static uint32_t status__hash(const char *k, size_t len)
{
	uint64_t a = 0, b = 0, h;
	size_t n = len < 8 ? len : 8;

	memcpy(&a, k, n);
	memcpy(&b, k + len - n, n);
	h = (a ^ ((uint64_t)len << 56)) * 0x9E3779B97F4A7C15u;
	h ^= (b + (h >> 29)) * 0xC2B2AE3D27D4EB4Fu;
	return (uint32_t)(h ^ (h >> 32));
}

/* A word as written in DESIGN.md (any case, ё allowed: it is folded once,
 * when the dictionary is built) and its meaning. */
struct status_builtin {
	const char *w;
	struct status_match m;
};

#define W(word, st) { word, { st, 0, false } }
#define ACCEPT(word) { word, { LS_PACKING, 0, true } }
#define CANCEL(word, rs) { word, { LS_CANCEL, rs, false } }

/* Polling dialect, grouped as DESIGN.md's tables read: our code and
 * Russian name, the synonym table, then the extended vocabulary. Each word
 * once. The reject reasons' own names (Russian and English) come from
 * reasons[] above, so the names listed by `leadsync status --reasons` are
 * the names recognised. "new" and "Новый" read as 2 (status.h). */
static const struct status_builtin poll_words[] = {
	/* 2 processing */
	W("processing", LS_PROCESSING), W("обработка", LS_PROCESSING),
	W("new", LS_PROCESSING), W("новый", LS_PROCESSING),
	W("pending", LS_PROCESSING), W("open", LS_PROCESSING), W("waiting", LS_PROCESSING),
	W("новый заказ", LS_PROCESSING), W("в обработке", LS_PROCESSING),
	W("обрабатывается", LS_PROCESSING), W("ожидает", LS_PROCESSING),
	W("ожидание", LS_PROCESSING), W("принят в работу", LS_PROCESSING),
	W("in progress", LS_PROCESSING), W("in work", LS_PROCESSING),
	/* 3 callback: "недозвон" is the call centre trying again; the final
	 * failure is reason 11 by its own name */
	W("callback", LS_CALLBACK), W("перезвонить", LS_CALLBACK),
	W("recall", LS_CALLBACK), W("no answer", LS_CALLBACK),
	W("перезвон", LS_CALLBACK), W("недозвон", LS_CALLBACK),
	W("не дозвонились", LS_CALLBACK), W("не отвечает", LS_CALLBACK),
	W("не берёт трубку", LS_CALLBACK), W("автоответчик", LS_CALLBACK),
	W("not reached", LS_CALLBACK), W("call later", LS_CALLBACK),
	/* 4 hold */
	W("hold", LS_HOLD), W("холд", LS_HOLD),
	/* accept: the approval mechanics, then 6 */
	ACCEPT("accept"), ACCEPT("accepted"), ACCEPT("approve"), ACCEPT("approved"),
	ACCEPT("confirm"), ACCEPT("confirmed"),
	ACCEPT("подтверждён"), ACCEPT("подтверждённый"), ACCEPT("принят"),
	ACCEPT("одобрен"), ACCEPT("согласован"), ACCEPT("апрув"), ACCEPT("аппрув"),
	/* 6 packing */
	W("packing", LS_PACKING), W("упаковка", LS_PACKING),
	/* 7 sending */
	W("sending", LS_SENDING), W("отправка", LS_SENDING),
	W("упакован", LS_SENDING), W("собран", LS_SENDING),
	W("готов к отправке", LS_SENDING), W("packed", LS_SENDING),
	/* 8 transit */
	W("transit", LS_TRANSIT), W("в пути", LS_TRANSIT),
	W("shipped", LS_TRANSIT), W("sent", LS_TRANSIT),
	W("отправлен", LS_TRANSIT), W("передан в доставку", LS_TRANSIT),
	W("в доставке", LS_TRANSIT), W("доставляется", LS_TRANSIT),
	W("in transit", LS_TRANSIT), W("on the way", LS_TRANSIT),
	/* 9 delivered */
	W("delivered", LS_DELIVERED), W("доставлен", LS_DELIVERED),
	W("прибыл", LS_DELIVERED), W("в пункте выдачи", LS_DELIVERED),
	W("ожидает получения", LS_DELIVERED), W("arrived", LS_DELIVERED),
	W("ready for pickup", LS_DELIVERED),
	/* 10 paid */
	W("paid", LS_PAID), W("оплачен", LS_PAID), W("sold", LS_PAID), W("completed", LS_PAID),
	W("выкуплен", LS_PAID), W("вручён", LS_PAID), W("получен", LS_PAID),
	W("выполнен", LS_PAID), W("завершён", LS_PAID), W("доставлен и оплачен", LS_PAID),
	W("complete", LS_PAID), W("purchased", LS_PAID), W("bought", LS_PAID),
	/* 11 return */
	W("return", LS_RETURN), W("возврат", LS_RETURN),
	W("returned", LS_RETURN), W("refunded", LS_RETURN), W("refund", LS_RETURN),
	W("невыкуп", LS_RETURN), W("не выкуплен", LS_RETURN),
	W("отказ от получения", LS_RETURN), W("возвращён", LS_RETURN),
	W("not picked up", LS_RETURN),
	/* 5, the offer's default reason */
	CANCEL("cancel", 0), CANCEL("отмена", 0),
	CANCEL("canceled", 0), CANCEL("cancelled", 0), CANCEL("declined", 0),
	CANCEL("rejected", 0), CANCEL("archived", 0), CANCEL("archive", 0),
	CANCEL("отказ", 0), CANCEL("отменён", 0), CANCEL("отклонён", 0),
	CANCEL("аннулирован", 0), CANCEL("refused", 0),
	/* 5 with a reason: the everyday words (the names come from reasons[]) */
	CANCEL("неверный номер", 1), CANCEL("неправильный номер", 1),
	CANCEL("invalid phone", 1), CANCEL("invalid number", 1),
	CANCEL("передумала", 2),
	CANCEL("не заказывала", 3), CANCEL("not ordered", 3),
	CANCEL("другое гео", 5), CANCEL("wrong country", 5),
	CANCEL("треш", REASON_TRASH_TEST), CANCEL("тест", REASON_TRASH_TEST),
	CANCEL("спам", REASON_TRASH_TEST), CANCEL("брак", REASON_TRASH_TEST),
	CANCEL("фейк", REASON_TRASH_TEST), CANCEL("trash", REASON_TRASH_TEST),
	CANCEL("test", REASON_TRASH_TEST), CANCEL("spam", REASON_TRASH_TEST),
	CANCEL("fake", REASON_TRASH_TEST), CANCEL("error", REASON_TRASH_TEST),
	CANCEL("wrong", REASON_TRASH_TEST),
	CANCEL("дубль", REASON_DUPLICATE), CANCEL("дубликат", REASON_DUPLICATE),
	CANCEL("повтор", REASON_DUPLICATE), CANCEL("повторный заказ", REASON_DUPLICATE),
	CANCEL("duplicate", REASON_DUPLICATE), CANCEL("double", REASON_DUPLICATE),
	CANCEL("заказала в другом месте", 8),
	CANCEL("expensive", 9),
	CANCEL("unreachable", 11),
	CANCEL("фрод", REASON_FRAUD), CANCEL("fraud", REASON_FRAUD),
	CANCEL("language barrier", 13),
	/* 12 deleted */
	W("deleted", LS_DELETED), W("удалён", LS_DELETED),
};

/* Postback dialect: seed 000's three statuses and its table as written
 * (HOLD → 2, APPROVED → accept, REJECTED → 5 with the polling table's
 * reason for the word). */
static const struct status_builtin postback_words[] = {
	W("hold", LS_PROCESSING), ACCEPT("approved"), CANCEL("rejected", 0),
	/* HOLD */
	W("shipped", LS_PROCESSING), W("processing", LS_PROCESSING),
	W("accepted", LS_PROCESSING), W("waiting", LS_PROCESSING), W("open", LS_PROCESSING),
	W("new", LS_PROCESSING), W("pending", LS_PROCESSING),
	/* APPROVED */
	ACCEPT("confirmed"), ACCEPT("confirm"), ACCEPT("paid"), ACCEPT("completed"),
	ACCEPT("sold"), ACCEPT("delivered"),
	/* REJECTED */
	CANCEL("returned", 0), CANCEL("canceled", 0), CANCEL("cancelled", 0),
	CANCEL("archived", 0), CANCEL("refunded", 0), CANCEL("cancel", 0),
	CANCEL("archive", 0), CANCEL("refund", 0), CANCEL("spam", REASON_TRASH_TEST),
	CANCEL("error", REASON_TRASH_TEST), CANCEL("wrong", REASON_TRASH_TEST),
	CANCEL("test", REASON_TRASH_TEST), CANCEL("declined", 0),
};

#undef CANCEL
#undef ACCEPT
#undef W

#define NPOLL (sizeof(poll_words) / sizeof(poll_words[0]))
#define NPOSTBACK (sizeof(postback_words) / sizeof(postback_words[0]))

/* A dictionary: the words folded once into one arena, found through an
 * open-addressing hash of their indices (linear probing, at most a quarter
 * full so a miss ends after a probe or two). Built once, on first use,
 * under pthread_once; read-only afterwards, so threads share it. A lookup
 * folds into a stack buffer, hashes and compares: no allocation. */
#define STATUS_DICT_SLOTS 1024 /* a power of two, >= 4 x the words */
#define STATUS_DICT_WORDS (NPOLL + 2 * REASON_STD_MAX)
#define STATUS_ARENA 16384

struct status_entry {
	uint32_t hash;
	uint16_t off, len; /* into status_arena */
	struct status_match m;
};

struct status_dict {
	struct status_entry e[STATUS_DICT_WORDS];
	uint16_t slot[STATUS_DICT_SLOTS]; /* entry index + 1; 0: empty */
	size_t n;
};

static char status_arena[STATUS_ARENA];
static size_t status_arena_len;
static struct status_dict poll_dict, postback_dict;
static pthread_once_t status_dict_once = PTHREAD_ONCE_INIT;

_Static_assert(STATUS_DICT_SLOTS >= 4 * STATUS_DICT_WORDS, "dictionary too full");
_Static_assert(STATUS_ARENA <= 65536, "arena offsets are 16-bit");

static const struct status_entry *status__dict_find(const struct status_dict *d, const char *key,
						    size_t len, uint32_t h)
{
	size_t i = h & (STATUS_DICT_SLOTS - 1);

	for (; d->slot[i]; i = (i + 1) & (STATUS_DICT_SLOTS - 1)) {
		const struct status_entry *e = &d->e[d->slot[i] - 1];

		if (e->hash == h && e->len == len && memcmp(status_arena + e->off, key, len) == 0)
			return e;
	}
	return NULL;
}

/* Folds word into the arena and adds it. A word already present keeps its
 * first meaning (the per-word tests catch a table that says two things);
 * a word that does not fit is left out, which the same tests catch. */
static void status__dict_add(struct status_dict *d, const char *word, struct status_match m)
{
	char key[STATUS_WORD_MAX + 1];
	struct status_entry *e;
	uint32_t h;
	int len = status__fold(word, strlen(word), key);
	size_t i;

	if (len <= 0 || d->n >= STATUS_DICT_WORDS || status_arena_len + (size_t)len > STATUS_ARENA)
		return;
	h = status__hash(key, (size_t)len);
	if (status__dict_find(d, key, (size_t)len, h))
		return;
	e = &d->e[d->n];
	e->hash = h;
	e->off = (uint16_t)status_arena_len;
	e->len = (uint16_t)len;
	e->m = m;
	memcpy(status_arena + status_arena_len, key, (size_t)len);
	status_arena_len += (size_t)len;
	for (i = h & (STATUS_DICT_SLOTS - 1); d->slot[i]; i = (i + 1) & (STATUS_DICT_SLOTS - 1))
		;
	d->slot[i] = (uint16_t)(++d->n);
}

static void status__dict_build(void)
{
	size_t i;
	int r;

	for (i = 0; i < NPOLL; i++)
		status__dict_add(&poll_dict, poll_words[i].w, poll_words[i].m);
	for (r = 1; r <= REASON_STD_MAX; r++) {
		struct status_match m = { LS_CANCEL, r, false };

		status__dict_add(&poll_dict, reasons[r].ru, m);
		status__dict_add(&poll_dict, reasons[r].en, m);
	}
	for (i = 0; i < NPOSTBACK; i++)
		status__dict_add(&postback_dict, postback_words[i].w, postback_words[i].m);
}

static const struct status_match *status__builtin(const struct status_dict *d, const char *key,
						  size_t len)
{
	const struct status_entry *e;

	pthread_once(&status_dict_once, status__dict_build);
	e = status__dict_find(d, key, len, status__hash(key, len));
	return e ? &e->m : NULL;
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

/* The length of folded key without its trailing notes: a count (" 3") or a
 * note in brackets ("(дорого)", " [2]"), as often as they repeat
 * ("недозвон 3 (утро)" → "недозвон"). Returns 0 when there is no note, or
 * when what would remain is empty or a bare number ("1 2" is not status
 * 1). key is folded, so inner spaces are single. */
static size_t status__strip_note(const char *key, size_t len)
{
	size_t n = len, i;

	for (;;) {
		size_t m = n;

		if (m && (key[m - 1] == ')' || key[m - 1] == ']')) {
			char close = key[m - 1], open = close == ')' ? '(' : '[';
			int depth = 0;

			while (m) {
				m--;
				if (key[m] == close)
					depth++;
				else if (key[m] == open && --depth == 0)
					break;
			}
			if (depth != 0)
				break; /* unbalanced: not a note */
		} else if (m && key[m - 1] >= '0' && key[m - 1] <= '9') {
			while (m && key[m - 1] >= '0' && key[m - 1] <= '9')
				m--;
			if (!m || key[m - 1] != ' ')
				break; /* "crm-300", "1": part of the word */
		} else {
			break;
		}
		while (m && key[m - 1] == ' ')
			m--;
		if (!m)
			break;
		n = m;
	}
	if (n == len)
		return 0;
	for (i = 0; i < n; i++)
		if (key[i] < '0' || key[i] > '9')
			return n;
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
 * half full. Not htab: an offer's words are built once and then only read,
 * by every rule thread, once per lead, so they share the dictionaries'
 * two-load hash and probe (above) rather than FNV over the whole key. */
struct status_words {
	struct status_word **slot;
	size_t cap;
	size_t count;
};

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
	size_t n;
	int klen;

	memset(m, 0, sizeof(*m));
	if (!w || w->count == 0)
		return false;
	klen = status__fold(text, len, key);
	if (klen <= 0)
		return false;
	o = status__override(w, key, (size_t)klen);
	if (!o) {
		n = status__strip_note(key, (size_t)klen);
		if (n)
			o = status__override(w, key, n);
	}
	if (o)
		*m = o->m;
	return o != NULL;
}

/* ---- recognition ------------------------------------------------------------ */

/* One pass over the levels for the folded key[0..len): overrides, then
 * (numbers) a number, then the dictionary. 1: recognised into *m; 0: a
 * blocker decided (unrecognised, look no further); -1: nobody knows it. */
static int status__levels(const struct status_words *over, const char *key, size_t len,
			  bool numbers, const struct status_dict *d, struct status_match *m)
{
	const struct status_word *o = status__override(over, key, len);
	const struct status_match *b;
	int s;

	if (o) {
		*m = o->m;
		return o->m.status != 0;
	}
	if (numbers) {
		s = status__number(key, len);
		if (s) {
			m->status = s;
			return 1;
		}
	}
	b = status__builtin(d, key, len);
	if (b) {
		*m = *b;
		return 1;
	}
	return -1;
}

/* The common path of both dialects: the folded text through the levels;
 * then, when notes is set and nobody knew it, the text without its
 * trailing notes through the overrides and the dictionary (never as a
 * number). */
static bool status__recognise(const struct status_words *over, const char *text, size_t len,
			      bool notes, const struct status_dict *d, struct status_match *m)
{
	char key[STATUS_WORD_MAX + 1];
	int klen, r = -1;
	size_t n;

	memset(m, 0, sizeof(*m));
	klen = status__fold(text, len, key);
	if (klen <= 0)
		goto out;
	r = status__levels(over, key, (size_t)klen, notes, d, m);
	if (r < 0 && notes) {
		n = status__strip_note(key, (size_t)klen);
		if (n)
			r = status__levels(over, key, n, false, d, m);
	}
out:
	if (r != 1)
		memset(m, 0, sizeof(*m));
	return r == 1;
}

bool status_recognise(const struct status_words *over, const char *text, size_t len,
		      struct status_match *m)
{
	return status__recognise(over, text, len, true, &poll_dict, m);
}

bool status_postback(const struct status_words *over, const char *text, size_t len,
		     struct status_match *m)
{
	return status__recognise(over, text, len, false, &postback_dict, m);
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
	struct status_match m;
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
		if (status__override(w, key, (size_t)klen)) {
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
