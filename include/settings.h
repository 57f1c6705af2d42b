/* settings: the one table of leadsync's settings. Each row has a name, an
 * environment variable, a command-line flag, a type, a default, a range,
 * help text and whether it is secret. --help, validation and the README's
 * settings list all come from it (`leadsync settings --markdown`).
 *
 * Precedence: flag, then environment, then default. */
#ifndef LEADSYNC_SETTINGS_H
#define LEADSYNC_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

struct settings {
	char *db;          /* libpq conninfo or URI; NULL: not configured */
	char *rules;       /* rules folder */
	char *listen;      /* host:port of the HTTP listener */
	long max_connections;        /* HTTP connections open at once */
	long max_connections_per_ip; /* ... from one client address */
	char *admin_token; /* bearer token for intake and the admin API */
	char *log_level;
	char *log_format;  /* logfmt or json */
	long drain;        /* seconds /readyz fails after SIGTERM before the stop */
	long batch_max;        /* hard cap on a rule's batch */
	long rule_instructions; /* Lua instruction budget per call */
	long rule_memory_mb;   /* Lua memory cap per runtime */
	long rule_time_ms;     /* wall clock per call of a rule */
	long rule_threads;     /* rule threads, 0: the cores */
	long rule_slow_ms;     /* rule CPU per batch of a slow run */
	long db_workers;       /* database threads of the daemon, one connection each */
	long postback_signature_window; /* seconds a signed postback's t may be off */
	long db_queue;         /* database jobs waiting, at most */
	long commit_batch;     /* postbacks (clicks) applied in one commit, at most */
	char *tz;              /* time zone of offers that name none */
	long poll_pairs;       /* (offer, variant) pairs polled at once */
	long poll_batches;     /* CRM requests (batches of leads) in flight at once */
	long poll_lease;       /* seconds a claimed pair stays leased without a heartbeat */
	long poll_backoff_min; /* seconds before a failed pair's first retry */
	long poll_backoff_max; /* longest back-off, seconds */
	long dates_max_age;    /* days back the dates variant looks */
	long poll_keep_days;   /* poll_runs retention, days; 0 keeps them */
	long crm_in_flight;    /* CRM requests in flight, all hosts */
	long crm_per_host;     /* CRM requests in flight per host */
	long crm_timeout;      /* seconds a CRM request may take */
	long crm_max_mb;       /* largest CRM answer, MiB */
	long timer_interval;   /* seconds between rounds of the hold and reject-after timers */
	long timer_batch;      /* leads per timer statement */
	long prune_interval;   /* seconds between prunes of poll runs and postbacks */
	long postbacks_keep_days; /* postbacks_in retention, days; 0 keeps them */
	/* Bit i set: settings_table[i] came from its flag (a command that ranks
	 * the flag above its own inputs, like `rule test --tz`, needs to know). */
	unsigned long long from_flag;
};

enum setting_type { SETTING_STR, SETTING_INT };

struct setting {
	const char *name;
	const char *env;
	const char *flag;
	enum setting_type type;
	const char *def; /* NULL: unset */
	long min, max;   /* for SETTING_INT */
	const char *help;
	bool secret;
	size_t offset; /* into struct settings */
};

extern const struct setting settings_table[];
extern const size_t settings_count;

/* Fills s from defaults and the environment, then takes every setting flag
 * (`--db X` or `--db=X`) out of argv, wherever it stands; *argc shrinks.
 * Returns 0, or -1 with a message in err naming the setting. Strings in s
 * are owned by s: settings_release() frees them. */
__attribute__((warn_unused_result))
int settings_load(struct settings *s, int *argc, char **argv, char *err, size_t errlen);
void settings_release(struct settings *s);
/* True when the setting named name (settings_table's name) came from its
 * flag rather than the environment or the default. */
bool settings_from_flag(const struct settings *s, const char *name);
/* Appends the settings as help text, or a Markdown table when markdown. */
int settings_describe(struct buf *out, bool markdown);

#endif
