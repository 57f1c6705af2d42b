/* helpers: the integration tests' access to a real PostgreSQL, to child
 * processes and to temporary files. */
#define _GNU_SOURCE
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "store.h"

static void quiet_notice(void *arg, const char *msg)
{
}

char *test_db_fresh(const char *name)
{
	const char *base = getenv("LEADSYNC_TEST_PG");
	struct buf ci, sql;
	PGconn *c;
	PGresult *r;
	char *out = NULL;

	if (!base || !*base) {
		test__fail(__FILE__, __LINE__,
			   "LEADSYNC_TEST_PG is not set: run the tests with 'make test'");
		return NULL;
	}
	buf_init(&ci, 4096);
	buf_init(&sql, 4096);
	if (buf_addf(&ci, "%s dbname=postgres", base) < 0)
		goto out;
	c = PQconnectdb(ci.p);
	if (PQstatus(c) != CONNECTION_OK) {
		test__fail(__FILE__, __LINE__, "cannot reach test server: %s", PQerrorMessage(c));
		PQfinish(c);
		goto out;
	}
	PQsetNoticeProcessor(c, quiet_notice, NULL);
	if (buf_addf(&sql, "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", name) < 0)
		goto fin;
	r = PQexec(c, sql.p);
	PQclear(r);
	buf_reset(&sql);
	if (buf_addf(&sql, "CREATE DATABASE \"%s\"", name) < 0)
		goto fin;
	r = PQexec(c, sql.p);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		test__fail(__FILE__, __LINE__, "create database %s: %s", name,
			   PQresultErrorMessage(r));
	else {
		buf_reset(&ci);
		if (buf_addf(&ci, "%s dbname=%s", base, name) == 0)
			out = buf_steal(&ci);
	}
	PQclear(r);
fin:
	PQfinish(c);
out:
	buf_release(&ci);
	buf_release(&sql);
	return out;
}

PGconn *test_db_migrated(const char *name, char **conninfo)
{
	char *ci = test_db_fresh(name);
	char err[1024];
	PGconn *c = NULL;
	int applied;

	if (!ci)
		return NULL;
	if (store_connect(ci, &c, err, sizeof(err)) < 0 ||
	    store_migrate(c, &applied, err, sizeof(err)) < 0) {
		test__fail(__FILE__, __LINE__, "database %s: %s", name, err);
		PQfinish(c);
		c = NULL;
	}
	if (conninfo && c)
		*conninfo = ci;
	else
		free(ci);
	return c;
}

char *test_sql_value(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	char *v = NULL;

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r))
		v = strdup(PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0));
	else if (PQresultStatus(r) != PGRES_TUPLES_OK)
		printf("  %s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
	return v;
}

bool test_sql_is(PGconn *c, const char *sql, const char *want)
{
	char *v = test_sql_value(c, sql);
	bool ok = v && strcmp(v, want) == 0;

	if (!ok)
		printf("  %s\n    got %s, want %s\n", sql, v ? v : "(no row)", want);
	free(v);
	return ok;
}

bool test_sql_exec(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;

	if (!ok)
		printf("  %s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
	return ok;
}

static int drain(int fd, struct buf *b)
{
	char tmp[4096];
	ssize_t n = read(fd, tmp, sizeof(tmp));

	if (n > 0 && buf_add(b, tmp, (size_t)n) < 0)
		return -1;
	return (int)n;
}

int test_run(char *const argv[], const char *const env[], const char *in,
	     char **out, char **err)
{
	int pin[2], pout[2], perr[2], st = 0, rc = -1;
	struct buf bo, be;
	size_t inoff = 0, inlen = in ? strlen(in) : 0;
	pid_t pid;

	buf_init(&bo, 0);
	buf_init(&be, 0);
	if (pipe2(pin, O_CLOEXEC) || pipe2(pout, O_CLOEXEC) || pipe2(perr, O_CLOEXEC))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		size_t i;

		dup2(pin[0], 0);
		dup2(pout[1], 1);
		dup2(perr[1], 2);
		for (i = 0; env && env[i]; i++)
			putenv((char *)env[i]);
		execv(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	signal(SIGPIPE, SIG_IGN);
	close(pin[0]);
	close(pout[1]);
	close(perr[1]);
	if (!inlen) {
		close(pin[1]);
		pin[1] = -1;
	}
	for (;;) {
		struct pollfd p[3] = {
			{ .fd = pout[0], .events = POLLIN },
			{ .fd = perr[0], .events = POLLIN },
			{ .fd = pin[1], .events = POLLOUT },
		};
		if (p[0].fd < 0 && p[1].fd < 0)
			break;
		if (poll(p, 3, -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents && drain(pout[0], &bo) <= 0) {
			close(pout[0]);
			pout[0] = -1;
		}
		if (p[1].revents && drain(perr[0], &be) <= 0) {
			close(perr[0]);
			perr[0] = -1;
		}
		if (p[2].revents) {
			ssize_t n = write(pin[1], in + inoff, inlen - inoff);

			if (n > 0)
				inoff += (size_t)n;
			if (n <= 0 || inoff == inlen) {
				close(pin[1]);
				pin[1] = -1;
			}
		}
	}
	if (pin[1] >= 0)
		close(pin[1]);
	if (waitpid(pid, &st, 0) == pid)
		rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	if (out)
		*out = buf_steal(&bo);
	if (err)
		*err = buf_steal(&be);
	buf_release(&bo);
	buf_release(&be);
	return rc;
}

char *test_tmpfile(const char *s)
{
	char path[] = "/tmp/leadsync-test-XXXXXX";
	int fd = mkstemp(path);
	size_t n = strlen(s);

	if (fd < 0)
		return NULL;
	if (write(fd, s, n) != (ssize_t)n) {
		close(fd);
		return NULL;
	}
	close(fd);
	return strdup(path);
}

char *test_slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	struct buf b;
	char tmp[4096];
	size_t n;

	if (!f)
		return NULL;
	buf_init(&b, (size_t)16 << 20);
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		if (buf_add(&b, tmp, n) < 0)
			break;
	fclose(f);
	return buf_steal(&b);
}
