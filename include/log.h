/* log: one line per event on stderr, logfmt by default, e.g.
 *   ts=2026-11-23T10:00:00Z level=info msg="poll done" offer=10 variant=processing
 * or, with log_format LOG_JSON (LEADSYNC_LOG_FORMAT=json), one JSON object
 * with the same keys in the same order:
 *   {"ts":"2026-11-23T10:00:00Z","level":"info","msg":"poll done","offer":10,"variant":"processing"}
 * where a bare value that is a whole number (ids, counts) is a JSON number
 * and every other value a string. Ids always go under the same keys:
 * offer, variant, run (poll_runs), postback (postbacks_in), lead.
 * The level is checked before anything is formatted. Field text is the
 * caller's printf format; values that may hold spaces or quotes go through
 * log_quote(). Secrets never reach a log call. */
#ifndef LEADSYNC_LOG_H
#define LEADSYNC_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

extern int log_level;

enum log_format { LOG_LOGFMT = 0, LOG_JSON };
extern int log_format;

/* Parses "logfmt" or "json"; -1 when unknown. */
int log_format_parse(const char *s);

/* Parses "error", "warn", "info" or "debug"; -1 when unknown. */
int log_level_parse(const char *s);
void log__write(int level, const char *msg, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Quotes s for a logfmt value into out (always NUL-terminated, truncated
 * to outlen); returns out. */
const char *log_quote(char *out, size_t outlen, const char *s);

#define log_at(lvl, msg, ...)                                                \
	do {                                                                 \
		if (log_level >= (lvl))                                      \
			log__write((lvl), (msg), __VA_ARGS__);               \
	} while (0)
/* Lead changes. Every writer of leads (poller, postbacks, timers) logs
 * one debug line per lead it changed, once its transaction committed:
 *   msg="lead changed" lead=901 offer=10 source=poll run=812 from=2 to=6
 * source is lead_history's (poll, dates, postback, timer); the source's
 * row follows as run= (poll_runs: poll, dates) or postback= (postbacks_in),
 * and not at all for a timer; from and to are the status (from=0: a new
 * lead). struct log_lead's run holds that row's id. Writers collect them only when log_leads_on(), so a daemon
 * at info level formats nothing. */
struct log_lead {
	int64_t lead, offer, run;
	int from, to;
};

#define log_leads_on() (log_level >= LOG_DEBUG)

void log_lead_changes(const char *source, const struct log_lead *v, size_t n);

#define log_error(msg, ...) log_at(LOG_ERROR, msg, __VA_ARGS__)
#define log_warn(msg, ...) log_at(LOG_WARN, msg, __VA_ARGS__)
#define log_info(msg, ...) log_at(LOG_INFO, msg, __VA_ARGS__)
#define log_debug(msg, ...) log_at(LOG_DEBUG, msg, __VA_ARGS__)

#endif
