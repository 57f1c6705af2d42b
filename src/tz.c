/* tz: IANA time zones from TZif files (RFC 8536), cached, thread-safe. */
#include "tz.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TZ_FILE_MAX ((size_t)256 << 10)
/* Candidate UTC times for a local time lie within the largest offset ever
 * used (under 26 h) of it; sampling 36 h either side catches both. */
#define TZ_WINDOW (36 * 3600)

/* A date of a POSIX TZ rule: Jn (1-365, no Feb 29), n (0-365), Mm.w.d. */
struct tz_rule_date {
	char kind; /* 'J', 'N' or 'M' */
	int n, m, w, d;
	int32_t time; /* local seconds after 00:00 of that day; may be < 0 */
};

/* The footer "STD offset [DST [offset] ,start[/time],end[/time]]",
 * offsets stored east-positive (the opposite sign of POSIX). */
struct tz_posix {
	int32_t std_off, dst_off;
	bool has_dst;
	struct tz_rule_date start, end;
};

struct tz_type {
	int32_t utoff;
	bool isdst;
};

struct tz_zone {
	char *name;
	size_t ntrans, ntypes;
	int64_t *trans;  /* ascending */
	uint8_t *idx;    /* type of each transition */
	struct tz_type *types;
	bool has_footer; /* a non-empty footer */
	struct tz_posix footer;
	struct tz_zone *next;
};

static pthread_mutex_t tz_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tz_zone *tz_cache;
static size_t tz_ncached;

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

static void tz_zone_free(struct tz_zone *z)
{
	if (!z)
		return;
	free(z->name);
	free(z->trans);
	free(z->idx);
	free(z->types);
	free(z);
}

/* --- POSIX TZ strings (the TZif footer) --- */

static bool tz_p_char(const char **s, char c)
{
	if (**s != c)
		return false;
	(*s)++;
	return true;
}

static bool tz_p_digits(const char **s, int max_digits, int *v)
{
	int n = 0, k = 0;

	while (**s >= '0' && **s <= '9' && k < max_digits) {
		n = n * 10 + (**s - '0');
		(*s)++;
		k++;
	}
	*v = n;
	return k > 0;
}

/* [+-]hh[:mm[:ss]], hours up to max_h; seconds west or east as written. */
static bool tz_p_time(const char **s, int max_h, int32_t *out)
{
	int sign = 1, h, m = 0, sec = 0;

	if (tz_p_char(s, '-'))
		sign = -1;
	else
		(void)tz_p_char(s, '+');
	if (!tz_p_digits(s, 3, &h) || h > max_h)
		return false;
	if (tz_p_char(s, ':')) {
		if (!tz_p_digits(s, 2, &m) || m > 59)
			return false;
		if (tz_p_char(s, ':') && (!tz_p_digits(s, 2, &sec) || sec > 59))
			return false;
	}
	*out = sign * (h * 3600 + m * 60 + sec);
	return true;
}

static bool tz_p_name(const char **s)
{
	const char *p = *s;

	if (*p == '<') {
		p++;
		while (*p && *p != '>')
			p++;
		if (*p != '>' || p - *s < 4)
			return false;
		*s = p + 1;
		return true;
	}
	while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
		p++;
	if (p - *s < 3)
		return false;
	*s = p;
	return true;
}

static bool tz_p_rule_date(const char **s, struct tz_rule_date *r)
{
	memset(r, 0, sizeof(*r));
	if (tz_p_char(s, 'J')) {
		r->kind = 'J';
		if (!tz_p_digits(s, 3, &r->n) || r->n < 1 || r->n > 365)
			return false;
	} else if (tz_p_char(s, 'M')) {
		r->kind = 'M';
		if (!tz_p_digits(s, 2, &r->m) || r->m < 1 || r->m > 12 || !tz_p_char(s, '.') ||
		    !tz_p_digits(s, 1, &r->w) || r->w < 1 || r->w > 5 || !tz_p_char(s, '.') ||
		    !tz_p_digits(s, 1, &r->d) || r->d > 6)
			return false;
	} else {
		r->kind = 'N';
		if (!tz_p_digits(s, 3, &r->n) || r->n > 365)
			return false;
	}
	r->time = 2 * 3600;
	return !tz_p_char(s, '/') || tz_p_time(s, 167, &r->time);
}

/* Parses a non-empty footer; false when it is malformed. */
static bool tz_posix_parse(const char *s, struct tz_posix *p)
{
	int32_t off;

	memset(p, 0, sizeof(*p));
	if (!tz_p_name(&s) || !tz_p_time(&s, 24, &off))
		return false;
	p->std_off = -off;
	if (!*s)
		return true;
	if (!tz_p_name(&s))
		return false;
	p->has_dst = true;
	p->dst_off = p->std_off + 3600;
	if (*s != ',') {
		if (!tz_p_time(&s, 24, &off))
			return false;
		p->dst_off = -off;
	}
	/* A DST name without rules leaves the dates to the implementation;
	 * zic always writes them, so such a footer is refused. */
	return tz_p_char(&s, ',') && tz_p_rule_date(&s, &p->start) && tz_p_char(&s, ',') &&
	       tz_p_rule_date(&s, &p->end) && !*s;
}

/* Seconds from 1970-01-01 00:00 to the rule's moment in year y, in the
 * local time the rule is written in. */
static int64_t tz_rule_local(int64_t y, const struct tz_rule_date *r)
{
	int64_t jan1 = tz_days_from_civil(y, 1, 1), day;

	if (r->kind == 'J')
		day = jan1 + r->n - 1 + (tz_leap(y) && r->n >= 60);
	else if (r->kind == 'N')
		day = jan1 + r->n;
	else {
		int64_t first = tz_days_from_civil(y, r->m, 1);
		int wd1 = (int)(((first % 7) + 11) % 7); /* 1970-01-01 was a Thursday */
		int dom = 1 + (r->d - wd1 + 7) % 7 + (r->w - 1) * 7;

		while (dom > tz_month_days(y, r->m))
			dom -= 7;
		day = first + dom - 1;
	}
	return day * 86400 + r->time;
}

static struct tz_type tz_posix_at(const struct tz_posix *p, int64_t t)
{
	struct tz_type ty = { p->std_off, false };
	int64_t y, start, end;
	int m, d;
	bool dst;

	if (!p->has_dst)
		return ty;
	tz_civil_from_days(tz_floor_div(t + p->std_off, 86400), &y, &m, &d);
	start = tz_rule_local(y, &p->start) - p->std_off;
	end = tz_rule_local(y, &p->end) - p->dst_off;
	if (start < end)
		dst = t >= start && t < end;
	else
		dst = !(t >= end && t < start);
	if (dst) {
		ty.utoff = p->dst_off;
		ty.isdst = true;
	}
	return ty;
}

/* --- TZif files --- */

static uint32_t tz_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t tz_be64(const unsigned char *p)
{
	return (int64_t)((uint64_t)tz_be32(p) << 32 | tz_be32(p + 4));
}

struct tz_hdr {
	char version;
	uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
};

static bool tz_hdr_read(const unsigned char *p, size_t len, struct tz_hdr *h)
{
	if (len < 44 || memcmp(p, "TZif", 4) != 0)
		return false;
	h->version = (char)p[4];
	h->isutcnt = tz_be32(p + 20);
	h->isstdcnt = tz_be32(p + 24);
	h->leapcnt = tz_be32(p + 28);
	h->timecnt = tz_be32(p + 32);
	h->typecnt = tz_be32(p + 36);
	h->charcnt = tz_be32(p + 40);
	/* Caps from RFC 8536 keep the size arithmetic far from overflow. */
	return h->typecnt >= 1 && h->typecnt <= 256 && h->timecnt <= 100000 &&
	       h->leapcnt <= 100000 && h->charcnt <= 100000 &&
	       (h->isutcnt == 0 || h->isutcnt == h->typecnt) &&
	       (h->isstdcnt == 0 || h->isstdcnt == h->typecnt);
}

static size_t tz_block_len(const struct tz_hdr *h, size_t tsize)
{
	return h->timecnt * tsize + h->timecnt + h->typecnt * 6 + h->charcnt +
	       h->leapcnt * (tsize + 4) + h->isstdcnt + h->isutcnt;
}

/* Parses a TZif image into z. Returns NULL or a reason. */
static const char *tz_parse(const unsigned char *p, size_t len, struct tz_zone *z)
{
	struct tz_hdr h;
	size_t tsize = 4, blen, i;
	const unsigned char *b;

	if (!tz_hdr_read(p, len, &h))
		return "not a TZif file";
	blen = tz_block_len(&h, 4);
	if (len - 44 < blen)
		return "truncated TZif file";
	if (h.version >= '2') {
		p += 44 + blen;
		len -= 44 + blen;
		if (!tz_hdr_read(p, len, &h))
			return "bad second TZif header";
		tsize = 8;
		blen = tz_block_len(&h, 8);
		if (len - 44 < blen)
			return "truncated TZif file";
	}
	if (h.leapcnt)
		return "zone counts leap seconds (use the zone without 'right/')";
	b = p + 44;
	z->ntrans = h.timecnt;
	z->ntypes = h.typecnt;
	z->trans = malloc((h.timecnt ? h.timecnt : 1) * sizeof(*z->trans));
	z->idx = malloc(h.timecnt ? h.timecnt : 1);
	z->types = malloc(h.typecnt * sizeof(*z->types));
	if (!z->trans || !z->idx || !z->types)
		return "out of memory";
	for (i = 0; i < h.timecnt; i++) {
		z->trans[i] = tsize == 8 ? tz_be64(b + i * 8) : (int32_t)tz_be32(b + i * 4);
		if (i && z->trans[i] <= z->trans[i - 1])
			return "transitions out of order";
	}
	b += h.timecnt * tsize;
	for (i = 0; i < h.timecnt; i++) {
		z->idx[i] = b[i];
		if (b[i] >= h.typecnt)
			return "bad transition type";
	}
	b += h.timecnt;
	for (i = 0; i < h.typecnt; i++) {
		int32_t off = (int32_t)tz_be32(b + i * 6);

		if (off < -25 * 3600 || off > 26 * 3600)
			return "offset out of range";
		z->types[i].utoff = off;
		z->types[i].isdst = b[i * 6 + 4] != 0;
	}
	if (tsize == 8) {
		const unsigned char *f = p + 44 + blen, *nl;
		size_t flen = len - 44 - blen;
		char foot[128];

		if (flen < 2 || f[0] != '\n')
			return "missing TZif footer";
		nl = memchr(f + 1, '\n', flen - 1);
		if (!nl || (size_t)(nl - f - 1) >= sizeof(foot))
			return "bad TZif footer";
		memcpy(foot, f + 1, (size_t)(nl - f - 1));
		foot[nl - f - 1] = '\0';
		if (foot[0]) {
			if (!tz_posix_parse(foot, &z->footer))
				return "unsupported TZ rule in footer";
			z->has_footer = true;
		}
	}
	return NULL;
}

static struct tz_zone *tz_load(const char *zone, char *err, size_t errlen)
{
	char path[sizeof(TZ_DIR) + TZ_NAME_MAX + 2];
	unsigned char *data = NULL;
	struct tz_zone *z = NULL;
	const char *why;
	struct stat st;
	size_t got = 0;
	int fd = -1;

	if (!tz_name_safe(zone)) {
		snprintf(err, errlen, "time zone '%s': not a valid zone name", zone);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/%s", TZ_DIR, zone);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "unknown time zone '%s'", zone);
		goto out;
	}
	if ((size_t)st.st_size > TZ_FILE_MAX) {
		snprintf(err, errlen, "time zone '%s': file too large", zone);
		goto out;
	}
	data = malloc((size_t)st.st_size + 1);
	z = calloc(1, sizeof(*z));
	if (!data || !z || !(z->name = strdup(zone))) {
		snprintf(err, errlen, "time zone '%s': out of memory", zone);
		goto fail;
	}
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, data + got, (size_t)st.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			snprintf(err, errlen, "time zone '%s': cannot read %s", zone, path);
			goto fail;
		}
		got += (size_t)r;
	}
	why = tz_parse(data, got, z);
	if (why) {
		snprintf(err, errlen, "time zone '%s': %s", zone, why);
		goto fail;
	}
	goto out;
fail:
	tz_zone_free(z);
	z = NULL;
out:
	if (fd >= 0)
		close(fd);
	free(data);
	return z;
}

/* The zone named (never UTC), cached when there is room. *owned is set
 * when the caller must free the result with tz_zone_free. */
static const struct tz_zone *tz_get(const char *zone, bool *owned, char *err, size_t errlen)
{
	struct tz_zone *z, *loaded = NULL;

	*owned = false;
	pthread_mutex_lock(&tz_lock);
	for (z = tz_cache; z; z = z->next)
		if (strcmp(z->name, zone) == 0)
			break;
	pthread_mutex_unlock(&tz_lock);
	if (z)
		goto out;
	/* The file is read outside the lock; a second thread loading the same
	 * zone meanwhile wins and ours is dropped. */
	loaded = tz_load(zone, err, errlen);
	if (!loaded)
		goto out;
	pthread_mutex_lock(&tz_lock);
	for (z = tz_cache; z; z = z->next)
		if (strcmp(z->name, zone) == 0)
			break;
	if (!z && tz_ncached < TZ_CACHE_MAX) {
		loaded->next = tz_cache;
		tz_cache = loaded;
		tz_ncached++;
		z = loaded;
		loaded = NULL;
	}
	pthread_mutex_unlock(&tz_lock);
	if (!z) {
		z = loaded;
		loaded = NULL;
		*owned = true;
	}
out:
	tz_zone_free(loaded);
	return z;
}

static struct tz_type tz_zone_at(const struct tz_zone *z, int64_t t)
{
	size_t lo, hi;

	if (z->ntrans == 0)
		return z->has_footer ? tz_posix_at(&z->footer, t) : z->types[0];
	if (t < z->trans[0])
		return z->types[0];
	/* the last transition at or before t */
	lo = 0;
	hi = z->ntrans;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (z->trans[mid] <= t)
			lo = mid;
		else
			hi = mid;
	}
	if (lo == z->ntrans - 1 && z->has_footer)
		return tz_posix_at(&z->footer, t);
	return z->types[z->idx[lo]];
}

bool tz_valid(const char *zone)
{
	const struct tz_zone *z;
	char err[8];
	bool owned;

	if (tz_is_utc(zone))
		return true;
	z = tz_get(zone, &owned, err, sizeof(err));
	if (owned)
		tz_zone_free((struct tz_zone *)z);
	return z != NULL;
}

int tz_local_to_utc(const char *zone, int y, int mo, int d, int h, int mi, int s, int64_t *out,
		    char *err, size_t errlen)
{
	const struct tz_zone *z = NULL;
	int64_t u, ta, tb;
	struct tz_type early, late;
	bool owned = false, va, vb;
	int rc = -1;

	if (!tz_date_valid(y, mo, d) || h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 || s > 59) {
		snprintf(err, errlen, "bad local time %04d-%02d-%02d %02d:%02d:%02d", y, mo, d, h,
			 mi, s);
		goto out;
	}
	u = tz_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
	if (tz_is_utc(zone)) {
		*out = u;
		rc = 0;
		goto out;
	}
	z = tz_get(zone, &owned, err, errlen);
	if (!z)
		goto out;
	early = tz_zone_at(z, u - TZ_WINDOW);
	late = tz_zone_at(z, u + TZ_WINDOW);
	ta = u - early.utoff;
	tb = u - late.utoff;
	va = tz_zone_at(z, ta).utoff == early.utoff;
	vb = tz_zone_at(z, tb).utoff == late.utoff;
	if (va && vb)
		*out = ta < tb ? ta : tb; /* overlap: the earlier instant */
	else if (vb)
		*out = tb;
	else
		*out = ta; /* normal, or a gap: the offset before the jump */
	rc = 0;
out:
	if (owned)
		tz_zone_free((struct tz_zone *)z);
	return rc;
}

int tz_utc_to_local(const char *zone, int64_t t, struct tm *out, char *err, size_t errlen)
{
	const struct tz_zone *z = NULL;
	struct tz_type ty = { 0, false };
	int64_t local, days, secs, y;
	bool owned = false;
	int m, d, rc = -1;

	if (!tz_is_utc(zone)) {
		z = tz_get(zone, &owned, err, errlen);
		if (!z)
			goto out;
		ty = tz_zone_at(z, t);
	}
	local = t + ty.utoff;
	days = tz_floor_div(local, 86400);
	secs = local - days * 86400;
	tz_civil_from_days(days, &y, &m, &d);
	if (y - 1900 < -2147483647 || y - 1900 > 2147483647) {
		snprintf(err, errlen, "time %lld out of range", (long long)t);
		goto out;
	}
	memset(out, 0, sizeof(*out));
	out->tm_year = (int)(y - 1900);
	out->tm_mon = m - 1;
	out->tm_mday = d;
	out->tm_hour = (int)(secs / 3600);
	out->tm_min = (int)(secs / 60 % 60);
	out->tm_sec = (int)(secs % 60);
	out->tm_wday = (int)(((days % 7) + 11) % 7);
	out->tm_yday = (int)(days - tz_days_from_civil(y, 1, 1));
	out->tm_isdst = ty.isdst;
	out->tm_gmtoff = ty.utoff;
	out->tm_zone = "";
	rc = 0;
out:
	if (owned)
		tz_zone_free((struct tz_zone *)z);
	return rc;
}

void tz_cache_free(void)
{
	struct tz_zone *z, *next;

	pthread_mutex_lock(&tz_lock);
	for (z = tz_cache; z; z = next) {
		next = z->next;
		tz_zone_free(z);
	}
	tz_cache = NULL;
	tz_ncached = 0;
	pthread_mutex_unlock(&tz_lock);
}
