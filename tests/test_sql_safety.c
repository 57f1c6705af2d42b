/* test_sql_safety: every SQL statement is parameterised (README
 * "Security"). The sources are read as text and three rules checked:
 *  1. PQexec (no parameters) runs only a string literal, or one of the
 *     statements listed below with the reason it is safe;
 *  2. no text that holds SQL quotes a printf conversion ('%s'): values
 *     travel as $n parameters, never spliced into the statement;
 *  3. nothing escapes values by hand (PQescapeLiteral, PQescapeString...):
 *     there is no value to escape when all of them are parameters.
 * Each rule is first shown to catch a planted offence, so the check cannot
 * pass by reading nothing. */
#include "test.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

/* PQexec arguments that are not literals, and why they are safe. */
static const struct {
	const char *file, *arg, *why;
} sql_allowed[] = {
	{ "src/store.c", "m->sql", "a migration compiled into the binary (migrations/*.sql)" },
	{ "src/import.c", "sql.p", "COPY ... FROM STDIN built from import's static column table" },
};

static bool sql_is_allowed(const char *file, const char *arg, size_t n)
{
	size_t i;

	for (i = 0; i < sizeof(sql_allowed) / sizeof(sql_allowed[0]); i++)
		if (strstr(file, sql_allowed[i].file) && strlen(sql_allowed[i].arg) == n &&
		    memcmp(sql_allowed[i].arg, arg, n) == 0)
			return true;
	return false;
}

static bool sql_has_keyword(const char *s, size_t n)
{
	static const char *const kw[] = { "SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM",
					  " WHERE ", " VALUES" };
	size_t i, k;

	for (i = 0; i < sizeof(kw) / sizeof(kw[0]); i++)
		for (k = 0; k + strlen(kw[i]) <= n; k++)
			if (memcmp(s + k, kw[i], strlen(kw[i])) == 0)
				return true;
	return false;
}

/* The offences in text (the file's contents, named file), one line each
 * appended to out; returns how many. */
static int sql_offences(const char *file, const char *text, struct buf *out)
{
	const char *p, *q;
	int n = 0;

	/* 1. PQexec(conn, ARG) */
	for (p = text; (p = strstr(p, "PQexec(")); p += 7) {
		const char *a = strchr(p, ','), *end;

		if (!a)
			break;
		for (a++; *a == ' ' || *a == '\t' || *a == '\n'; a++)
			;
		for (end = a; *end && *end != ')' && *end != '\n'; end++)
			;
		if (*a == '"' || sql_is_allowed(file, a, (size_t)(end - a)))
			continue;
		n++;
		if (buf_addf(out, "%s: PQexec runs '%.*s', not a literal\n", file, (int)(end - a), a) < 0)
			return n;
	}
	/* 2. a string literal with SQL in it that quotes a conversion */
	for (p = text; (p = strchr(p, '"')); p = q + 1) {
		if (p > text && (p[-1] == '\'' || p[-1] == '\\')) { /* '"' or an escaped quote */
			q = p;
			continue;
		}
		for (q = p + 1; *q && *q != '"' && *q != '\n'; q++)
			if (*q == '\\' && q[1])
				q++;
		if (!*q)
			break;
		if (*q == '\n')
			continue;
		if (sql_has_keyword(p + 1, (size_t)(q - p - 1))) {
			const char *c;

			for (c = p + 1; c + 1 < q; c++)
				if (c[0] == '\'' && c[1] == '%') {
					n++;
					if (buf_addf(out, "%s: SQL quotes a conversion: %.*s\n", file,
						     (int)(q - p + 1), p) < 0)
						return n;
					break;
				}
		}
	}
	/* 3. escaping by hand */
	if (strstr(text, "PQescapeLiteral") || strstr(text, "PQescapeString") ||
	    strstr(text, "PQescapeStringConn")) {
		n++;
		if (buf_addf(out, "%s: escapes values by hand\n", file) < 0)
			return n;
	}
	return n;
}

TEST(sql_safety_check_catches_each_offence)
{
	struct buf out;

	buf_init(&out, 0);
	test_defer((test_cleanup_fn)buf_release, &out);
	ASSERT_EQ(sql_offences("src/x.c", "r = PQexec(c, sql_text);\n", &out), 1);
	ASSERT_EQ(sql_offences("src/x.c", "snprintf(q, n, \"SELECT 1 FROM t WHERE a = '%s'\", v);\n",
			       &out),
		  1);
	ASSERT_EQ(sql_offences("src/x.c", "char *e = PQescapeLiteral(c, v, n);\n", &out), 1);
	/* what is fine */
	ASSERT_EQ(sql_offences("src/x.c",
			       "r = PQexec(c, \"ROLLBACK\");\n"
			       "q(c, \"SELECT 1 FROM t WHERE a = $1\", 1, p);\n"
			       "snprintf(e, n, \"status '%s' is unknown\", s);\n",
			       &out),
		  0);
	ASSERT_EQ(sql_offences("src/store.c", "r = PQexec(c, m->sql);\n", &out), 0);
}

TEST(sql_statements_are_parameterised)
{
	struct buf out;
	struct dirent *de;
	DIR *d = opendir("src");
	int n = 0, files = 0;

	ASSERT(d);
	buf_init(&out, 0);
	test_defer((test_cleanup_fn)buf_release, &out);
	while ((de = readdir(d))) {
		char path[512];
		size_t len = strlen(de->d_name);
		char *text;

		if (len < 3 || strcmp(de->d_name + len - 2, ".c") != 0)
			continue;
		snprintf(path, sizeof(path), "src/%s", de->d_name);
		text = test_slurp(path);
		if (!text)
			continue;
		files++;
		n += sql_offences(path, text, &out);
		free(text);
	}
	closedir(d);
	if (n)
		printf("%s", out.p);
	ASSERT(files > 20);
	ASSERT_EQ(n, 0);
}
