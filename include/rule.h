/* rule: the sandboxed Lua runtime of the CRM rules (DESIGN.md "Pull:
 * polling the CRM"). One struct rule_rt per rule file holds one lua_State;
 * rule_prepare() builds the first request of one poll, rule_process() runs
 * the rule on each answer and collects its edits through the lead
 * module's semantics (lead_apply). Nothing here does network or database
 * I/O: the caller sends the requests and writes the result.
 *
 * What a rule file may contain and call (its shape, macros, prepare,
 * process, the decoded answers, paging with `next`, lead.*, the libraries,
 * status maps, the limits) is the rule writer's manual, docs/rules.md;
 * this header holds what C callers need.
 *
 * A poll, as the poller and `rule test` run it:
 *   rule_prepare(rt, v, &batch, &res, &req)        the first request
 *   loop: send req; rule_process(rt, v, &batch, req, answer, &res)
 *         while res.has_next: req = &res.next (rule_process takes it over)
 *   apply res.changes (all or nothing) unless a call failed.
 * A next request inherits from the request it follows what
 * rule_request carries for it (method, headers, format, and the packed
 * fields and their encoding); the batch must stay the same for the whole
 * poll, since next pages expand its macros too.
 *
 * Status words: setstatus/setstc read the offer's words
 * (rule_batch.status_words), then the variant's map, then the built-ins
 * (status_recognise); status.h "Precedence".
 *
 * Limits (struct rule_limits): an instruction budget and a wall-clock
 * deadline per call, checked by a count hook (pattern steps and the C
 * work of library calls charged to the same budget, rule_int.h
 * RULE_COST_*), a memory cap through lua_Alloc (total and largest single
 * allocation), a page cap per poll, bounded log and notes. Budget,
 * deadline and memory failures kill the call so the rule cannot catch
 * them. The cap covers the Lua heap; the C side of a call (change records,
 * id indexes, encoder buffers of at most alloc_max each) is outside it. A
 * memory error's line is exact with Lua 5.4.4 (Debian 12); later versions
 * report the line of the pcall that saw it, or the file only. Every failure
 * ends the call with one message carrying the rule's file and line
 * ("rules/acme.lua:14: attempt to index a nil value (local 'd')",
 * "rules/acme.lua:3: instruction budget exhausted (50000000)"), and the
 * runtime stays usable for the next call.
 *
 * Threads: a struct rule_rt is used by one thread at a time; rule_clone()
 * gives each thread its own (the daemon's rule threads, rule_pool.h). */
#ifndef LEADSYNC_RULE_H
#define LEADSYNC_RULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "decode.h"
#include "lead.h"
#include "macro.h"
#include "status.h"

#define RULE_DEFAULT_INSTRUCTIONS 50000000
#define RULE_DEFAULT_MEMORY ((size_t)256 << 20)
#define RULE_DEFAULT_TIME_MS 2000
#define RULE_DEFAULT_SUBJECT_MAX ((size_t)1 << 20)
#define RULE_DEFAULT_PATTERN_MAX 256
#define RULE_DEFAULT_PAGES_MAX 100
#define RULE_DEFAULT_LOG_MAX ((size_t)64 << 10)
#define RULE_DEFAULT_NOTES_MAX ((size_t)64 << 10)
#define RULE_DEFAULT_BATCH_MAX 1000
#define RULE_BATCH_DEFAULT 100
#define RULE_DAYS_MAX 366
#define RULE_FILE_MAX ((size_t)1 << 20)

/* Every field 0 takes its default. */
struct rule_limits {
	int64_t instructions;   /* per call: VM instructions + pattern steps + library work */
	size_t memory;          /* bytes the runtime's Lua state may hold */
	size_t alloc_max;       /* largest single allocation; default memory / 4 */
	unsigned time_ms;       /* wall clock per call */
	size_t subject_max;     /* longest subject of find/match/gmatch/gsub */
	size_t pattern_max;     /* longest pattern */
	unsigned pages_max;     /* requests per poll, the first one included */
	size_t log_max;         /* bytes of log lines kept per result */
	size_t notes_max;       /* bytes of notes kept per result */
	size_t batch_max;       /* highest `batch` a rule may declare */
};

enum rule_variant { RULE_PROCESSING = 0, RULE_ACCEPTED, RULE_DATES };
#define RULE_VARIANTS 3

/* "processing" → RULE_PROCESSING ...; -1 when unknown. */
int rule_variant_parse(const char *name);
const char *rule_variant_name(enum rule_variant v); /* "unknown" past the enum */

struct rule_rt;

/* Loads the rule file at path (its name in messages as given, so pass
 * "rules/acme.lua" to read "rules/acme.lua:14: ..."). On success *out is
 * the runtime (rule_free() frees it) and 0 is returned; on failure -1 with
 * err set: unreadable file, syntax error ("rules/acme.lua:3: '=' expected
 * near 'x'"), a failing or budget-exceeding top level, or a table that is
 * not a rule ("rules/acme.lua: processing: unknown key 'fomat'"). limits
 * may be NULL (defaults). */
__attribute__((warn_unused_result))
int rule_load(const char *path, const struct rule_limits *limits, struct rule_rt **out, char *err,
	      size_t errlen);
/* The same from text in memory; name stands for the path in messages. */
__attribute__((warn_unused_result))
int rule_load_buffer(const char *name, const char *text, size_t len,
		     const struct rule_limits *limits, struct rule_rt **out, char *err,
		     size_t errlen);
/* Another runtime of the same rule: loaded again from the text and with
 * the limits rt was loaded with (its top level runs again), so two threads
 * can run one rule at once, each on its own runtime. Reads only what a
 * runtime never changes after its load: safe while rt runs on another
 * thread. Fails like rule_load_buffer (out of memory, limits). */
__attribute__((warn_unused_result))
int rule_clone(const struct rule_rt *rt, struct rule_rt **out, char *err, size_t errlen);
void rule_free(struct rule_rt *rt);
const char *rule_name(const struct rule_rt *rt);
/* Bytes the runtime's Lua state holds now. */
size_t rule_memory(const struct rule_rt *rt);

/* Which limit ended the last rule_prepare()/rule_process() call (for the
 * limit counters of /metrics); RULE_LIMIT_NONE when it was not killed. */
enum rule_limit { RULE_LIMIT_NONE = 0, RULE_LIMIT_BUDGET, RULE_LIMIT_MEMORY, RULE_LIMIT_TIME };
enum rule_limit rule_last_limit(const struct rule_rt *rt);

/* What a rule declares for a variant. */
struct rule_variant_info {
	bool present;
	enum decode_format format;
	size_t batch;        /* id variants */
	int days;            /* dates */
	bool prepare;        /* has a prepare function */
	size_t status_words; /* entries of its status map */
};
void rule_variant_info(const struct rule_rt *rt, enum rule_variant v,
		       struct rule_variant_info *out);

struct rule_goal {
	int64_t offer;
	const char *code;
	struct lead_goal goal;
};

struct rule_currency {
	char iso[LEAD_CURR_MAX]; /* "USD" */
	int id;
};

/* One batch: the leads of one request and what their edits need. All of
 * it is the caller's and must outlive the calls that use it (and the
 * result, which points at leads). Lead ids must be unique. */
struct rule_batch {
	int64_t offer;                   /* offer id: offer.id, goal.bycode */
	const struct lead *leads;
	size_t nleads;
	const struct macro_dates *dates; /* the dates variant's range; else NULL */
	const struct macro_param *params; /* the offer's parameters */
	size_t nparams;
	struct lead_offer settings;      /* hold days, reject reason, ... */
	const struct rule_goal *goals;   /* goals of the offer (and any a lead has) */
	size_t ngoals;
	const struct rule_currency *currencies;
	size_t ncurrencies;
	int reasons_max;                 /* the network's highest reject reason;
					  * 0: REASON_STD_MAX (17) */
	const struct status_words *status_words; /* the offer's own words
					  * (offers.status_words), read before the
					  * rule's map; NULL: none */
	int64_t now;                     /* time of the edits */
};

struct rule_header {
	char *name;
	char *value;
};

/* A request to send. Everything is malloc'd and owned by the struct. */
struct rule_request {
	char method[8];          /* "GET" ... */
	char *url;               /* full URL, query included */
	char *base_url;          /* url before fields/query were added (for next pages) */
	char *body;              /* NULL: no body */
	size_t body_len;
	struct rule_header *headers;
	size_t nheaders;
	enum decode_format format; /* how to decode the answer */
	unsigned page;           /* 1: prepare's request; 2...: next pages */
	/* what a next page inherits besides the above: the fields as sent
	 * (packed by rule_lib_req.c, opaque; NULL: none) and their encoding */
	char *fields;
	size_t fields_len;
	bool fields_json;        /* encoding "json"; false: "form" */
};
void rule_request_init(struct rule_request *r);
void rule_request_release(struct rule_request *r);

/* One lead a rule changed: leads[lead] of the batch before, `after` now
 * (every edit of the poll applied in order). after may equal the original
 * when edits cancelled out; lead_diff() tells. */
struct rule_change {
	size_t lead;
	struct lead after;
	unsigned edits; /* edits that changed it */
};

struct rule_slot {
	int64_t id;
	uint32_t lead; /* index + 1; 0: empty */
};

/* What the rule did in one poll. Pass the same result to rule_process for
 * every page of the poll: changes and counters accumulate. When a call
 * fails, the poll fails: apply none of the changes (all or nothing); log
 * and notes stay readable. */
struct rule_result {
	struct rule_change *changes;
	size_t nchanges;
	size_t edits;        /* lead.* calls */
	size_t changed;      /* edits that changed their lead */
	size_t unchanged;    /* edits that changed nothing */
	size_t unknown;      /* edits of nil ids (not ours), skipped */
	size_t refused;      /* refused: outside the batch, bad fields, lead_apply */
	size_t unrecognised; /* status texts nobody recognised */
	unsigned pages;      /* answers processed */
	bool has_next;       /* next holds the next page's request */
	bool capped;         /* a next page was asked past limits.pages_max */
	struct rule_request next;
	struct buf notes;    /* one line per refused edit or unrecognised text */
	size_t notes_dropped;
	struct buf log;      /* log() lines, "rules/acme.lua:7: text\n" */
	size_t log_dropped;
	/* internal: lead index by id and change by lead, built on first use */
	const struct lead *index_of; /* the batch's leads the index is for */
	size_t nleads;
	struct rule_slot *slots; /* open addressing by id */
	size_t nslots;
	unsigned slot_shift;
	uint32_t *change_of; /* per lead: change index + 1, 0 none */
	size_t capchanges;
};
void rule_result_init(struct rule_result *r);
void rule_result_release(struct rule_result *r);

/* Builds the first request of variant v for batch b: the declared url,
 * method, headers and fields with their macros expanded (macro_expand),
 * then prepare. prepare's log lines go to res (may be NULL: dropped). On
 * success *out is filled (release it) and 0 returned; on failure -1, err
 * set, *out empty. */
__attribute__((warn_unused_result))
int rule_prepare(struct rule_rt *rt, enum rule_variant v, const struct rule_batch *b,
		 struct rule_result *res, struct rule_request *out, char *err, size_t errlen);

/* Runs variant v's process on one answer (body, len; http_status and
 * content_type as the CRM sent them, content_type NULL when none) to the
 * request req (may be NULL: page 1, no inheritance), decoded by the
 * variant's format, in UTF-8 whatever the charset (decode.h). Edits,
 * counters, notes and log go into res; when process asks for a next page
 * and the cap allows, res->next is set (res->has_next). Returns 0, or -1
 * with err set (decode failure, rule failure, limits). req may be
 * &res->next: the call takes it over. */
__attribute__((warn_unused_result))
int rule_process(struct rule_rt *rt, enum rule_variant v, const struct rule_batch *b,
		 const struct rule_request *req, const char *body, size_t len, int http_status,
		 const char *content_type, struct rule_result *res, char *err, size_t errlen);

#endif
