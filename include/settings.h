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
	char *admin_token; /* bearer token for intake and the admin API */
	char *log_level;
	long batch_max;        /* hard cap on a rule's batch */
	long rule_instructions; /* Lua instruction budget per call */
	long rule_memory_mb;   /* Lua memory cap per runtime */
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
/* Appends the settings as help text, or a Markdown table when markdown. */
int settings_describe(struct buf *out, bool markdown);

#endif
