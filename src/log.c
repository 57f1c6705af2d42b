/* log: logfmt or JSON lines on stderr, one write per line so lines never
 * interleave. */
#include "log.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

int log_level = LOG_INFO;
int log_format = LOG_LOGFMT;

static const char *const format_names[] = { "logfmt", "json" };

int log_format_parse(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof(format_names) / sizeof(format_names[0]); i++)
		if (s && strcmp(s, format_names[i]) == 0)
			return (int)i;
	return -1;
}

static const char *const level_names[] = { "error", "warn", "info", "debug" };

int log_level_parse(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcmp(s, level_names[i]) == 0)
			return (int)i;
	return -1;
}

const char *log_quote(char *out, size_t outlen, const char *s)
{
	size_t o = 0;
	if (outlen < 3) {
		if (outlen)
			out[0] = '\0';
		return out;
	}
	out[o++] = '"';
	for (; s && *s && o + 3 < outlen; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c == '\n' || c == '\r' || c == '\t')
			out[o++] = ' ';
		else if (c < 0x20)
			out[o++] = '?';
		else
			out[o++] = (char)c;
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}

/* A bare value that reads as a whole number (an id, a count) is written
 * as a JSON number; everything else as a string. */
static bool log__is_int(const char *v, size_t n)
{
	size_t i = v[0] == '-';

	if (n <= i || n - i > 18 || (v[i] == '0' && n - i > 1))
		return false;
	for (; i < n; i++)
		if (!isdigit((unsigned char)v[i]))
			return false;
	return true;
}

/* Appends the logfmt fields of f to j as JSON members: key=bare or
 * key="quoted, \" and \\ escaped" (log_quote's form). A token without
 * '=' becomes a key with an empty value. */
static int log__fields_json(struct buf *j, const char *f)
{
	struct buf v;
	int rc = 0;

	buf_init(&v, 4096);
	while (*f && !rc) {
		const char *k, *eq;
		bool quoted = false;
		size_t klen;

		while (*f == ' ')
			f++;
		if (!*f)
			break;
		k = f;
		while (*f && *f != ' ' && *f != '=')
			f++;
		klen = (size_t)(f - k);
		eq = *f == '=' ? f++ : NULL;
		buf_reset(&v);
		if (eq && *f == '"') {
			quoted = true;
			for (f++; *f && *f != '"'; f++) {
				if (*f == '\\' && f[1])
					f++;
				rc |= buf_addc(&v, *f);
			}
			if (*f == '"')
				f++;
		} else if (eq) {
			const char *b = f;

			while (*f && *f != ' ')
				f++;
			rc |= buf_add(&v, b, (size_t)(f - b));
		}
		rc |= buf_addc(j, ',');
		rc |= buf_add_json_str(j, k, klen);
		rc |= buf_addc(j, ':');
		if (eq && !quoted && log__is_int(v.p ? v.p : "", v.len))
			rc |= buf_add(j, v.p, v.len);
		else
			rc |= buf_add_json_str(j, v.p ? v.p : "", v.len);
	}
	buf_release(&v);
	return rc;
}

void log__write(int level, const char *msg, const char *fmt, ...)
{
	char line[4096], fields[4096], q[512], ts[32];
	struct timeval tv;
	struct tm tm;
	va_list ap;
	int n, m;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	fields[0] = '\0';
	if (fmt && *fmt) {
		va_start(ap, fmt);
		m = vsnprintf(fields, sizeof(fields), fmt, ap);
		va_end(ap);
		if (m < 0)
			fields[0] = '\0';
	}
	if (log_format == LOG_JSON) {
		struct buf j;
		char t[40];

		snprintf(t, sizeof(t), "%s.%03dZ", ts, (int)(tv.tv_usec / 1000));
		buf_init(&j, 3 * sizeof(line));
		if (buf_adds(&j, "{\"ts\":") < 0 || buf_add_json_str(&j, t, strlen(t)) < 0 ||
		    buf_addf(&j, ",\"level\":\"%s\",\"msg\":", level_names[level]) < 0 ||
		    buf_add_json_str(&j, msg, strlen(msg)) < 0 || log__fields_json(&j, fields) < 0 ||
		    buf_adds(&j, "}\n") < 0) {
			buf_reset(&j);
			if (buf_addf(&j, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", t,
				     level_names[level]) < 0 ||
			    buf_add_json_str(&j, msg, strlen(msg)) < 0 ||
			    buf_adds(&j, ",\"truncated\":true}\n") < 0)
				buf_reset(&j);
		}
		if (j.len && write(STDERR_FILENO, j.p, j.len) < 0) {
			/* nowhere left to report it */
		}
		buf_release(&j);
		return;
	}
	n = snprintf(line, sizeof(line), "ts=%s.%03dZ level=%s msg=%s", ts,
		     (int)(tv.tv_usec / 1000), level_names[level], log_quote(q, sizeof(q), msg));
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	if (fields[0]) {
		line[n++] = ' ';
		m = snprintf(line + n, sizeof(line) - (size_t)n - 1, "%s", fields);
		if (m > 0)
			n += m;
		if ((size_t)n >= sizeof(line) - 1)
			n = (int)sizeof(line) - 2;
	}
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* nowhere left to report it */
	}
}

void log_lead_changes(const char *source, const struct log_lead *v, size_t n)
{
	/* the source's id under its own key: run= for a poll run, postback=
	 * for an incoming postback, none for a timer */
	const char *key = strcmp(source, "postback") == 0 ? " postback=" :
			  strcmp(source, "timer") == 0	   ? NULL :
							     " run=";
	char id[40];
	size_t i;

	for (i = 0; i < n && log_leads_on(); i++) {
		id[0] = '\0';
		if (key)
			snprintf(id, sizeof(id), "%s%" PRId64, key, v[i].run);
		log__write(LOG_DEBUG, "lead changed",
			   "lead=%" PRId64 " offer=%" PRId64 " source=%s%s from=%d to=%d", v[i].lead,
			   v[i].offer, source, id, v[i].from, v[i].to);
	}
}
