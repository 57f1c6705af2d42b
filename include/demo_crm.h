/* demo_crm: the advertiser CRM that `make run` starts beside leadsync
 * (`leadsync demo-crm`), so a newcomer sees the whole loop without a real
 * CRM. It serves exactly the API that rules/demo_crm.lua's header describes:
 *
 *   GET /orders?ids=A-17,A-18&key=KEY          (processing, accepted)
 *   GET /orders?from=YYYY-MM-DD&to=YYYY-MM-DD&key=KEY   (dates; inclusive)
 *
 * 200 with a JSON array, one object per order it knows, in the order asked
 * (by ids) or in the order the orders appeared (by dates), [] when none:
 *   {"id": "A-17", "status": "approved", "payout": 8, "currency": "USD"}
 * payout (units) and currency come only with "approved", and only for the
 * orders whose plan says the advertiser names its payout. A wrong or
 * missing key is 403, a request with neither ids nor from/to (or a bad
 * date, an id over DEMO_CRM_ID_MAX bytes, more than DEMO_CRM_IDS_MAX ids)
 * is 400; errors are JSON {"ok":false,"error":"..."} (the listener's form).
 *
 * Orders appear as leadsync asks about them: an id asked for the first time
 * is created, in status "processing", and from then on follows its plan on
 * a fast clock of steps (DEMO_CRM_STEP_MS): processing for 1-3 steps, a
 * callback stage for some, then approved, cancelled, trash or duplicate;
 * approved orders go on to shipped, delivered, then paid or returned. The
 * plan is a pure function of (seed, id) (demo_crm_progress), so with a
 * fixed seed the same ids asked at the same steps get the same answers.
 * A dates query lists the orders that appeared on those UTC days (the CRM
 * knows nothing of an order before it is asked about it).
 *
 * A flaky offer, so the operator's views have a failure to show: requests
 * with the second key (flaky_key) are answered as any other, except every
 * fail_every-th of them, which fails, by turns, with a 500 (the poll's
 * outcome http_error) and with a 200 whose body is an HTML error page, not
 * JSON (decode_error). scripts/demo/network.jsonl gives offer 11 that key.
 *
 * Memory is bounded: at most max_orders orders; past that, new ids are left
 * out of answers as unknown ids are.
 *
 * Threads: loop thread only. */
#ifndef LEADSYNC_DEMO_CRM_H
#define LEADSYNC_DEMO_CRM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define DEMO_CRM_LISTEN "127.0.0.1:9001"
#define DEMO_CRM_KEY "s3cret"
#define DEMO_CRM_FLAKY_KEY "s3cret-flaky"
#define DEMO_CRM_FAIL_EVERY 4
#define DEMO_CRM_SEED 7 /* a seed whose plans for the demo network mix every outcome */
#define DEMO_CRM_STEP_MS 3000
#define DEMO_CRM_ORDERS_MAX 100000
#define DEMO_CRM_IDS_MAX 1000 /* ids in one request */
#define DEMO_CRM_ID_MAX 64    /* bytes of one order id */

/* Where an order stands at an age (steps since it appeared). */
struct demo_crm_state {
	const char *status;   /* a static string: "processing", ... */
	int64_t payout;       /* cents, sent with "approved"; 0: none */
	const char *currency; /* "USD" with a payout, else NULL */
	bool final;           /* it never changes again */
};

/* The plan of order id[0..len) under seed, at age steps. Pure. */
void demo_crm_progress(uint64_t seed, const char *id, size_t len, uint64_t age,
		       struct demo_crm_state *out);

struct demo_crm_config {
	const char *addr;     /* "host:port", port 0 picks one [DEMO_CRM_LISTEN] */
	const char *key;      /* the API key requests must carry [DEMO_CRM_KEY]; copied */
	const char *flaky_key; /* the flaky offer's key [DEMO_CRM_FLAKY_KEY]; copied */
	unsigned fail_every;  /* its n-th requests fail [DEMO_CRM_FAIL_EVERY] */
	uint64_t seed;        /* [DEMO_CRM_SEED when 0] */
	uint64_t step_ms;     /* one step of the plans [DEMO_CRM_STEP_MS] */
	size_t max_orders;    /* [DEMO_CRM_ORDERS_MAX] */
	/* The clock the steps are counted on, in ms; NULL: the loop's
	 * (uv_now). Tests pass their own to move time by hand. */
	uint64_t (*clock_ms)(void *arg);
	void *clock_arg;
};

struct demo_crm;

/* Listens on cfg->addr. Returns 0 and *out, or -1 with err set and *out
 * NULL. */
__attribute__((warn_unused_result))
int demo_crm_start(uv_loop_t *loop, const struct demo_crm_config *cfg, struct demo_crm **out,
		   char *err, size_t errlen);

int demo_crm_port(const struct demo_crm *d);
size_t demo_crm_orders(const struct demo_crm *d); /* orders known */

/* Stops listening and answering; cb (may be NULL) runs from the loop when
 * all is closed, never within demo_crm_close(); d is freed after it. */
void demo_crm_close(struct demo_crm *d, void (*cb)(void *data), void *data);

/* `leadsync demo-crm`: demo_crm_start() on a loop of its own until SIGINT
 * or SIGTERM. Returns 0 after a clean stop, 1 when it could not start
 * (logged). */
int demo_crm_run(const struct demo_crm_config *cfg);

#endif
