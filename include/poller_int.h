/* poller_int: the poller's private parts, shared by its files (as
 * rule_int.h is the rule runtime's). Nothing outside the poller includes
 * it; the public interface is poller.h.
 *
 *   poller.c      the pair and batch state machine (its life cycle is
 *                 drawn at the top of that file), the scheduler glue, start
 *                 and stop
 *   poll_rules.c  the rules cache (one runtime per rule, clones for the
 *                 rule threads) and the offers' status words cache
 *   poll_store.c  the database side: the offer rows a claim loads, the page
 *                 and day-range selects, the batch's write (SQL texts in
 *                 poll_sql.h)
 *   poll_check.c  `leadsync check`: one poll now, its report written by an
 *                 observer of the pair and batch events, and --save
 */
#ifndef LEADSYNC_POLLER_INT_H
#define LEADSYNC_POLLER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <libpq-fe.h>
#include <uv.h>

#include "buf.h"
#include "db.h"
#include "htab.h"
#include "http_client.h"
#include "lead.h"
#include "list.h"
#include "macro.h"
#include "mask.h"
#include "poller.h"
#include "rule.h"
#include "rule_pool.h"
#include "ruletest.h"
#include "scheduler.h"
#include "status.h"
#include "tz.h"

#define POLL_RULE_NAME_MAX 72
#define POLL_ERR_MAX 1024
#define POLL_EXCERPT 512 /* bytes of an answer `leadsync check` prints */


/* One loaded version of a rule; pairs hold a reference while they poll, so
 * a reload never frees a runtime in use. rt is the runtime loaded on the
 * loop (its variant info is read there: info never changes after a load);
 * the rule threads run the rule on runtimes taken from idle, each used by
 * one thread at a time: rt itself first, then clones of it (rule_clone),
 * made when every one is busy, so there are at most as many as threads. */
struct poll_rule {
	struct rule_rt *rt;
	unsigned refs;          /* loop only */
	pthread_mutex_t mu;     /* idle */
	struct rule_rt **idle;
	size_t nidle, capidle, made;
};

struct poll_rule_entry {
	struct htab_node hn;   /* in p->rules, by name */
	char name[POLL_RULE_NAME_MAX];
	struct poll_rule *cur; /* NULL: not loaded; err says why */
	char err[POLL_ERR_MAX];
	uint64_t failed_ms;
};

/* What a poll needs of its offer; loaded on a db worker with the claim. */
struct poll_offer {
	int64_t id;
	bool found;
	char rule[POLL_RULE_NAME_MAX];
	char tz[TZ_NAME_MAX + 1];
	struct macro_param *params;
	size_t nparams;
	struct mask mask; /* the offer's secrets */
	struct lead_offer settings;
	int rate_limit;
	int batch[2]; /* overrides for processing, accepted; 0: the rule's */
	int days;     /* override for dates; 0: the rule's */
	struct rule_goal *goals;
	size_t ngoals;
	struct rule_currency *currs;
	size_t ncurrs;
	char *words; /* offers.status_words as text ("{}": none) */
};

/* An offer's status words, parsed (status_words_from_json) and shared by
 * the pairs of that offer that poll with them, each holding a reference. */
struct poll_words {
	unsigned refs;
	struct status_words *w; /* never NULL: an offer without words has no entry */
	char json[];            /* the text they were parsed from */
};

/* The words cache: by offer id (open addressing, linear probing, at most
 * half full; offer 0 is an empty slot, ids are positive). See
 * poller__words_get for when an entry is reparsed. */
struct poll_words_slot {
	struct htab_node hn;    /* in p->words, by offer */
	int64_t offer;
	struct poll_words *cur; /* NULL: the offer had no words at its last claim */
};

struct poll_range {
	struct macro_civil from, to;
	int64_t t_from, t_tom; /* UTC bounds: from's first instant, the day after to's */
	size_t leads; /* open leads counted when the ranges were made */
};

struct poll_batch;
struct poll_check;

struct poll_pair {
	struct poller *p;
	struct sched_pair *sp;
	struct list link;       /* p->pairs, from poller__pair_begin */
	struct list wlink;      /* p->wait while waiting for room */
	struct poll_offer off;
	enum rule_variant v;
	struct poll_rule *rule;
	struct poll_words *words; /* the offer's words; NULL: none */
	char rate_key[40];
	size_t batch;
	int days;
	/* selection */
	int64_t cursor;
	bool started, exhausted, selecting, finishing;
	struct poll_range *ranges;
	size_t nranges, rnext;
	/* batches alive: selected (or a record to write), not yet ended */
	struct list batches;    /* poll_batch.link */
	unsigned active;
	/* outcome */
	unsigned nbatches, nfailed;
	bool stop_more;         /* a failure that stops further batches */
	bool aborted;           /* lease lost or shutdown deadline */
	bool cut;               /* a batch was cancelled: the run is incomplete */
	enum poll_outcome abort_outcome;
	enum poll_outcome first_fail;
	char err[POLL_ERR_MAX];
	unsigned retry_after;
	int64_t last_run;
	uint64_t asked, changed, skipped, unknown, refused, unrecognised, pages;
	/* id variants: open leads without an external id, never asked; counted
	 * once per run (its first selection) and stored on its first row */
	uint64_t no_ext;
	bool no_ext_counted, no_ext_given;
	uint64_t t0_ms;
	bool caught_row;
	struct poll_check *check;
	/* the rule threads: this pair's batches take turns in one lane */
	struct rule_pool_lane lane;
	atomic_bool rules_cancel; /* aborted: jobs not started are skipped */
	int64_t rule_ns;          /* the run's rule CPU time */
	unsigned rule_calls;
};

enum poll_wmode { W_ROW, W_LIGHT, W_FULL };

struct poll_batch {
	struct poll_pair *pair;
	struct list link;    /* pair->batches */
	bool slot;           /* holds a place in batches_max */
	struct lead *leads;
	uint32_t *xmin;      /* beside leads: the row versions the select read */
	size_t nleads, reserved;
	struct macro_dates dates;
	bool has_dates;
	struct rule_batch rb;
	struct rule_request req;
	struct rule_result res;
	struct http_client_req *h;
	const struct rule_request *cur; /* the request in flight */
	/* the poll_runs row */
	int64_t offer;
	enum rule_variant v;
	const char *worker;
	bool caught_up;
	int64_t missed;
	int64_t t_start_us, t_end_us;
	char method[8];
	char *url;
	long status;
	uint64_t bytes;
	unsigned pages;
	size_t unknown, refused, unrecognised;
	uint64_t no_ext;     /* the run's leads without an external id (first row) */
	struct buf head;
	char ctype[128];        /* Content-Type of the last answer ("": none) */
	struct buf notes;
	enum poll_outcome outcome;
	char err[POLL_ERR_MAX];
	unsigned retry_after;
	/* the write */
	struct db_job job;
	enum poll_wmode wmode;
	struct list wlink;             /* in p->deferred or p->row_wait, never both */
	unsigned row_tries;            /* writes of its row retried (poller__row_wait) */
	struct buf upd, hist;
	size_t *chg;         /* per changed lead: index into leads */
	const struct lead **after;
	size_t nchg;
	size_t applied, skipped;
	bool lease_lost;
	int64_t run_id;
	struct ruletest_page *saved; /* check --save: the pages as fetched */
	size_t nsaved;
	/* the rule's work, on a rule thread (poller__rule_work) */
	struct rule_pool_job rjob;
	bool rule_first;        /* the job is prepare; else process of ans */
	char *ans;              /* the answer, taken from the http result */
	size_t ans_len;
	int ans_status;
	char *ans_ctype;        /* as sent; NULL: none */
	int rule_rc;
	enum rule_limit rule_lim;
	char rule_err[POLL_ERR_MAX];
	int64_t rule_ns;        /* the batch's rule CPU time */
};

struct poller {
	uv_loop_t *loop;
	struct poller_config cfg;
	char rules_dir[4096];
	char tz[TZ_NAME_MAX + 1];
	char worker[SCHED_WORKER_MAX];
	struct scheduler *sched;
	struct http_client *http;
	bool own_http;
	struct htab rules;             /* poll_rule_entry, by name */
	struct rule_pool *pool;        /* the rule threads */
	struct htab words;             /* poll_words_slot: the words cache */
	struct list pairs;             /* poll_pair.link: begun, not finished */
	unsigned npairs;
	struct list wait;              /* poll_pair.wlink: waiting for room, in order */
	unsigned batches_used;
	size_t leads_used;
	unsigned jobs;
	bool stopping;
	uv_timer_t deadline;
	uv_timer_t defer;              /* ends the deferred batches */
	struct list deferred;          /* poll_batch.wlink: end on the next loop turn */
	uv_timer_t row_timer;          /* retries the rows of p->row_wait */
	struct list row_wait;          /* poll_batch.wlink: their row met the database away */
	unsigned handles;
	void (*stop_cb)(void *);
	void *stop_data;
	const struct poll_observer *obs; /* check mode: the report; NULL in the daemon */
	void *obs_data;
	bool dry_run;
	unsigned nsaved;     /* check --save: cases written */
	struct poller_stats st;
	struct poller_count *counts; /* sorted by offer, variant (/metrics) */
	size_t ncounts, capcounts;
};

/* Who watches a poll's events: `leadsync check` writes its report from
 * them (poll_check.c); the daemon has no observer. Every member may be
 * NULL. The state machine calls them where they happen and nothing it does
 * depends on them; a poller with an observer is a check's, whose polls are
 * not counted in the daemon's metrics. */
struct poll_observer {
	void (*pair_begin)(struct poll_pair *pr, const struct rule_variant_info *info);
	void (*pair_skip)(struct poll_pair *pr);          /* the rule lacks the variant */
	void (*no_ext)(struct poll_pair *pr, uint64_t n); /* leads not asked: no external id */
	void (*request)(struct poll_batch *b, const struct rule_request *rq);
	void (*answer)(struct poll_batch *b, const struct http_result *res);
	/* a changed lead, its fields before and after as JSON (unmasked) */
	void (*edit)(struct poll_batch *b, const struct lead *old, const struct buf *before,
		     const struct buf *after);
	void (*result)(struct poll_batch *b);  /* the rule's result, before the write */
	void (*failed)(struct poll_batch *b);  /* outcome and err set, before the row's write */
	void (*written)(struct poll_batch *b); /* the changes are written */
	/* the pair ended: the observer owns it now (the check's pairs are not
	 * the scheduler's) */
	void (*pair_done)(struct poll_pair *pr, const struct sched_result *r);
};

#define POLL_OBSERVE(p, ev, ...)                                 \
	do {                                                     \
		if ((p)->obs && (p)->obs->ev)                    \
			(p)->obs->ev(__VA_ARGS__);               \
	} while (0)

/* A load job: the offers of one claim's pairs, read on a database thread
 * into a fresh poll_pair each (poll_store.c), begun on the loop. */
struct poll_load {
	struct db_job job;
	struct poller *p;
	size_t n;
	struct sched_pair **sp; /* the claimed pairs */
	struct poll_pair **pr;  /* out: each one's pair, its offer loaded */
};

/* A select job: the next k batches of a pair (poll_store.c runs it). */
struct poll_sel {
	struct db_job job;
	struct poll_pair *pair;
	int64_t offer;
	enum rule_variant v;
	unsigned k;           /* batches asked */
	size_t per;           /* id variants: leads per batch; dates: cap per range */
	int64_t cursor;
	struct macro_dates *dates; /* dates: k ranges */
	size_t reserved;
	bool count_no_ext;    /* also count the leads without an external id */
	bool more;            /* id variants: leads beyond these k batches exist */
	/* out */
	uint64_t no_ext;
	struct lead **leads;
	uint32_t **xmin;      /* beside leads: each lead's row version */
	size_t *n;
	size_t total;
};

/* A day-range job of the dates variant (poll_store.c runs it). */
/* One open day of the dates variant, as PostgreSQL reads it in the zone. */
struct poll_day {
	struct macro_civil date;
	int64_t num;             /* days since 1970-01-01 */
	int64_t t_start, t_next; /* UTC: the day's first instant, the next day's */
	size_t count;            /* open leads created that day */
};

struct poll_days {
	struct db_job job;
	struct poll_pair *pair;
	int64_t offer;
	char tz[TZ_NAME_MAX + 1];
	unsigned age;
	struct poll_day *day;
	size_t n;
	bool bad_zone; /* the query failed and PostgreSQL knows no such zone */
};

/* An integer column (PostgreSQL's text is well-formed). */
static inline int poller__int(const char *v)
{
	return (int)strtol(v, NULL, 10);
}

static inline uint64_t poller__now_ms(void)
{
	return uv_hrtime() / 1000000;
}

static inline int64_t poller__wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* poller.c */
char *poller__masked(const struct poll_offer *o, const char *s, size_t len, bool url);
void poller__free(struct poller *p);
void poller__http_closed(struct http_client *c, void *data);
struct poller *poller__new(uv_loop_t *loop, const struct poller_config *cfg, char *err,
				  size_t errlen);
void poller__pair_begin(struct poll_pair *pr);
void poller__pair_free(struct poll_pair *pr);
int poller__pool_start(struct poller *p, char *err, size_t errlen);
void poller__timers_init(struct poller *p);

/* poll_rules.c */
void poller__rt_give(struct poll_rule *r, struct rule_rt *rt);
struct rule_rt *poller__rt_take(struct poll_rule *r, char *err, size_t errlen);
struct poll_rule *poller__rule_get(struct poller *p, const char *name, char *err,
					  size_t errlen);
void poller__rule_put(struct poll_rule *r);
int poller__words_get(struct poller *p, const struct poll_offer *o, struct poll_words **out,
			     char *err, size_t errlen);
void poller__words_put(struct poll_words *pw);

/* poll_store.c */
int poller__days_run(PGconn *c, struct db_job *job);
int poller__load(PGconn *c, struct poller *p, struct sched_pair **pairs, struct poll_pair **out,
		 size_t n, char *err, size_t errlen);
int poller__load_run(PGconn *c, struct db_job *job);
void poller__offer_release(struct poll_offer *o);
void poller__sel_free(struct poll_sel *s);
int poller__sel_run(PGconn *c, struct db_job *job);
int poller__write_run(PGconn *c, struct db_job *job);

/* poll_check.c */
void poller__save_drop(struct poll_batch *b);

#endif
