/* fuzz target import: the import record parser, import_lead_check
 * (import.h), on any JSON text (parsed with cJSON, as `leadsync import`
 * parses a line), with a few known currencies and the lead's offer given
 * or not. Checked: -1 comes with a message; 0 gives a record with id or
 * ext, an offer, a status 1..12 when set, ids within 1..2^53, money within
 * range, texts that are UTF-8 without NUL and NUL-terminated in their
 * fields, click_id as a UUID, and only known currency ids.
 *
 * Input: byte 0: the offer given (bit 0: 7, else 0); the rest is the JSON
 * text of the lead record's object (left alone unless UTF-8: import_run
 * refuses such a line before it parses it). */
#include <stdio.h>

#include <cjson/cJSON.h>

#include "buf.h"
#include "fuzz.h"
#include "import.h"

static int currency(const char *iso, const void *data)
{
	static const char *const known[] = { "RUB", "USD", "EUR" };
	int i;

	(void)data;
	for (i = 0; i < 3; i++)
		if (strcmp(iso, known[i]) == 0)
			return i + 1;
	return 0;
}

static void text_ok(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);

	if (n == cap || !buf_utf8_ok(s, n))
		abort();
}

static void check(const struct import_lead *l, int64_t offer)
{
	const int64_t id_max = INT64_C(9007199254740992), money_max = INT64_C(99999999999999);

	if (!IMPORT_LEAD_SET(l, ILK_ID) && !IMPORT_LEAD_SET(l, ILK_EXT))
		abort(); /* neither id nor ext */
	if (IMPORT_LEAD_SET(l, ILK_ID) && (l->lead.id < 1 || l->lead.id > id_max))
		abort();
	if (l->lead.offer < 1 || l->lead.offer > id_max || (offer && !IMPORT_LEAD_SET(l, ILK_OFFER) &&
							    l->lead.offer != offer))
		abort();
	if (IMPORT_LEAD_SET(l, ILK_STATUS) && (l->lead.status < 1 || l->lead.status > 12))
		abort();
	if (l->lead.base < 0 || l->lead.base > money_max || l->lead.wm < 0 ||
	    l->lead.wm > money_max || l->lead.pay < 0 || l->lead.pay > money_max ||
	    l->lead.ref < 0 || l->lead.ref > money_max)
		abort();
	if (l->lead.curr < 0 || l->lead.curr > 3 || l->lead.cash_curr < 0 || l->lead.cash_curr > 3)
		abort();
	text_ok(l->lead.ext, sizeof(l->lead.ext));
	text_ok(l->lead.comment, sizeof(l->lead.comment));
	text_ok(l->lead.track, sizeof(l->lead.track));
	text_ok(l->goal, sizeof(l->goal));
	text_ok(l->request_id, sizeof(l->request_id));
	text_ok(l->customer_id, sizeof(l->customer_id));
	if (IMPORT_LEAD_SET(l, ILK_CLICK) && strnlen(l->click, sizeof(l->click)) != 36)
		abort();
	if ((l->set & ~l->given) != 0)
		abort(); /* a key set that the record does not hold */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct import_lead l;
	int64_t offer;
	const char *text;
	char err[512];
	size_t n;
	struct fz f;
	cJSON *rec;
	int rc;

	if (fz_open(&f, data, size) < 0)
		return 0;
	offer = (fz_byte(&f) & 1) ? 7 : 0;
	text = fz_rest(&f, &n);
	/* import_run refuses a line that is not UTF-8 before it parses it
	 * (cJSON does not check): the record parser is only given UTF-8. */
	rec = buf_utf8_ok(text, n) ? cJSON_ParseWithLength(text, n) : NULL;
	if (rec) {
		err[0] = '\0';
		rc = import_lead_check(rec, currency, NULL, offer, &l, err, sizeof(err));
		if (rc == 0)
			check(&l, offer);
		else if (rc != -1 || !err[0])
			abort();
		cJSON_Delete(rec);
	}
	fz_close(&f);
	return 0;
}
