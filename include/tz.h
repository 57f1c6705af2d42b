/* tz: civil time in IANA time zones ("Europe/Moscow"), read from the
 * system's TZif files (RFC 8536) under TZ_DIR, without touching the
 * process's TZ variable.
 *
 * Why not setenv("TZ") + mktime: setenv races with getenv in other threads
 * (libpq and curl read the environment), and glibc re-reads the zone file
 * whenever TZ changes, which a poller switching zones per offer would do on
 * every call.
 *
 * Zone names: NULL, "" and "UTC" mean UTC and need no file. Any other name
 * must be safe (tz_valid) and name a TZif file; zones counting leap seconds
 * ("right/...") are refused. A loaded zone is cached for the life of the
 * process (at most TZ_CACHE_MAX zones; past that a zone is loaded per call),
 * so after the first use of a zone the functions do no I/O. All functions
 * are thread-safe; tz_cache_free() is for shutdown and tests only, when no
 * other thread uses this module.
 *
 * Times past the zone's last transition follow the file's POSIX TZ footer
 * ("EST5EDT,M3.2.0,M11.1.0"); times before its first transition use its
 * first local time type.
 *
 * Errors: -1 with a message in err ("unknown time zone 'Mars/Base'"). */
#ifndef LEADSYNC_TZ_H
#define LEADSYNC_TZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#ifndef TZ_DIR
#define TZ_DIR "/usr/share/zoneinfo"
#endif
#define TZ_NAME_MAX 255
#define TZ_CACHE_MAX 128

/* True when zone is NULL, "", "UTC", or a safe name (at most TZ_NAME_MAX
 * bytes of [A-Za-z0-9_+-/], no "..", not starting with '/') that names a
 * loadable TZif file under TZ_DIR ("Europe" is a folder: false). Loads and
 * caches the zone. */
bool tz_valid(const char *zone);

/* Local civil time in zone → UNIX time in *out. Fields are checked
 * (month 1-12, a day that exists, hour 0-23, minute and second 0-59).
 *   gap (the clock jumps forward over the time, e.g. 02:30 on 2026-03-08 in
 *     America/New_York): the time is read with the offset in force before
 *     the jump, so it lands as far past the jump as it is past the gap's
 *     start (02:30 EST = 03:30 EDT = 07:30 UTC); a midnight that does not
 *     exist gives the first instant of that day.
 *   overlap (the clock falls back, e.g. 01:30 on 2026-11-01): the earlier
 *     instant (01:30 EDT = 05:30 UTC).
 * Assumes at most one transition within 36 hours of the time, true of
 * every zone since 1900. */
__attribute__((warn_unused_result))
int tz_local_to_utc(const char *zone, int y, int mo, int d, int h, int mi, int s, int64_t *out,
		    char *err, size_t errlen);

/* UNIX time → local civil time in zone. Fills every field of *out the way
 * localtime_r does (tm_wday, tm_yday, tm_isdst, tm_gmtoff = the UTC offset
 * in seconds); tm_zone is set to "" (abbreviations are not kept). */
__attribute__((warn_unused_result))
int tz_utc_to_local(const char *zone, int64_t t, struct tm *out, char *err, size_t errlen);

/* Days since 1970-01-01 of a proleptic Gregorian date, and back. Pure
 * arithmetic: tz_days_from_civil does not check the date (2026-02-30 is
 * 2026-03-02); tz_date_valid does. */
int64_t tz_days_from_civil(int64_t y, int m, int d);
void tz_civil_from_days(int64_t days, int64_t *y, int *m, int *d);
bool tz_date_valid(int64_t y, int m, int d);

/* Frees every cached zone. Not thread-safe with concurrent use. */
void tz_cache_free(void);

#endif
