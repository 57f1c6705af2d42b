/* rule_int: what the rule runtime's files (rule.c, rule_lib_*.c,
 * rule_pattern.c) share; not an API for other modules. */
#ifndef LEADSYNC_RULE_INT_H
#define LEADSYNC_RULE_INT_H

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "rule.h"
#include "status.h"

enum rule_kill { RULE_KILL_NONE = 0, RULE_KILL_BUDGET, RULE_KILL_TIME, RULE_KILL_MEMORY };

/* The state of the call under way (rule_prepare or rule_process). */
struct rule_call {
	enum rule_variant v;
	const struct rule_batch *b;
	struct rule_result *res;         /* log and notes (may be NULL in prepare) */
	bool process;                    /* in process: the lead functions work */
	struct rule_result *index;       /* the id index: res, or scratch */
	struct rule_result scratch;      /* prepare's id index */
	uint64_t *ext_slots;             /* e2i: tag << 32 | lead + 1; 0 empty */
	size_t ext_nslots;
	const struct rule_request *prev; /* rule_process: the answered request */
	const char *body;
	size_t len;
	int http_status;
	const char *content_type; /* of the answer; NULL: none */
	struct rule_request req;  /* being built; released by the caller of the pcall */
	int64_t *ids;             /* macro context arrays, malloc'd */
	const char **exts;
	struct macro_ctx mctx;
	char msg[512];            /* a failure found by our own C code */
};

struct rule_rt {
	lua_State *L;
	char *name;               /* as given: "rules/acme.lua" */
	char *src;                /* the text it was loaded from (rule_clone) */
	size_t src_len;
	char short_src[LUA_IDSIZE];
	struct rule_limits lim;
	/* memory */
	size_t mem_used;
	unsigned long mem_hard;   /* refusals Lua will turn into a memory error */
	const void *refused_ptr;  /* the last refusal, to tell Lua's retry */
	size_t refused_size;
	bool refused_pending;
	char mem_where[LUA_IDSIZE + 24]; /* where the last refusal happened */
	size_t mem_asked;
	/* budget */
	bool in_call;
	int64_t remaining;        /* instructions left */
	struct timespec deadline;
	enum rule_kill killed;
	enum rule_kill last_kill; /* of the last call, once it has ended */
	char kill_msg[256];
	/* registry references */
	int ref_chunk;            /* the compiled chunk */
	int ref_env_mt;           /* metatable of each call's _ENV */
	int ref_env;              /* the current call's _ENV */
	int ref_marks;            /* weak table: json.array / json.object marks */
	int ref_proxy_mt[4];      /* metatables of e2i, ids, i2t, ide */
	/* per variant, from load */
	struct rule_variant_info info[RULE_VARIANTS];
	struct status_words *words[RULE_VARIANTS];
	struct rule_call *call;   /* NULL between calls */
};

static inline struct rule_rt *rule__rt(lua_State *L)
{
	return *(struct rule_rt **)lua_getextraspace(L);
}

/* rule.c */
/* Allocation-failure seam (tests/torture/torture.c): when set, asked before
 * the runtime's lua_Alloc grows a block; true refuses it as the memory cap
 * does. NULL (never set) in the daemon; set only while no rule runs. */
extern bool (*rule__alloc_fail)(void);
/* Ends the call: from now on the hook raises on every instruction and the
 * sandbox's pcall re-raises. Sets kill_msg from where (may be NULL: the
 * innermost Lua line). */
void rule__kill(struct rule_rt *rt, enum rule_kill k, const char *where);
/* Raises the kill error (never returns). */
int rule__raise_kill(lua_State *L);
/* Charges n units of work to the budget; kills and raises when it runs
 * out or the deadline passed. */
void rule__charge(lua_State *L, int64_t n);
/* The same for bytes at one unit per `per` bytes (at least one unit when
 * bytes > 0), saturating instead of overflowing. */
void rule__charge_bytes(lua_State *L, size_t bytes, size_t per);

/* What the library functions charge, in instructions. One unit is about
 * one instruction of the hooked VM (5 ns on the 2-core x86 box they were
 * measured on, -O2): a rule that spends its budget in one library
 * function runs about as long as `while true do end` does (0.35 s for
 * the default 50M), so C work costs roughly what Lua work of the same
 * time would; bench/bench_budget.c re-measures that (`make
 * build/bench/bench_budget && build/bench/bench_budget`). docs/rules.md
 * "The sandbox and its limits" lists them.
 * Charged before the work unless said otherwise. */
#define RULE_COST_VALUE 64       /* json/form.encode: each value or table entry */
#define RULE_COST_FLOAT 96       /* ... a non-integer number, on top (printf + strtod) */
#define RULE_COST_TEXT_PER 4     /* ... their strings: 1 per 4 bytes */
#define RULE_COST_ESCAPE_PER 2   /* form.encode/escape strings: 1 per 2 bytes */
#define RULE_COST_JSON_DECODE 7  /* json.decode: per byte of text */
#define RULE_COST_FORM_DECODE 3  /* form.decode: per byte */
#define RULE_COST_XML_DECODE 16  /* xml.decode: per byte */
#define RULE_COST_XML_CHILD 8    /* xml.find/all: per child looked at */
#define RULE_COST_B64_PER 4      /* base64: 1 per 4 bytes in */
#define RULE_COST_COPY_PER 8     /* string.rep, upper/lower/reverse, table.concat's
				  * bytes (after the call): 1 per 8 bytes */
#define RULE_COST_CONCAT_ITEM 4  /* table.concat: per item */
#define RULE_COST_FORMAT_PER 32  /* string.format: 1 per 32 bytes of string arguments */
#define RULE_COST_UTF8 1         /* utf8.len: per byte */
#define RULE_COST_SHIFT 4        /* table.insert/remove: per item moved */
#define RULE_COST_COMPARE 4      /* table.sort: per comparison (n log2 n of them) */
/* "rules/acme.lua:14" of the innermost Lua function with a line, or the
 * rule's name. */
void rule__where(lua_State *L, char *out, size_t n);
/* Raises an error whose message is exactly the text given (no file:line
 * added): for failures that are not the rule's, e.g. a bad answer. */
__attribute__((noreturn, format(printf, 2, 3))) void rule__fail(lua_State *L, const char *fmt, ...);
/* luaL_error with printf formats (%zu, %lld, %.40s ...): the message
 * gets the position of the Lua code that called the C function. */
__attribute__((noreturn, format(printf, 2, 3))) void rule__errorf(lua_State *L, const char *fmt, ...);
/* The lead index of a result: the batch index of id, or -1. */
long rule__find(const struct rule_result *r, const struct rule_batch *b, int64_t id);
/* Adds a line to a bounded buffer of the result (notes, log). */
void rule__line(struct buf *b, size_t max, size_t *dropped, const char *where, const char *text,
		size_t len);

/* The rule's libraries, one file each, like Lua's own (lmathlib.c ...). */
#define RULE_LIB_DEPTH 64 /* nesting of json.encode / form.encode / fields */
/* Strings shorter than this are paid for by their value's RULE_COST_VALUE
 * (no clock read per short string). */
#define RULE_CHARGE_MIN 64

/* rule_lib_base.c: the sandbox's base functions and its read-only proxies */
/* Builds the sandbox's base table (library proxies, wrapped functions) and
 * leaves it on the stack; calls the openers below. */
void rule__open_sandbox(lua_State *L);
/* __newindex of a proxy: raises "'name' is read-only" (upvalue 1: name). */
int rule__readonly(lua_State *L);
/* Replaces the table at -1 by a read-only proxy of it named name. */
void rule__proxy(lua_State *L, const char *name);
/* Sets field name of the table at -1 to a read-only library of fns. */
void rule__library(lua_State *L, const char *name, const luaL_Reg *fns);
/* n items at rate units each, saturating; 0 for n <= 0. */
int64_t rule__units(lua_Integer n, int64_t rate);

/* rule_lib_lead.c: lead, currency, goal; log and print */
void rule__open_lead(lua_State *L, int base);
int rule__log(lua_State *L);

/* rule_lib_codec.c: json, form, xml, hash, base64 */
void rule__open_codecs(lua_State *L, int base);
/* Encoders used by requests: append the value at idx to out, or raise. */
void rule__json_encode(lua_State *L, int idx, struct buf *out);
void rule__form_encode(lua_State *L, int idx, struct buf *out);
/* A struct buf boxed in a userdata (freed by __gc if an error unwinds);
 * pushed on the stack. */
struct buf *rule__ubuf(lua_State *L, size_t max);
/* buf_add, raising when the buffer is full. */
void rule__add(lua_State *L, struct buf *b, const char *s, size_t n);
void rule__adds(lua_State *L, struct buf *b, const char *s);
/* The number at idx as text into tmp: integers as such, floats
 * shortest-exact; strict: nan and inf raise. */
const char *rule__numtext(lua_State *L, int idx, char *tmp, size_t n, bool strict);
/* The json.array / json.object marks (rt->ref_marks values). */
enum { RULE_ARRAY, RULE_OBJECT };
struct rule_key {
	const char *s; /* the table's own string, or num */
	size_t len;
	lua_Integer i;
	bool isint;
	char num[24];
};
/* The keys of the table at idx, sorted by their text: pushes the array
 * (a userdata) and returns it with its count. Keys are strings or
 * integers; anything else raises. */
struct rule_key *rule__sorted_keys(lua_State *L, int idx, size_t *count, const char *what);
/* Pushes the key as the table holds it. */
void rule__push_key(lua_State *L, const struct rule_key *k);

/* rule_lib_batch.c: e2i, ids, i2t, ide, idl, idsl, idel */
void rule__open_batch(lua_State *L, int base);
/* Builds a lazy global (e2i, ids, ...) into the table at -1; returns 1
 * when key named one, else 0 (nothing pushed). */
int rule__lazy(lua_State *L, struct rule_rt *rt, const char *key);

/* rule_lib_req.c: requests */
/* Builds the request table of a variant for prepare: expects the variant's
 * table at vidx; pushes the request table. */
void rule__push_request(lua_State *L, struct rule_rt *rt, int vidx);
/* Turns the request table at idx into rt->call->req; prev gives the
 * inherited fields (may be NULL). Raises on a bad request. */
void rule__finish_request(lua_State *L, struct rule_rt *rt, int idx,
			  const struct rule_request *prev);

/* rule_pattern.c: string.find/match/gmatch/gsub on a matcher that charges
 * its steps to the budget. */
int rule__str_find(lua_State *L);
int rule__str_match(lua_State *L);
int rule__str_gmatch(lua_State *L);
int rule__str_gsub(lua_State *L);

#endif
