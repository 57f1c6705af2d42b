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
	{ "admin_token", "LEADSYNC_ADMIN_TOKEN", "--admin-token", SETTING_STR, NULL, 0, 0,
	  "bearer token for lead intake and the admin API; unset: those routes are closed", true,
	  OFF(admin_token) },
	{ "log_level", "LEADSYNC_LOG_LEVEL", "--log-level", SETTING_STR, "info", 0, 0,
	  "error, warn, info or debug", false, OFF(log_level) },
	{ "batch_max", "LEADSYNC_BATCH_MAX", "--batch-max", SETTING_INT, "1000", 1, 100000,
	  "largest batch of leads a rule may ask for in one request", false, OFF(batch_max) },
	{ "rule_instructions", "LEADSYNC_RULE_INSTRUCTIONS", "--rule-instructions", SETTING_INT,
	  "50000000", 10000, 2000000000, "Lua instruction budget for one call of a rule", false,
	  OFF(rule_instructions) },
	{ "rule_memory_mb", "LEADSYNC_RULE_MEMORY_MB", "--rule-memory-mb", SETTING_INT, "256", 1,
	  4096, "memory cap of one rule runtime, MiB", false, OFF(rule_memory_mb) },
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
	}
	*argc = o;
	argv[o] = NULL;
	if (log_level_parse(s->log_level) < 0) {
		snprintf(err, errlen, "log_level (LEADSYNC_LOG_LEVEL): '%s' is not one of error, warn, info, debug",
			 s->log_level);
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
