/* tz: civil time in IANA time zones ("Europe/Moscow") for the offline
 * `rule test` (and the pure day arithmetic everyone uses). The daemon
 * does not convert times itself: PostgreSQL decides every zone rule
 * (the dates variant's days and their UTC bounds, poll_store.c), and zone
 * names are checked against its pg_timezone_names (store_zone_known).
 *
 * The conversions are the C library's own (TZ=":zone", tzset, localtime_r):
 * rule test is a one-shot, single-threaded process, so setting TZ races with
 * nobody. The calls still hold a lock (TZ is process-wide), and TZ stays
 * set to the last zone used until tz_restore(); do not call them from a
 * process whose other threads read the environment (libpq, curl). What is
 * ours and why it stays: the name check (glibc takes an unknown zone for
 * UTC without a word) and the choice of instant in a gap or an overlap
 * (mktime leaves it to tm_isdst guesses), a few lines on top of
 * localtime_r.
 *
 * Zone names: NULL, "" and "UTC" mean UTC and need no file. Any other name
 * must be safe (tz_valid) and name a TZif file; zones counting leap seconds
 * ("right/...") are refused.
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

/* True when zone is NULL, "", "UTC", or a safe name (at most TZ_NAME_MAX
 * bytes of [A-Za-z0-9_+-/], no "..", not starting with '/', not right/)
 * that names a TZif file under TZ_DIR ("Europe" is a folder: false). */
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

/* Gives TZ back the value it had before the first conversion changed it
 * (for tests, which share one process). */
void tz_restore(void);

#endif
