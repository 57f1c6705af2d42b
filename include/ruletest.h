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
 * ref, approved_at, hold_until. Money in units; times ISO-8601. Without
 * "goals", every lead gets a fixed goal "lead" paying 0; without
 * "currencies", a table of common ISO 4217 codes is used. The offer's
 * "status_words" take the shape of the import record's (status.h,
 * status_words_from_json: {"word": 10}, {"word": false}, {"word":
 * {"status": 5, "reason": 7}}) and are read before the rule's map, as the
 * poller reads offers.status_words. */
#ifndef LEADSYNC_RULETEST_H
#define LEADSYNC_RULETEST_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "rule.h"

#define RULETEST_PAGES_MAX 32

struct ruletest_opts {
	const char *rule;        /* path of the rule file */
	enum rule_variant variant;
	const char *leads;       /* path of the leads file */
	const char *responses[RULETEST_PAGES_MAX]; /* paths, one per page */
	unsigned nresponses;
	const char *params;      /* path of a JSON object, or the object itself; may be NULL */
	int64_t now;             /* time of the edits */
	int http_status;         /* status the answers come with */
	const char *content_type; /* Content-Type every answer comes with (its
				   * charset converts them, decode.h); NULL: none */
	const char *from, *to;   /* dates variant: YYYY-MM-DD; NULL: the leads' span */
	const char *tz;          /* dates variant: the offer's zone; NULL: the file's or UTC */
	bool json;               /* one JSON object instead of text */
	const struct rule_limits *limits;
};

/* Runs the rule and appends the report to out. Returns 0 when the rule ran
 * (whatever it edited), -1 when it could not (unreadable file, bad leads,
 * rule error, undecodable answer) with err set; out then holds what was
 * reported before the failure (text mode) and the failure itself. */
__attribute__((warn_unused_result))
int ruletest_run(const struct ruletest_opts *o, struct buf *out, char *err, size_t errlen);

#endif
