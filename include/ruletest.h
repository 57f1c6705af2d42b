/* ruletest: `leadsync rule test`, a rule run offline. It loads a rule,
 * builds the request for a batch of leads given in a file, feeds it the
 * CRM answers given in files (one per page) and reports the request, the
 * edits (each lead's changed fields before and after) and the counters.
 * No database, no network: the tool a network admin lives in while
 * writing a rule.
 *
 * The leads file is either an array of leads or an object
 *   {"offer": {"id", "hold_days", "reject_reason", "cancel_approved", "tz",
 *              "status_words"},
 *    "goals": [{"code", "payout", "wm", "pay", "ref", "currency"}],
 *    "currencies": [{"iso": "USD", "id": 840}],
 *    "leads": [...]}
 * A lead: {"id", "ext", "status", "created"} and optionally reason,
 * comment, track, base, counts, goal (a goal's code), curr (ISO), wm, pay,
 * ref, cash_curr (ISO), approved_at, hold_until. Money in units; times
 * ISO-8601. Without "goals", every lead gets a fixed goal "lead" paying
 * 0; without "currencies", a table of common ISO 4217 codes is used. The offer's
 * "status_words" take the shape of the import record's (status.h,
 * status_words_from_json: {"word": 10}, {"word": false}, {"word":
 * {"status": 5, "reason": 7}}) and are read before the rule's map, as the
 * poller reads offers.status_words. The offer may also carry "secret_params"
 * (names of params to mask, as the import record's) and "rule" (the rule's
 * name, informational).
 *
 * Secrets never reach the report: URLs, headers, bodies, notes, log lines
 * and errors are masked as `leadsync check` masks them (mask.h), with the
 * params named by the offer's secret_params and by opts.secrets, and those
 * whose name looks like a credential.
 *
 * Time zone of the dates variant's days and macros: opts.tz (`--tz`), else
 * the file's offer "tz", else opts.tz_default (LEADSYNC_TZ), else UTC.
 *
 * A case folder (tests/rules/NAME, or one `leadsync check --save` wrote)
 * holds: `args` (the options of `leadsync rule test`, blank-separated,
 * "double quotes" group, {case} stands for the folder), leads.json,
 * params.json, the answers (answer.json, answer1.json ... by the rule's
 * format), expected.txt (the report) and optionally `exit` (the exit code
 * of the run, default 0). */
#ifndef LEADSYNC_RULETEST_H
#define LEADSYNC_RULETEST_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "lead.h"
#include "macro.h"
#include "mask.h"
#include "rule.h"

#define RULETEST_PAGES_MAX 32
#define RULETEST_SECRETS_MAX 32
#define RULETEST_ARGS_MAX 96

/* ruletest_run's return when an option's value is wrong (a usage error:
 * err names the option). */
#define RULETEST_EUSAGE (-2)

struct ruletest_opts {
	const char *rule;        /* path of the rule file */
	enum rule_variant variant;
	const char *leads;       /* path of the leads file */
	const char *responses[RULETEST_PAGES_MAX]; /* paths, one per page */
	unsigned nresponses;
	const char *params;      /* path of a JSON object, or the object itself; may be NULL */
	const struct macro_param *param_list; /* params in memory, when params is NULL */
	size_t nparam_list;
	const char *secrets[RULETEST_SECRETS_MAX]; /* names of params to mask */
	unsigned nsecrets;
	int64_t now;             /* time of the edits */
	const char *content_type; /* Content-Type every answer comes with (its
				   * charset converts them, decode.h); NULL: none */
	int http_status;         /* status the answers come with (0: 200) */
	int statuses[RULETEST_PAGES_MAX]; /* per page; past nstatuses the last, or http_status */
	unsigned nstatuses;
	const char *from, *to;   /* dates variant: YYYY-MM-DD; NULL: the leads' span */
	const char *tz;          /* --tz: wins over the file's zone; NULL: none */
	const char *tz_default;  /* LEADSYNC_TZ: after the file's zone; NULL: UTC */
	const char *label_base;  /* answers under this folder are named relative to it */
	const char *rule_label;  /* the rule as the report names it; NULL: rule */
	bool json;               /* one JSON object instead of text */
	const struct rule_limits *limits;
};

/* Runs the rule and appends the report to out. Returns 0 when the rule ran
 * (whatever it edited), -1 when it could not (unreadable file, bad leads,
 * rule error, undecodable answer) with err set; out then holds what was
 * reported before the failure (text mode) and the failure itself.
 * RULETEST_EUSAGE when an option is wrong (--params not a JSON object,
 * --from after --to, an unknown zone in --tz or LEADSYNC_TZ); out is then
 * untouched. */
__attribute__((warn_unused_result))
int ruletest_run(const struct ruletest_opts *o, struct buf *out, char *err, size_t errlen);

/* A case folder, read. argv holds the args file's words ({case} replaced
 * by dir), pointing into memory the case owns; expected is expected.txt. */
struct ruletest_case {
	char *argv[RULETEST_ARGS_MAX + 1];
	int argc;
	char *expected;
	int exit_code;
	struct buf store;
};

/* Reads dir's args, expected.txt and exit. Returns 0, or -1 with err set
 * (a file missing or unreadable, args too long); release either way. */
__attribute__((warn_unused_result))
int ruletest_case_read(const char *dir, struct ruletest_case *c, char *err, size_t errlen);
void ruletest_case_release(struct ruletest_case *c);

/* Compares want and got line by line. Returns 0 when equal; 1 when they
 * differ, with a unified-style diff (--- want_name, +++ got_name, @@
 * hunks with 3 lines of context) appended to out; -1 out of memory. */
__attribute__((warn_unused_result))
int ruletest_diff(const char *want, const char *got, const char *want_name, const char *got_name,
		  struct buf *out);

/* One answer as fetched, for ruletest_case_save. */
struct ruletest_page {
	const char *body;
	size_t len;
	int status;
	const char *content_type; /* NULL: none */
	enum decode_format format; /* the request's: names the file */
};

/* What a live poll of one batch saw, for ruletest_case_save. Everything is
 * the caller's. */
struct ruletest_save {
	const char *dir;          /* the case folder; made if missing */
	const char *rule;         /* the offer's rule name (resolved in rules_dir) */
	const char *rules_dir;
	enum rule_variant variant;
	int64_t offer;
	const char *tz;           /* the zone the poll used */
	struct lead_offer settings;
	const char *status_words; /* offers.status_words as JSON text; NULL/"{}": none */
	const struct rule_goal *goals;
	size_t ngoals;
	const struct rule_currency *currs;
	size_t ncurrs;
	const struct macro_param *params;
	size_t nparams;
	const struct mask *mask;  /* the offer's secrets: params holding one are saved as *** */
	const struct lead *leads; /* before the poll's edits */
	size_t nleads;
	const struct macro_dates *dates; /* the dates variant's range; else NULL */
	int64_t now;              /* the time of the poll's edits */
	const struct ruletest_page *pages;
	size_t npages;
	const struct rule_limits *limits;
};

/* Writes a case folder that replays the poll offline: leads.json (the
 * offer, its goals, the currencies, the leads), params.json (secrets as
 * ***), answer1.EXT... (EXT by the rule's format), args (rule name,
 * variant, pages, statuses, --now, --from/--to, --content-type only for a
 * charset other than UTF-8) and expected.txt with `exit`: the report of
 * this run, made with the real params and masked. Returns 0, or -1 with
 * err set. */
__attribute__((warn_unused_result))
int ruletest_case_save(const struct ruletest_save *sv, char *err, size_t errlen);

#endif
