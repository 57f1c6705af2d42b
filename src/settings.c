/* settings: the settings table and its loader (flags over environment over
 * defaults), with range checks and help generated from the same rows. */
#include "settings.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define OFF(f) offsetof(struct settings, f)

const struct setting settings_table[] = {
	{ "db", "LEADSYNC_DB", "--db", SETTING_STR, NULL, 0, 0,
	  "PostgreSQL connection string or URI; unset: `make run` starts a private local server", true,
	  OFF(db) },
	{ "rules", "LEADSYNC_RULES", "--rules", SETTING_STR, "./rules", 0, 0,
	  "folder of the Lua rules, one NAME.lua per CRM", false, OFF(rules) },
	{ "listen", "LEADSYNC_LISTEN", "--listen", SETTING_STR, "127.0.0.1:8080", 0, 0,
	  "address of the HTTP listener (postbacks, clicks, intake, admin)", false, OFF(listen) },
	{ "max_connections", "LEADSYNC_MAX_CONNECTIONS", "--max-connections", SETTING_INT, "1024",
	  1, 1000000, "HTTP connections open at once; at the cap the oldest idle one is closed to "
	  "make room, with none idle a new one gets 503", false, OFF(max_connections) },
	{ "max_connections_per_ip", "LEADSYNC_MAX_CONNECTIONS_PER_IP", "--max-connections-per-ip",
	  SETTING_INT, "128", 1, 1000000, "HTTP connections open at once from one client address; "
	  "more get 503; at or above LEADSYNC_MAX_CONNECTIONS no such cap (behind a proxy)", false,
	  OFF(max_connections_per_ip) },
	{ "admin_token", "LEADSYNC_ADMIN_TOKEN", "--admin-token", SETTING_STR, NULL, 0, 0,
	  "bearer token for lead intake and the admin API; unset: those routes are closed", true,
	  OFF(admin_token) },
	{ "log_level", "LEADSYNC_LOG_LEVEL", "--log-level", SETTING_STR, "info", 0, 0,
	  "error, warn, info or debug", false, OFF(log_level) },
	{ "log_format", "LEADSYNC_LOG_FORMAT", "--log-format", SETTING_STR, "logfmt", 0, 0,
	  "logfmt (key=value) or json (one object per line), the same keys in both", false,
	  OFF(log_format) },
	{ "drain", "LEADSYNC_DRAIN", "--drain", SETTING_INT, "0", 0, 600,
	  "seconds `run` keeps serving after SIGTERM with /readyz answering 503, so a load "
	  "balancer stops sending first (a second signal cuts it short)", false, OFF(drain) },
	{ "batch_max", "LEADSYNC_BATCH_MAX", "--batch-max", SETTING_INT, "1000", 1, 100000,
	  "largest batch of leads a rule may ask for in one request", false, OFF(batch_max) },
	{ "rule_instructions", "LEADSYNC_RULE_INSTRUCTIONS", "--rule-instructions", SETTING_INT,
	  "50000000", 10000, 2000000000, "Lua instruction budget for one call of a rule", false,
	  OFF(rule_instructions) },
	{ "rule_memory_mb", "LEADSYNC_RULE_MEMORY_MB", "--rule-memory-mb", SETTING_INT, "256", 1,
	  4096, "memory cap of one rule runtime, MiB", false, OFF(rule_memory_mb) },
	{ "rule_time_ms", "LEADSYNC_RULE_TIME_MS", "--rule-time-ms", SETTING_INT, "2000", 10,
	  600000, "wall-clock limit of one call of a rule, ms (its budget usually ends it first)",
	  false, OFF(rule_time_ms) },
	{ "rule_threads", "LEADSYNC_RULE_THREADS", "--rule-threads", SETTING_INT, "0", 0, 256,
	  "threads the rules run on (decode, prepare, process), never on the event loop; 0: one "
	  "per core", false, OFF(rule_threads) },
	{ "rule_slow_ms", "LEADSYNC_RULE_SLOW_MS", "--rule-slow-ms", SETTING_INT, "1000", 1,
	  600000, "rule CPU time per batch, ms, from which a poll run counts as slow (3 in a row "
	  "are logged)", false, OFF(rule_slow_ms) },
	{ "db_workers", "LEADSYNC_DB_WORKERS", "--db-workers", SETTING_INT, "2", 1, 64,
	  "database threads of `leadsync run`, one connection each", false, OFF(db_workers) },
	{ "db_queue", "LEADSYNC_DB_QUEUE", "--db-queue", SETTING_INT, "20000", 10, 1000000,
	  "database jobs that may wait; past it requests are answered 503", false, OFF(db_queue) },
	{ "commit_batch", "LEADSYNC_COMMIT_BATCH", "--commit-batch", SETTING_INT, "500", 1, 10000,
	  "most postbacks (or clicks) applied in one commit", false, OFF(commit_batch) },
	{ "postback_signature_window", "LEADSYNC_POSTBACK_SIGNATURE_WINDOW",
	  "--postback-signature-window", SETTING_INT, "300", 1, 86400,
	  "seconds a signed postback's timestamp may be away from the clock, either way, for an "
	  "advertiser with a postback_secret; older or newer: 403 signature expired", false,
	  OFF(postback_signature_window) },
	{ "tz", "LEADSYNC_TZ", "--tz", SETTING_STR, "UTC", 0, 0,
	  "time zone (IANA name) of offers that name none: the dates variant's days", false,
	  OFF(tz) },
	{ "poll_pairs", "LEADSYNC_POLL_PAIRS", "--poll-pairs", SETTING_INT, "256", 1, 100000,
	  "(offer, variant) pairs one daemon polls at once", false, OFF(poll_pairs) },
	{ "poll_batches", "LEADSYNC_POLL_BATCHES", "--poll-batches", SETTING_INT, "256", 1, 100000,
	  "CRM requests (batches of leads) one daemon has in flight at once", false,
	  OFF(poll_batches) },
	{ "poll_lease", "LEADSYNC_POLL_LEASE", "--poll-lease", SETTING_INT, "60", 5, 3600,
	  "seconds a claimed pair stays leased after the last heartbeat (a dead daemon's pairs "
	  "are taken over after it)", false, OFF(poll_lease) },
	{ "poll_backoff_min", "LEADSYNC_POLL_BACKOFF_MIN", "--poll-backoff-min", SETTING_INT, "30",
	  1, 86400, "seconds before a failed pair is tried again the first time (doubling, with "
	  "jitter)", false, OFF(poll_backoff_min) },
	{ "poll_backoff_max", "LEADSYNC_POLL_BACKOFF_MAX", "--poll-backoff-max", SETTING_INT,
	  "3600", 1, 86400, "longest back-off of a failing pair, seconds", false,
	  OFF(poll_backoff_max) },
	{ "dates_max_age", "LEADSYNC_DATES_MAX_AGE", "--dates-max-age", SETTING_INT, "60", 1, 3650,
	  "days back the dates variant asks about open leads", false, OFF(dates_max_age) },
	{ "poll_keep_days", "LEADSYNC_POLL_KEEP_DAYS", "--poll-keep-days", SETTING_INT, "14", 0,
	  3650, "days poll runs are kept; 0 keeps them forever", false, OFF(poll_keep_days) },
	{ "crm_in_flight", "LEADSYNC_CRM_IN_FLIGHT", "--crm-in-flight", SETTING_INT, "256", 1, 10000,
	  "CRM requests in flight at once, all hosts", false, OFF(crm_in_flight) },
	{ "crm_per_host", "LEADSYNC_CRM_PER_HOST", "--crm-per-host", SETTING_INT, "32", 1, 10000,
	  "CRM requests in flight at once to one host", false, OFF(crm_per_host) },
	{ "crm_timeout", "LEADSYNC_CRM_TIMEOUT", "--crm-timeout", SETTING_INT, "60", 1, 3600,
	  "seconds a CRM request may take, connect included", false, OFF(crm_timeout) },
	{ "crm_max_mb", "LEADSYNC_CRM_MAX_MB", "--crm-max-mb", SETTING_INT, "8", 1, 1024,
	  "largest CRM answer, MiB", false, OFF(crm_max_mb) },
	{ "timer_interval", "LEADSYNC_TIMER_INTERVAL", "--timer-interval", SETTING_INT, "5", 1, 3600,
	  "seconds between rounds of the timers (hold expiry, reject-after)", false,
	  OFF(timer_interval) },
	{ "timer_batch", "LEADSYNC_TIMER_BATCH", "--timer-batch", SETTING_INT, "1000", 1, 100000,
	  "leads a timer approves or rejects in one statement", false, OFF(timer_batch) },
	{ "prune_interval", "LEADSYNC_PRUNE_INTERVAL", "--prune-interval", SETTING_INT, "900", 10,
	  86400, "seconds between prunes of old poll runs and incoming postbacks", false,
	  OFF(prune_interval) },
	{ "postbacks_keep_days", "LEADSYNC_POSTBACKS_KEEP_DAYS", "--postbacks-keep-days",
	  SETTING_INT, "30", 0, 3650,
	  "days incoming postbacks are kept; 0 keeps them forever (lead history always is)", false,
	  OFF(postbacks_keep_days) },
};
const size_t settings_count = sizeof(settings_table) / sizeof(settings_table[0]);

static int setting_set(struct settings *s, const struct setting *t, const char *v, char *err,
		       size_t errlen)
{
	char *p = (char *)s + t->offset;

	if (t->type == SETTING_STR) {
		char **dst = (char **)(void *)p;
		char *dup = v ? strdup(v) : NULL;

		if (v && !dup) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		free(*dst);
		*dst = dup;
		return 0;
	} else {
		long *dst = (long *)(void *)p;
		char *end;
		long n;

		errno = 0;
		n = strtol(v, &end, 10);
		if (errno || end == v || *end || n < t->min || n > t->max) {
			snprintf(err, errlen, "%s (%s): '%s' is not a whole number in %ld..%ld",
				 t->name, t->env, v, t->min, t->max);
			return -1;
		}
		*dst = n;
		return 0;
	}
}

int settings_load(struct settings *s, int *argc, char **argv, char *err, size_t errlen)
{
	size_t i;
	int a, o;

	memset(s, 0, sizeof(*s));
	for (i = 0; i < settings_count; i++) {
		const struct setting *t = &settings_table[i];
		const char *v = getenv(t->env);

		if (!v || !*v)
			v = t->def;
		if ((v || t->type == SETTING_STR) && setting_set(s, t, v, err, errlen) < 0)
			return -1;
	}
	for (a = 1, o = 1; a < *argc; a++) {
		const char *arg = argv[a];
		const struct setting *t = NULL;
		const char *v = NULL;

		for (i = 0; i < settings_count && arg[0] == '-'; i++) {
			size_t fl = strlen(settings_table[i].flag);

			if (strncmp(arg, settings_table[i].flag, fl) == 0 &&
			    (arg[fl] == '\0' || arg[fl] == '=')) {
				t = &settings_table[i];
				v = arg[fl] == '=' ? arg + fl + 1 : NULL;
				break;
			}
		}
		if (!t) {
			argv[o++] = argv[a];
			continue;
		}
		if (!v) {
			if (a + 1 >= *argc) {
				snprintf(err, errlen, "%s needs a value", t->flag);
				return -1;
			}
			v = argv[++a];
		}
		if (setting_set(s, t, v, err, errlen) < 0)
			return -1;
		if (i < 64)
			s->from_flag |= 1ULL << i;
	}
	*argc = o;
	argv[o] = NULL;
	if (log_level_parse(s->log_level) < 0) {
		snprintf(err, errlen, "log_level (LEADSYNC_LOG_LEVEL): '%s' is not one of error, warn, info, debug",
			 s->log_level);
		return -1;
	}
	if (log_format_parse(s->log_format) < 0) {
		snprintf(err, errlen, "log_format (LEADSYNC_LOG_FORMAT): '%s' is not one of logfmt, json",
			 s->log_format);
		return -1;
	}
	return 0;
}

void settings_release(struct settings *s)
{
	size_t i;

	for (i = 0; i < settings_count; i++)
		if (settings_table[i].type == SETTING_STR) {
			char **p = (char **)(void *)((char *)s + settings_table[i].offset);

			free(*p);
			*p = NULL;
		}
}

bool settings_from_flag(const struct settings *s, const char *name)
{
	size_t i;

	for (i = 0; i < settings_count && i < 64; i++)
		if (strcmp(settings_table[i].name, name) == 0)
			return (s->from_flag >> i) & 1;
	return false;
}

int settings_describe(struct buf *out, bool markdown)
{
	size_t i;
	int rc = 0;

	if (markdown)
		rc |= buf_adds(out, "| variable | flag | default | meaning |\n|---|---|---|---|\n");
	for (i = 0; i < settings_count; i++) {
		const struct setting *t = &settings_table[i];
		char range[64] = "";

		if (t->type == SETTING_INT)
			snprintf(range, sizeof(range), " (%ld..%ld)", t->min, t->max);
		if (markdown)
			rc |= buf_addf(out, "| `%s` | `%s` | %s%s%s | %s%s%s |\n", t->env, t->flag,
				       t->def ? "`" : "", t->def ? t->def : "unset", t->def ? "`" : "",
				       t->help, range, t->secret ? "; secret, never logged" : "");
		else
			rc |= buf_addf(out, "  %-22s %-28s %s%s [default: %s]\n", t->flag, t->env,
				       t->help, range, t->def ? t->def : "unset");
	}
	return rc ? -1 : 0;
}
