/* rule: the sandboxed Lua runtime of the CRM rules (DESIGN.md "Pull:
 * polling the CRM"). One struct rule_rt per rule file holds one lua_State;
 * rule_prepare() builds the request of one poll, rule_process() runs the
 * rule on the CRM's answer and collects its edits through the lead
 * module's semantics. Nothing here does network or database I/O: the
 * caller sends the request and writes the result.
 *
 * The rule file. A Lua text chunk (binary chunks are refused) returning a
 * table:
 *
 *   return {
 *     statuses = { ["0"] = "processing", [142] = "accept", lost = {status = 5, reason = 2} },
 *     process  = function(data) ... end,      -- shared by the variants
 *     processing = {                          -- and/or accepted, dates
 *       url = "https://{host}/api/orders?ids={idsl}&key={key}",
 *       method = "GET", format = "json", batch = 50,  -- dates: days = 7
 *       fields = { ids = "{ids}" }, headers = { ["X-API-KEY"] = "{key}" },
 *       encoding = "form",                    -- or "json": how fields become a body
 *       prepare = function(request) ... end,  -- optional
 *       process = function(data) ... end,     -- optional, beats the shared one
 *       statuses = { ... },                   -- optional, beats the shared map
 *     },
 *   }
 *
 * Top level keys: processing, accepted, dates, process, prepare, statuses
 * (at least one variant). Variant keys: url (required), method (GET, POST,
 * PUT, PATCH, DELETE; default GET), format (json, xml, form, text; default
 * json), encoding (form, json; default form), fields, headers, batch (ids
 * per request, 1..limits.batch_max, default RULE_BATCH_DEFAULT; id
 * variants), days (days per request, 1..RULE_DAYS_MAX, default 1; dates),
 * prepare, process, statuses. An unknown key is a load error, so typos
 * are caught. A variant needs a process function, its own or the shared
 * one. url/method/format/batch/days/statuses are read once, at load.
 *
 * Status maps: word (or number: 142 and "142" are the same key) →
 * a status number 1..12, a built-in word ("accept", "trash", "paid" ...,
 * read by status_recognise), a table {status=, reason=, accept=} (accept
 * with a status other than 6 is a load error), or false: the word is
 * blocked and reads as unrecognised (for a CRM's numbers the rule leaves
 * unmapped, which must never read as ours). The
 * variant's map is the shared map plus its own entries; it is consulted
 * before the built-in recognition (status_recognise's overrides), so a
 * CRM's own numbers never read as ours, and after the offer's own words
 * (struct rule_batch's status_words), which an admin sets per offer.
 *
 * Globals a call sees (fresh per call; everything else is the sandbox):
 *   both: idl (sequence of internal ids), idsl, idel (comma-joined; these
 *     three are built on first use), the views e2i, ids, i2t, ide (below),
 *     inid, from to ffrom fto ufrom uto tom ftom utom (dates variant only;
 *     ufrom/uto/utom are integers), offer = {id=, params={name=value}},
 *     variant ("processing" ...), _G (the call's _ENV).
 *   prepare(request): request = {url=, method=, headers={}, fields={},
 *     query=nil, body=nil, encoding=}, macros already expanded (url
 *     percent-encoded, fields raw, a field that is exactly "{ids}"/"{ide}"
 *     an array). prepare edits it in place, or returns a new table, or
 *     assigns the global `request`. Then: query (string or table,
 *     form-encoded) is appended to url; when body is nil and fields is not
 *     empty, fields go in the query for GET/DELETE and otherwise become the
 *     body (encoding form: form.encode with Content-Type
 *     application/x-www-form-urlencoded; json: json.encode with
 *     application/json) unless a Content-Type header is given. Header
 *     names must be tokens, no CR/LF anywhere; url must be http(s).
 *   process(data): data (the decoded answer), e2i (external id → internal
 *     id; an integer key reads as its decimal text, as PHP arrays do:
 *     e2i[777] finds "777"), ids (internal id → status), i2t (internal
 *     id → created, UNIX time), ide (internal id → external id), inid (the
 *     id when the batch holds one lead), page (1, 2, ...), http_status.
 *     e2i, ids, i2t and ide are read-only views of the batch (looked up in
 *     C, nothing built per lead): pairs() walks them in batch order, # is
 *     0; a repeated external id maps to its first lead. It may return {next = {url=,
 *     method=, headers=, fields=, query=, body=, encoding=}}: the request
 *     of the next page, built as prepare's is (no macros), every field
 *     missing inheriting from the request that produced this answer (url:
 *     its url before fields/query were added; fields/query/body: none).
 *
 * Libraries (read-only): lead.edit(id, fields), lead.approve(id [,comment]),
 * lead.setstatus(id, text), lead.setstc(id, text) (each returns true, or
 * false and why); currency.id(iso); goal.bycode([offer,] code); log(...)
 * and print(...) (into the result's log); json.encode/decode/null/array/
 * object; form.encode/decode/escape; xml.find/all; hash.md5/sha1/sha256
 * (text [, raw]) and hash.hmac_md5/hmac_sha1/hmac_sha256(key, text [, raw])
 * (lowercase hex, or the raw bytes); base64.encode(s [, urlsafe]) and
 * base64.decode(s) (both alphabets; nil, why on bad input); string (no
 * dump; find/match/gmatch/gsub bounded, see below), table, math, utf8,
 * os.time/date/clock, and the base functions but load, loadstring,
 * dofile, loadfile, require, collectgarbage, rawset, warn. coroutine, io,
 * debug and package do not exist.
 *
 * Encoders. json.encode: a table with keys exactly 1..n (or empty) is an
 * array, any other an object with its keys sorted (so a signature over the
 * body is stable); json.array(t)/json.object(t) force the kind (json.object()
 * is {}); json.null is null; nesting past 64 (a cycle) is an error.
 * form.encode is PHP's http_build_query: keys sorted, a sequence of
 * scalars name[]=v, a sequence of tables name[i][k]=v (i from 0, as PHP),
 * true/false 1/0, nil and json.null left out, values and keys
 * percent-encoded (RFC 3986) but '[' ']' in keys, so a field named
 * "filter[ids]" = "{ids}" gives filter[ids][]=1&filter[ids][]=2.
 *
 * lead.edit fields (DESIGN.md): accept (true/1), status (1..12), reason
 * (1..batch.reasons_max), hold (true: the offer's days; N days), comment,
 * base (money in units, a number or a decimal string: 12.5 is 1250 cents),
 * counts, curr (currency id or ISO code), goal (goal id or code of the
 * batch's offer), track, cash = {wm, pay, ref (money), cc (id or ISO)};
 * a cc that changes the payouts' currency needs wm, pay and ref (lead.h).
 * A wrong type or value, an unknown field, an id outside the batch or a
 * refusal of lead_apply refuses that edit: counted, its message (with
 * file:line) kept in notes, the rule goes on. edit(nil, ...) (e2i of an id
 * that is not ours) is skipped and counted as unknown. setstatus/setstc
 * read the text with the offer's words (batch.status_words), then the
 * variant's map, then the built-in words (status_recognise); the first
 * that knows the word decides, a blocker (false) included (status.h,
 * "Precedence"); an unrecognised or blocked text changes no status and is
 * counted (setstc still writes the raw text to the comment). approve(id, c) is edit(id, {accept=1,
 * comment=c}). Edits apply at once, in order, to a working copy of the
 * lead (lead_apply, source SOURCE_DATES for the dates variant, else
 * SOURCE_POLL); the rule writes nothing itself.
 *
 * Sandbox and limits (struct rule_limits): a fresh _ENV and a fresh run of
 * the chunk per call (top-level locals do not survive a call), library
 * tables behind read-only proxies, the string metatable locked; an
 * instruction budget and a wall-clock deadline checked by a count hook;
 * pattern functions run on our own matcher whose steps are charged to the
 * same budget (string.rep("a", 1e6):match("(.-)*b") ends by budget), with
 * subject and pattern length caps; table.move charged by its element
 * count; a memory cap through lua_Alloc (total bytes, and the largest
 * single allocation). Budget, deadline and memory failures kill the call:
 * the hook raises on every instruction from then on and the sandbox's
 * pcall/xpcall re-raise, so a rule cannot catch them (xpcall's handler is
 * not run for them: it would run with hooks off). setmetatable refuses
 * __gc (finalizers run with hooks off). The cap covers the Lua heap; the
 * C side of a call (the result's change records, the id indexes, encoder
 * buffers of at most alloc_max each) is outside it. A memory error's line
 * is exact with Lua 5.4.4 (Debian 12); later versions report the line of
 * the pcall that saw it, or the file only. Every failure ends the call with
 * one message carrying the rule's file and line
 * ("rules/acme.lua:14: attempt to index a nil value (local 'd')",
 * "rules/acme.lua:3: instruction budget exhausted (50000000)"), and the
 * runtime stays usable for the next call.
 *
 * Threads: a struct rule_rt is used by one thread at a time. */
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
#define RULE_DEFAULT_TIME_MS 10000
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
	int64_t instructions;   /* per call: VM instructions + pattern steps */
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
void rule_free(struct rule_rt *rt);
const char *rule_name(const struct rule_rt *rt);
/* Bytes the runtime's Lua state holds now. */
size_t rule_memory(const struct rule_rt *rt);

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

/* Runs variant v's process on one answer (body, len; http_status as the
 * CRM sent it) to the request req (may be NULL: page 1, no inheritance),
 * decoded by the variant's format. Edits, counters, notes and log go into
 * res; when process asks for a next page and the cap allows, res->next is
 * set (res->has_next). Returns 0, or -1 with err set (decode failure,
 * rule failure, limits). req may be &res->next: the call takes it over. */
__attribute__((warn_unused_result))
int rule_process(struct rule_rt *rt, enum rule_variant v, const struct rule_batch *b,
		 const struct rule_request *req, const char *body, size_t len, int http_status,
		 struct rule_result *res, char *err, size_t errlen);

#endif
