/* config: `leadsync config check`, the checks an operator runs before
 * (re)starting the daemon: the settings as `leadsync run` reads them, with
 * secrets masked, then what `run` needs to start and to poll, checked
 * without starting anything and without writing anything:
 *   - the rules folder can be read (LEADSYNC_RULES);
 *   - the database answers (LEADSYNC_DB, within 5 s unless PGCONNECT_TIMEOUT
 *     says otherwise, as at `run`'s start) and holds every migration;
 *   - the default time zone is known to PostgreSQL (LEADSYNC_TZ;
 *     pg_timezone_names, which decides every zone rule the daemon uses);
 *   - every enabled offer with a rule names a time zone so known, and
 *     its rule file loads under the daemon's limits (each rule loaded once,
 *     the offers that use it named).
 * The listener's address is not bound: a running daemon holds it.
 *
 * Ownership: the report is appended to the caller's buffer; nothing else
 * is kept. */
#ifndef LEADSYNC_CONFIG_H
#define LEADSYNC_CONFIG_H

#include <stddef.h>

#include "buf.h"
#include "settings.h"

/* Appends to out the effective settings (one line each: variable, value,
 * where it came from; secrets masked) and one "ok ..." line per check
 * passed. Returns 0 when every check passed, -1 at the first that failed,
 * with what failed and what to do in err (out then holds the checks that
 * passed before it). */
__attribute__((warn_unused_result))
int config_check(const struct settings *s, struct buf *out, char *err, size_t errlen);

/* Appends the settings part of the report alone (no database, no files). */
__attribute__((warn_unused_result))
int config_describe(const struct settings *s, struct buf *out);

#endif
