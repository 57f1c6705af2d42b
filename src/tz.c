/* tz: civil time in IANA zones through the C library's own reading of the
 * zone files (TZ set, tzset, localtime_r), for the offline `rule test`. */
#include "tz.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Candidate UTC times for a local time lie within the largest offset ever
 * used (under 26 h) of it; sampling 36 h either side catches both. */
#define TZ_WINDOW (36 * 3600)

/* Held while TZ is set and read: the environment is process-wide. */
static pthread_mutex_t tz_lock = PTHREAD_MUTEX_INITIALIZER;
static bool tz_changed;  /* TZ was set here; tz_saved is what it was */
static char *tz_saved;

static int64_t tz_floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;

	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Howard Hinnant's days_from_civil / civil_from_days. */
int64_t tz_days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = tz_floor_div(y, 400);
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

void tz_civil_from_days(int64_t days, int64_t *y, int *m, int *d)
{
	int64_t z = days + 719468, era, doe, yoe, doy, mp;

	era = tz_floor_div(z, 146097);
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

static bool tz_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int tz_month_days(int64_t y, int m)
{
	static const int md[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	return m == 2 && tz_leap(y) ? 29 : md[m - 1];
}

bool tz_date_valid(int64_t y, int m, int d)
{
	return y >= -9999999 && y <= 9999999 && m >= 1 && m <= 12 && d >= 1 &&
	       d <= tz_month_days(y, m);
}

static bool tz_is_utc(const char *zone)
{
	return !zone || !*zone || strcmp(zone, "UTC") == 0;
}

static bool tz_name_safe(const char *zone)
{
	size_t i, n = strlen(zone);

	if (n == 0 || n > TZ_NAME_MAX || zone[0] == '/' || strstr(zone, ".."))
		return false;
	for (i = 0; i < n; i++) {
		char c = zone[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '+' || c == '-' || c == '/'))
			return false;
	}
	return true;
}

/* The C library takes an unknown zone for UTC without a word, so the name
 * is checked first: safe, a regular file under TZ_DIR, TZif inside. */
static int tz_check(const char *zone, char *err, size_t errlen)
{
	char path[sizeof(TZ_DIR) + TZ_NAME_MAX + 2], magic[4];
	struct stat st;
	int fd, rc = -1;

	if (!tz_name_safe(zone) || strncmp(zone, "right/", 6) == 0) {
		snprintf(err, errlen, "time zone '%s': not a valid zone name", zone);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s", TZ_DIR, zone);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		snprintf(err, errlen, "unknown time zone '%s'", zone);
	else if (read(fd, magic, 4) != 4 || memcmp(magic, "TZif", 4) != 0)
		snprintf(err, errlen, "time zone '%s': not a TZif file", zone);
	else
		rc = 0;
	if (fd >= 0)
		close(fd);
	return rc;
}

bool tz_valid(const char *zone)
{
	char err[8];

	return tz_is_utc(zone) || tz_check(zone, err, sizeof(err)) == 0;
}

/* Makes zone the C library's zone (tz_lock held). TZ is left set: the next
 * call for the same zone costs no reading of its file. */
static void tz_use(const char *zone)
{
	const char *cur = getenv("TZ");
	char val[TZ_NAME_MAX + 2];

	snprintf(val, sizeof(val), ":%s", zone);
	if (!cur || strcmp(cur, val) != 0) {
		if (!tz_changed) {
			tz_saved = cur ? strdup(cur) : NULL;
			tz_changed = true;
		}
		setenv("TZ", val, 1);
	}
	tzset();
}

void tz_restore(void)
{
	pthread_mutex_lock(&tz_lock);
	if (tz_changed) {
		if (tz_saved)
			setenv("TZ", tz_saved, 1);
		else
			unsetenv("TZ");
		tzset();
		free(tz_saved);
		tz_saved = NULL;
		tz_changed = false;
	}
	pthread_mutex_unlock(&tz_lock);
}

/* The UTC offset in force at t (tz_lock held, tz_use done). */
static long tz_off(int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	return localtime_r(&tt, &tm) ? tm.tm_gmtoff : 0;
}

int tz_local_to_utc(const char *zone, int y, int mo, int d, int h, int mi, int s, int64_t *out,
		    char *err, size_t errlen)
{
	int64_t u, ta, tb;
	long early, late;
	bool va, vb;

	if (!tz_date_valid(y, mo, d) || h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 || s > 59) {
		snprintf(err, errlen, "bad local time %04d-%02d-%02d %02d:%02d:%02d", y, mo, d, h,
			 mi, s);
		return -1;
	}
	u = tz_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
	if (tz_is_utc(zone)) {
		*out = u;
		return 0;
	}
	if (tz_check(zone, err, errlen) < 0)
		return -1;
	pthread_mutex_lock(&tz_lock);
	tz_use(zone);
	early = tz_off(u - TZ_WINDOW);
	late = tz_off(u + TZ_WINDOW);
	ta = u - early;
	tb = u - late;
	va = tz_off(ta) == early;
	vb = tz_off(tb) == late;
	pthread_mutex_unlock(&tz_lock);
	if (va && vb)
		*out = ta < tb ? ta : tb; /* overlap: the earlier instant */
	else if (vb)
		*out = tb;
	else
		*out = ta; /* normal, or a gap: the offset before the jump */
	return 0;
}

int tz_utc_to_local(const char *zone, int64_t t, struct tm *out, char *err, size_t errlen)
{
	time_t tt = (time_t)t;
	struct tm *r;

	if (!tz_is_utc(zone) && tz_check(zone, err, errlen) < 0)
		return -1;
	if ((int64_t)tt != t) {
		snprintf(err, errlen, "time %lld out of range", (long long)t);
		return -1;
	}
	if (tz_is_utc(zone)) {
		r = gmtime_r(&tt, out);
	} else {
		pthread_mutex_lock(&tz_lock);
		tz_use(zone);
		r = localtime_r(&tt, out);
		pthread_mutex_unlock(&tz_lock);
	}
	if (!r) {
		snprintf(err, errlen, "time %lld out of range", (long long)t);
		return -1;
	}
	out->tm_zone = ""; /* the library's abbreviation lives only until TZ changes */
	return 0;
}
