/* test_tz: time zone conversions, checked by hand-worked instants and
 * against glibc's own reading of the same zone files. */
#include "test.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "tz.h"

/* 2026-03-08 00:00:00 UTC: the day America/New_York springs forward. */
#define T_20260308 1772928000LL
/* 2026-11-01 00:00:00 UTC: the day it falls back. */
#define T_20261101 1793491200LL

TEST(tz_civil_days_round_trip)
{
	int64_t y, d0;
	int m, d;

	ASSERT_EQ(tz_days_from_civil(1970, 1, 1), 0);
	ASSERT_EQ(tz_days_from_civil(2026, 3, 8) * 86400, T_20260308);
	ASSERT_EQ(tz_days_from_civil(1969, 12, 31), -1);
	ASSERT_EQ(tz_days_from_civil(2028, 3, 1) - tz_days_from_civil(2028, 2, 28), 2);
	ASSERT_EQ(tz_days_from_civil(2100, 3, 1) - tz_days_from_civil(2100, 2, 28), 1);
	for (d0 = -800000; d0 < 800000; d0 += 997) {
		tz_civil_from_days(d0, &y, &m, &d);
		ASSERT_EQ(tz_days_from_civil(y, m, d), d0);
		ASSERT(tz_date_valid(y, m, d));
	}
	ASSERT(tz_date_valid(2028, 2, 29));
	ASSERT(!tz_date_valid(2026, 2, 29));
	ASSERT(!tz_date_valid(2100, 2, 29));
	ASSERT(tz_date_valid(2000, 2, 29));
	ASSERT(!tz_date_valid(2026, 4, 31));
	ASSERT(!tz_date_valid(2026, 13, 1));
	ASSERT(!tz_date_valid(2026, 0, 1));
	ASSERT(!tz_date_valid(2026, 1, 0));
}

TEST(tz_utc_names)
{
	char err[128];
	int64_t t;
	struct tm tm;

	ASSERT(tz_valid(NULL));
	ASSERT(tz_valid(""));
	ASSERT(tz_valid("UTC"));
	ASSERT_EQ(tz_local_to_utc(NULL, 2026, 3, 8, 0, 0, 0, &t, err, sizeof(err)), 0);
	ASSERT_EQ(t, T_20260308);
	ASSERT_EQ(tz_local_to_utc("", 2026, 3, 8, 1, 2, 3, &t, err, sizeof(err)), 0);
	ASSERT_EQ(t, T_20260308 + 3723);
	ASSERT_EQ(tz_local_to_utc("Etc/UTC", 2026, 3, 8, 0, 0, 0, &t, err, sizeof(err)), 0);
	ASSERT_EQ(t, T_20260308);
	ASSERT_EQ(tz_utc_to_local("UTC", T_20260308 - 1, &tm, err, sizeof(err)), 0);
	ASSERT_EQ(tm.tm_year, 126);
	ASSERT_EQ(tm.tm_mon, 2);
	ASSERT_EQ(tm.tm_mday, 7);
	ASSERT_EQ(tm.tm_hour, 23);
	ASSERT_EQ(tm.tm_min, 59);
	ASSERT_EQ(tm.tm_sec, 59);
	ASSERT_EQ(tm.tm_wday, 6); /* a Saturday */
	ASSERT_EQ(tm.tm_yday, 65);
	ASSERT_EQ(tm.tm_gmtoff, 0);
	tz_restore();
}

TEST(tz_valid_refuses_unsafe_names)
{
	ASSERT(!tz_valid("../etc/passwd"));
	ASSERT(!tz_valid("Europe/../../../etc/passwd"));
	ASSERT(!tz_valid("/etc/passwd"));
	ASSERT(!tz_valid("/usr/share/zoneinfo/Europe/Moscow"));
	ASSERT(!tz_valid("Europe/Moscow "));
	ASSERT(!tz_valid("Europe/Moscow\n"));
	ASSERT(!tz_valid("zone.tab"));
	ASSERT(!tz_valid("leapseconds")); /* a text file, not TZif */
	ASSERT(!tz_valid("Europe"));      /* a folder */
	ASSERT(!tz_valid("Mars/Base"));
	ASSERT(!tz_valid("right/UTC")); /* counts leap seconds */
	ASSERT(tz_valid("Europe/Moscow"));
	ASSERT(tz_valid("America/New_York"));
	ASSERT(tz_valid("Etc/GMT+3"));
	ASSERT(tz_valid("America/Port-au-Prince"));
	tz_restore();
}

TEST(tz_errors_name_the_zone)
{
	char err[128];
	int64_t t = 42;
	struct tm tm;

	ASSERT_EQ(tz_local_to_utc("Mars/Base", 2026, 1, 1, 0, 0, 0, &t, err, sizeof(err)), -1);
	ASSERT_STREQ(err, "unknown time zone 'Mars/Base'");
	ASSERT_EQ(t, 42);
	ASSERT_EQ(tz_utc_to_local("../etc/passwd", 0, &tm, err, sizeof(err)), -1);
	ASSERT_STREQ(err, "time zone '../etc/passwd': not a valid zone name");
	ASSERT_EQ(tz_utc_to_local("leapseconds", 0, &tm, err, sizeof(err)), -1);
	ASSERT_STREQ(err, "time zone 'leapseconds': not a TZif file");
	ASSERT_EQ(tz_local_to_utc("UTC", 2026, 2, 29, 0, 0, 0, &t, err, sizeof(err)), -1);
	ASSERT_STREQ(err, "bad local time 2026-02-29 00:00:00");
	ASSERT_EQ(tz_local_to_utc("UTC", 2026, 2, 1, 24, 0, 0, &t, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "bad local time");
	tz_restore();
}

TEST(tz_moscow_is_plus_three)
{
	char err[128];
	int64_t t;
	struct tm tm;

	ASSERT_EQ(tz_local_to_utc("Europe/Moscow", 2026, 3, 8, 0, 0, 0, &t, err, sizeof(err)), 0);
	ASSERT_EQ(t, T_20260308 - 3 * 3600);
	/* summer and winter alike since 2014 */
	ASSERT_EQ(tz_local_to_utc("Europe/Moscow", 2026, 7, 1, 12, 0, 0, &t, err, sizeof(err)), 0);
	ASSERT_EQ(t, tz_days_from_civil(2026, 7, 1) * 86400 + 9 * 3600);
	ASSERT_EQ(tz_utc_to_local("Europe/Moscow", T_20260308 - 3 * 3600, &tm, err, sizeof(err)),
		  0);
	ASSERT_EQ(tm.tm_mday, 8);
	ASSERT_EQ(tm.tm_hour, 0);
	ASSERT_EQ(tm.tm_gmtoff, 3 * 3600);
	ASSERT_EQ(tm.tm_isdst, 0);
	/* 2010 still had summer time (+4) */
	ASSERT_EQ(tz_local_to_utc("Europe/Moscow", 2010, 7, 1, 12, 0, 0, &t, err, sizeof(err)), 0);
	ASSERT_EQ(t, tz_days_from_civil(2010, 7, 1) * 86400 + 8 * 3600);
	tz_restore();
}

TEST(tz_new_york_spring_gap)
{
	const char *ny = "America/New_York";
	char err[128];
	int64_t t;
	struct tm tm;

	/* 00:00 EST, 01:59:59 EST, then 03:00 EDT */
	ASSERT_EQ(tz_local_to_utc(ny, 2026, 3, 8, 0, 0, 0, &t, err, sizeof(err)), 0);
	ASSERT_EQ(t, T_20260308 + 5 * 3600);
	ASSERT_EQ(tz_local_to_utc(ny, 2026, 3, 8, 1, 59, 59, &t, err, sizeof(err)), 0);
	ASSERT_EQ(t, T_20260308 + 7 * 3600 - 1);
	ASSERT_EQ(tz_local_to_utc(ny, 2026, 3, 8, 3, 0, 0, &t, err, sizeof(err)), 0);
	ASSERT_EQ(t, T_20260308 + 7 * 3600);
	/* 02:30 does not exist: read as EST, i.e. 03:30 EDT */
	ASSERT_EQ(tz_local_to_utc(ny, 2026, 3, 8, 2, 30, 0, &t, err, sizeof(err)), 0);
	ASSERT_EQ(t, T_20260308 + 7 * 3600 + 1800);
	ASSERT_EQ(tz_local_to_utc(ny, 2026, 3, 8, 23, 59, 59, &t, err, sizeof(err)), 0);
	ASSERT_EQ(t, T_20260308 + 86400 + 4 * 3600 - 1);
	ASSERT_EQ(tz_utc_to_local(ny, T_20260308 + 7 * 3600 - 1, &tm, err, sizeof(err)), 0);
	ASSERT_EQ(tm.tm_hour, 1);
	ASSERT_EQ(tm.tm_isdst, 0);
	ASSERT_EQ(tm.tm_gmtoff, -5 * 3600);
	ASSERT_EQ(tz_utc_to_local(ny, T_20260308 + 7 * 3600, &tm, err, sizeof(err)), 0);
	ASSERT_EQ(tm.tm_hour, 3);
	ASSERT_EQ(tm.tm_isdst, 1);
	ASSERT_EQ(tm.tm_gmtoff, -4 * 3600);
	tz_restore();
}

TEST(tz_new_york_autumn_overlap)
{
	const char *ny = "America/New_York";
	char err[128];
	int64_t t;
	struct tm tm;

	ASSERT_EQ(tz_local_to_utc(ny, 2026, 11, 1, 0, 0, 0, &t, err, sizeof(err)), 0);
	ASSERT_EQ(t, T_20261101 + 4 * 3600);
	/* 01:30 happens twice: the earlier one, EDT */
	ASSERT_EQ(tz_local_to_utc(ny, 2026, 11, 1, 1, 30, 0, &t, err, sizeof(err)), 0);
	ASSERT_EQ(t, T_20261101 + 5 * 3600 + 1800);
	ASSERT_EQ(tz_local_to_utc(ny, 2026, 11, 1, 2, 0, 0, &t, err, sizeof(err)), 0);
	ASSERT_EQ(t, T_20261101 + 7 * 3600);
	ASSERT_EQ(tz_local_to_utc(ny, 2026, 11, 2, 0, 0, 0, &t, err, sizeof(err)), 0);
	ASSERT_EQ(t, T_20261101 + 86400 + 5 * 3600);
	/* the second 01:30 reads back as 01:30 EST */
	ASSERT_EQ(tz_utc_to_local(ny, T_20261101 + 6 * 3600 + 1800, &tm, err, sizeof(err)), 0);
	ASSERT_EQ(tm.tm_hour, 1);
	ASSERT_EQ(tm.tm_min, 30);
	ASSERT_EQ(tm.tm_isdst, 0);
	/* far past the file's last transition, the footer rule applies */
	ASSERT_EQ(tz_local_to_utc(ny, 2090, 7, 1, 0, 0, 0, &t, err, sizeof(err)), 0);
	ASSERT_EQ(t, tz_days_from_civil(2090, 7, 1) * 86400 + 4 * 3600);
	ASSERT_EQ(tz_local_to_utc(ny, 2090, 12, 1, 0, 0, 0, &t, err, sizeof(err)), 0);
	ASSERT_EQ(t, tz_days_from_civil(2090, 12, 1) * 86400 + 5 * 3600);
	tz_restore();
}

/* Sets TZ for glibc; returns the previous value (malloc'd or NULL). */
static char *tz_test_set_env(const char *zone)
{
	const char *old = getenv("TZ");
	char *saved = old ? strdup(old) : NULL;
	char val[300];

	snprintf(val, sizeof(val), ":%s", zone);
	setenv("TZ", val, 1);
	tzset();
	return saved;
}

static void tz_test_restore_env(char *saved)
{
	if (saved)
		setenv("TZ", saved, 1);
	else
		unsetenv("TZ");
	tzset();
	free(saved);
}

/* Compares one instant with glibc (TZ already set to zone); on a mismatch
 * writes it to why and returns false. */
static bool tz_test_same_as_glibc(const char *zone, int64_t t, char *why, size_t whylen)
{
	time_t tt = (time_t)t;
	struct tm g, m, mb;
	char err[128] = "";
	int64_t back;

	if (!localtime_r(&tt, &g) || tz_utc_to_local(zone, t, &m, err, sizeof(err))) {
		snprintf(why, whylen, "%s at %lld: %s", zone, (long long)t, err);
		return false;
	}
	if (g.tm_year != m.tm_year || g.tm_yday != m.tm_yday || g.tm_mon != m.tm_mon ||
	    g.tm_mday != m.tm_mday || g.tm_hour != m.tm_hour || g.tm_min != m.tm_min ||
	    g.tm_sec != m.tm_sec || g.tm_wday != m.tm_wday || g.tm_gmtoff != m.tm_gmtoff ||
	    (g.tm_isdst > 0) != (m.tm_isdst > 0)) {
		snprintf(why, whylen,
			 "%s at %lld: glibc %04d-%02d-%02d %02d:%02d:%02d %+ld, "
			 "ours %04d-%02d-%02d %02d:%02d:%02d %+ld",
			 zone, (long long)t, g.tm_year + 1900, g.tm_mon + 1, g.tm_mday, g.tm_hour,
			 g.tm_min, g.tm_sec, g.tm_gmtoff, m.tm_year + 1900, m.tm_mon + 1, m.tm_mday,
			 m.tm_hour, m.tm_min, m.tm_sec, m.tm_gmtoff);
		return false;
	}
	/* back to UTC: t itself, or in an overlap the earlier instant that
	 * shows the same wall clock */
	if (tz_local_to_utc(zone, m.tm_year + 1900, m.tm_mon + 1, m.tm_mday, m.tm_hour, m.tm_min,
			    m.tm_sec, &back, err, sizeof(err)) ||
	    (back != t && (back > t || tz_utc_to_local(zone, back, &mb, err, sizeof(err)) ||
			   back + mb.tm_gmtoff != t + m.tm_gmtoff))) {
		snprintf(why, whylen, "%s at %lld: back %lld %s", zone, (long long)t,
			 (long long)back, err);
		return false;
	}
	return true;
}

/* Every conversion agrees with glibc's localtime_r over 1900-2100, across
 * both hemispheres, half-hour and 45-minute offsets, transitions at
 * midnight and at 24:00, and the footer rules past 2037; local → UTC
 * round-trips. */
TEST(tz_agrees_with_glibc)
{
	static const char *const zones[] = {
		"America/New_York", "Europe/Moscow",     "Australia/Sydney", "Pacific/Chatham",
		"America/Santiago", "America/Havana",    "Asia/Kolkata",     "Europe/London",
		"Asia/Tehran",      "Africa/Casablanca", "Pacific/Apia",     "America/Sao_Paulo",
	};
	char why[256] = "";
	size_t i, checked = 0;
	bool ok = true;

	for (i = 0; i < sizeof(zones) / sizeof(zones[0]) && ok; i++) {
		char *saved = tz_test_set_env(zones[i]);
		int64_t t;

		for (t = -2208988800LL; t < 4102444800LL && ok; t += 7 * 86400 + 3607) {
			ok = tz_test_same_as_glibc(zones[i], t, why, sizeof(why));
			checked++;
		}
		tz_test_restore_env(saved);
	}
	tz_restore();
	if (!ok)
		test__fail(__FILE__, __LINE__, "%s", why);
	ASSERT(ok);
	ASSERT_EQ(checked, 12 * 10374);
}

/* Every zone of zone.tab is valid and converts, twice over (the second
 * round switching TZ back to zones it has read before). */
TEST(tz_all_zones_convert)
{
	FILE *f = fopen(TZ_DIR "/zone.tab", "r");
	char line[512], err[128] = "", bad[300] = "";
	size_t nzones = 0, nbad = 0, round;
	struct tm tm;

	ASSERT(f != NULL);
	for (round = 0; round < 2; round++) {
		rewind(f);
		while (fgets(line, sizeof(line), f)) {
			char *zone;

			if (line[0] == '#')
				continue;
			zone = strtok(line, "\t\n");
			zone = zone ? strtok(NULL, "\t\n") : NULL;
			zone = zone ? strtok(NULL, "\t\n") : NULL;
			if (!zone)
				continue;
			nzones++;
			if (!tz_valid(zone) ||
			    tz_utc_to_local(zone, 1772928000, &tm, err, sizeof(err)) < 0 ||
			    tm.tm_gmtoff < -12 * 3600 || tm.tm_gmtoff > 14 * 3600) {
				nbad++;
				snprintf(bad, sizeof(bad), "%s: %s", zone, err);
			}
		}
	}
	fclose(f);
	tz_restore();
	if (nbad)
		test__fail(__FILE__, __LINE__, "%zu zones fail, e.g. %s", nbad, bad);
	ASSERT_EQ(nbad, 0);
	ASSERT(nzones > 2 * 300);
}

struct tz_test_thread {
	int64_t sum;
	int failed;
};

static void *tz_test_worker(void *arg)
{
	static const char *const zones[] = { "America/New_York", "Europe/Moscow", "Asia/Tokyo",
					     "Australia/Sydney", "UTC" };
	struct tz_test_thread *w = arg;
	char err[128];
	int i;

	for (i = 0; i < 2000; i++) {
		const char *zone = zones[i % 5];
		int64_t t;

		if (tz_local_to_utc(zone, 2026, 1 + i % 12, 1 + i % 28, i % 24, 0, 0, &t, err,
				    sizeof(err)) < 0)
			w->failed++;
		else
			w->sum += t;
	}
	return NULL;
}

/* Threads converting in several zones at once all get the same answers
 * (the lock around TZ). */
TEST(tz_threads_get_the_same_answers)
{
	struct tz_test_thread w[4];
	pthread_t th[4];
	int i;

	tz_restore();
	memset(w, 0, sizeof(w));
	for (i = 0; i < 4; i++)
		ASSERT_EQ(pthread_create(&th[i], NULL, tz_test_worker, &w[i]), 0);
	for (i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	tz_restore();
	for (i = 0; i < 4; i++) {
		ASSERT_EQ(w[i].failed, 0);
		ASSERT_EQ(w[i].sum, w[0].sum);
	}
	ASSERT(w[0].sum != 0);
}
