/* test_page: the operator page. Its files served from the binary by the
 * listener, without a token and with their headers; and the page itself in
 * headless Chromium against a daemon on a seeded database. */
#include "admin_page.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "buf.h"
#include "import.h"
#include "mock_crm.h"
#include "test.h"

/* ------------------------------------------------- assets over loopback */

#define TP_REQS 6

static const char *const tp_paths[TP_REQS] = {
	"/admin/", "/admin/app.js", "/admin/style.css", "/admin", "/admin/nope.js", "/admin/index.html",
};

/* The listener's loop runs on the test thread; a client thread asks for
 * tp_paths, one connection each, and keeps the whole answers. */
struct tp {
	uv_loop_t loop;
	uv_async_t done;
	struct listener *l;
	int port;
	char *resp[TP_REQS];
};

static char *tp_get(int port, const char *path)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { .tv_sec = 30 }; /* only against a hung run */
	char req[512], chunk[4096];
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct buf b;
	ssize_t n;
	char *s;

	if (fd < 0)
		return NULL;
	buf_init(&b, 4 << 20);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	n = snprintf(req, sizeof(req),
		     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    send(fd, req, (size_t)n, MSG_NOSIGNAL) == n)
		while ((n = read(fd, chunk, sizeof(chunk))) > 0)
			if (buf_add(&b, chunk, (size_t)n) < 0)
				break;
	close(fd);
	s = b.p ? strdup(b.p) : NULL;
	buf_release(&b);
	return s;
}

static void *tp_client(void *arg)
{
	struct tp *t = arg;
	int i;

	for (i = 0; i < TP_REQS; i++)
		t->resp[i] = tp_get(t->port, tp_paths[i]);
	uv_async_send(&t->done);
	return NULL;
}

static void tp_done_cb(uv_async_t *a)
{
	struct tp *t = a->data;

	uv_close((uv_handle_t *)a, NULL);
	listener_close(t->l, NULL, NULL);
}

static void tp_free(void *arg)
{
	struct tp *t = arg;
	int i;

	for (i = 0; i < TP_REQS; i++)
		free(t->resp[i]);
}

/* The value of header name in an answer's head, into out ("" if none). */
static void tp_header(const char *resp, const char *name, char *out, size_t outlen)
{
	const char *end = strstr(resp, "\r\n\r\n"), *p = resp;
	size_t nl = strlen(name);

	out[0] = '\0';
	while (p && end && p < end) {
		p = strstr(p, "\r\n");
		if (!p || p >= end)
			return;
		p += 2;
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			p += nl + 1;
			while (*p == ' ')
				p++;
			snprintf(out, outlen, "%.*s", (int)strcspn(p, "\r"), p);
			return;
		}
	}
}

TEST(page_assets_are_served_without_a_token_with_strict_headers)
{
	static struct tp t;
	struct listener_config cfg = { .addr = "127.0.0.1:0",
				       .routes = admin_page_routes,
				       .nroutes = ADMIN_PAGE_NROUTES };
	static const char *const types[3] = { "text/html; charset=utf-8",
					       "text/javascript; charset=utf-8",
					       "text/css; charset=utf-8" };
	char err[256], h[512];
	pthread_t th;
	int i;

	memset(&t, 0, sizeof(t));
	test_defer(tp_free, &t);
	ASSERT_EQ(uv_loop_init(&t.loop), 0);
	ASSERT(listener_start(&t.loop, &cfg, &t.l, err, sizeof(err)) == 0);
	t.port = listener_port(t.l);
	uv_async_init(&t.loop, &t.done, tp_done_cb);
	t.done.data = &t;
	ASSERT_EQ(pthread_create(&th, NULL, tp_client, &t), 0);
	uv_run(&t.loop, UV_RUN_DEFAULT);
	pthread_join(th, NULL);
	ASSERT_EQ(uv_loop_close(&t.loop), 0);

	for (i = 0; i < 3; i++) {
		const char *r = t.resp[i];

		ASSERT(r != NULL);
		ASSERT(strncmp(r, "HTTP/1.1 200 ", 13) == 0);
		tp_header(r, "Content-Type", h, sizeof(h));
		ASSERT_STREQ(h, types[i]);
		tp_header(r, "Cache-Control", h, sizeof(h));
		ASSERT_STREQ(h, "no-cache");
		tp_header(r, "X-Content-Type-Options", h, sizeof(h));
		ASSERT_STREQ(h, "nosniff");
		tp_header(r, "Content-Security-Policy", h, sizeof(h));
		ASSERT(strncmp(h, "default-src 'self';", 19) == 0);
		ASSERT(strstr(h, "unsafe") == NULL);
	}
	/* the body is the embedded file, whole */
	ASSERT_CONTAINS(t.resp[0], "<script src=\"app.js\" defer></script>");
	ASSERT_CONTAINS(t.resp[0], "</html>");
	ASSERT_CONTAINS(t.resp[1], "document.addEventListener('DOMContentLoaded', init);");
	/* /admin goes to /admin/, an unknown file is 404, index.html by name too */
	ASSERT(t.resp[3] && strncmp(t.resp[3], "HTTP/1.1 308 ", 13) == 0);
	tp_header(t.resp[3], "Location", h, sizeof(h));
	ASSERT_STREQ(h, "/admin/");
	ASSERT(t.resp[4] && strncmp(t.resp[4], "HTTP/1.1 404 ", 13) == 0);
	ASSERT(t.resp[5] && strncmp(t.resp[5], "HTTP/1.1 200 ", 13) == 0);
}

/* No external request: the page names no other origin, and puts data into
 * the DOM through textContent only. */
TEST(page_assets_stay_on_their_origin_and_never_use_innerhtml)
{
	const struct admin_page_asset *a;
	int n = 0;

	for (a = admin_page_assets; a->name; a++, n++) {
		const char *s = (const char *)a->data;

		ASSERT_EQ(strlen(s), a->len);
		const char *u;

		/* a URL only as the SVG namespace name, which is never fetched */
		for (u = strstr(s, "http"); u; u = strstr(u + 1, "http"))
			ASSERT(strncmp(u, "https:", 6) != 0 &&
			       (strncmp(u, "http:", 5) != 0 ||
				strncmp(u, "http://www.w3.org/2000/svg'", 27) == 0));
		ASSERT(strstr(s, "innerHTML") == NULL);
		ASSERT(strstr(s, "outerHTML") == NULL);
		ASSERT(strstr(s, "document.write") == NULL);
		ASSERT(strstr(s, "eval(") == NULL);
	}
	ASSERT(n >= 3);
	ASSERT(admin_page_find("index.html") && admin_page_find("app.js") &&
	       admin_page_find("style.css"));
}

/* ------------------------------------------------ the page in Chromium */

#define PB_TOKEN "pb-token-7f3a9c"
#define PB_SECRET "s3cret-crm-key"
#define PB_CLICK "5b0c1e0a-6a57-4a55-9d3c-2f6f2b7c9a11"

/* offer 10 polls fine (its rule edits nothing); offer 11's rule fails on
 * line 4 of pg_bad.lua; its key is a secret the page must not show. */
static const char pb_rule_ok[] =
	"return {\n"
	"  processing = { url = 'http://{host}/orders?ids={idel}', batch = 10 },\n"
	"  process = function(data) end,\n"
	"}\n";
static const char pb_rule_bad[] =
	"return {\n"
	"  processing = { url = 'http://{host}/orders?key={key}&ids={idel}', batch = 10 },\n"
	"  process = function(data)\n"
	"    return data.orders.count\n"
	"  end,\n"
	"}\n";

struct pb {
	char *ci;
	PGconn *c;
	struct mock_crm *m;
	char rules[64];
	char profile[64]; /* Chromium's user data dir */
	char log[64];
	pid_t pid;
	int port;
};

static uint64_t pb_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void pb_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void pb_rmrf(const char *dir)
{
	char *argv[] = { "/bin/rm", "-rf", (char *)dir, NULL };
	char *out = NULL, *err = NULL;

	if (dir[0])
		(void)test_run(argv, NULL, NULL, &out, &err);
	free(out);
	free(err);
}

static void pb_close(void *arg)
{
	struct pb *e = arg;

	if (e->pid > 0) {
		kill(e->pid, SIGTERM);
		waitpid(e->pid, NULL, 0);
		e->pid = 0;
	}
	if (e->m)
		mock_crm_stop(e->m);
	if (e->c)
		PQfinish(e->c);
	pb_rmrf(e->rules);
	pb_rmrf(e->profile);
	if (e->log[0])
		unlink(e->log);
	free(e->ci);
	memset(e, 0, sizeof(*e));
}

static bool pb_write(const char *dir, const char *name, const char *text)
{
	char path[256];
	FILE *f;
	bool ok;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f)
		return false;
	ok = fputs(text, f) >= 0;
	return fclose(f) == 0 && ok;
}

static bool pb_import(struct pb *e)
{
	struct import_stats st;
	struct buf b;
	char err[1024];
	FILE *in;
	int rc, port = mock_crm_port(e->m);

	buf_init(&b, 1 << 16);
	rc = buf_addf(&b,
		      "{\"advertiser\": {\"id\": 1, \"name\": \"Acme\", \"api_key\": \"k-acme\"}}\n"
		      "{\"offer\": {\"id\": 10, \"advertiser\": 1, \"name\": \"Nutra Fine\","
		      " \"rule\": \"pg_ok\", \"params\": {\"host\": \"127.0.0.1:%d\"},"
		      " \"intervals\": {\"processing\": 1}}}\n"
		      "{\"offer\": {\"id\": 11, \"advertiser\": 1, \"name\": \"Nutra Broken\","
		      " \"rule\": \"pg_bad\", \"params\": {\"host\": \"127.0.0.1:%d\", \"key\": \"" PB_SECRET "\"},"
		      " \"secret_params\": [\"key\"], \"intervals\": {\"processing\": 1}}}\n"
		      "{\"goal\": {\"offer\": 10, \"code\": \"lead\", \"payout\": \"fixed\", \"wm\": 5,"
		      " \"pay\": 8, \"currency\": \"USD\"}}\n"
		      "{\"goal\": {\"offer\": 11, \"code\": \"lead\", \"payout\": \"fixed\", \"wm\": 5,"
		      " \"pay\": 8, \"currency\": \"USD\"}}\n"
		      "{\"click\": {\"id\": \"" PB_CLICK "\", \"offer\": 10, \"wm\": 7}}\n"
		      "{\"lead\": {\"id\": 1002, \"offer\": 10, \"ext\": \"A-2\", \"status\": 2,"
		      " \"created\": \"2026-11-20T10:00:00Z\", \"goal\": \"lead\", \"base\": 30}}\n"
		      "{\"lead\": {\"id\": 1101, \"offer\": 11, \"ext\": \"B-1\", \"status\": 2,"
		      " \"created\": \"2026-11-20T10:00:00Z\", \"goal\": \"lead\", \"base\": 30}}\n",
		      port, port);
	in = rc < 0 ? NULL : fmemopen(b.p, b.len, "r");
	rc = in ? import_run(e->c, in, &st, err, sizeof(err)) : -1;
	if (rc < 0)
		printf("  import: %s\n", in ? err : "out of memory");
	if (in)
		fclose(in);
	buf_release(&b);
	return rc == 0;
}

/* `leadsync run` with the admin token on a free port; waits for its
 * "listening" line and reads the port from it. */
static bool pb_daemon(struct pb *e)
{
	const char *bin = getenv("LEADSYNC_TEST_BIN");
	extern char **environ;
	char db[1024], rules[128], *envp[512], *argv[] = { NULL, "run", NULL }, *log = NULL;
	size_t n = 0, k;
	uint64_t end;
	pid_t parent = getpid();
	int fd;

	if (!bin || !*bin) {
		printf("  LEADSYNC_TEST_BIN is not set: run the tests with 'make test'\n");
		return false;
	}
	snprintf(e->log, sizeof(e->log), "/tmp/leadsync-page-XXXXXX");
	fd = mkstemp(e->log);
	if (fd < 0) {
		e->log[0] = '\0';
		return false;
	}
	snprintf(db, sizeof(db), "LEADSYNC_DB=%s", e->ci);
	snprintf(rules, sizeof(rules), "LEADSYNC_RULES=%s", e->rules);
	envp[n++] = db;
	envp[n++] = rules;
	envp[n++] = "LEADSYNC_LISTEN=127.0.0.1:0";
	envp[n++] = "LEADSYNC_ADMIN_TOKEN=" PB_TOKEN;
	envp[n++] = "LEADSYNC_LOG_LEVEL=info";
	envp[n++] = "LEADSYNC_LOG_FORMAT=logfmt";
	for (k = 0; environ[k] && n < 511; k++)
		envp[n++] = environ[k];
	envp[n] = NULL;
	argv[0] = (char *)bin;
	e->pid = fork();
	if (e->pid < 0) {
		e->pid = 0;
		close(fd);
		return false;
	}
	if (e->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* dies with the test process */
		if (getppid() != parent)
			_exit(127);
		dup2(fd, 1);
		dup2(fd, 2);
		closefrom(3);
		execve(bin, argv, envp);
		_exit(127);
	}
	close(fd);
	end = pb_ms() + 60000; /* only against a hung run */
	while (pb_ms() < end) {
		const char *l;

		free(log);
		log = test_slurp(e->log);
		l = log ? strstr(log, "msg=\"listening\"") : NULL;
		l = l ? strstr(l, " port=") : NULL;
		if (l) {
			e->port = (int)strtol(l + 6, NULL, 10);
			break;
		}
		if (waitpid(e->pid, NULL, WNOHANG) == e->pid) {
			e->pid = 0;
			break;
		}
		pb_sleep_ms(20);
	}
	if (e->port <= 0)
		printf("  the daemon did not start:\n%s\n", log ? log : "");
	free(log);
	return e->port > 0;
}

/* Waits until sql's first value is want (bounded only against a hung run). */
static bool pb_wait_sql(struct pb *e, const char *sql, const char *want)
{
	uint64_t end = pb_ms() + 60000;
	char *v = NULL;

	while (pb_ms() < end) {
		free(v);
		v = test_sql_value((struct pg_conn *)e->c, sql);
		if (v && strcmp(v, want) == 0) {
			free(v);
			return true;
		}
		pb_sleep_ms(50);
	}
	printf("  %s: waited for '%s', got '%s'\n", sql, want, v ? v : "(null)");
	free(v);
	return false;
}

static bool pb_which(const char *prog, char *out, size_t outlen);

/* The page at /admin/#token=...&frag, loaded in headless Chromium until
 * its data calls are done; returns the DOM (malloc'd) or NULL. shot (may
 * be NULL): a PNG of the page there too. */
static char *pb_chromium(struct pb *e, const char *frag, const char *shot)
{
	char url[512], prof[128], shotarg[300], timeout[256], chromium[256];
	char *argv[24], *out = NULL, *err = NULL;
	int n = 0, rc;

	if (!pb_which("timeout", timeout, sizeof(timeout)) ||
	    !pb_which("chromium", chromium, sizeof(chromium)))
		return NULL;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/admin/#token=" PB_TOKEN "%s%s", e->port,
		 frag[0] ? "&" : "", frag);
	snprintf(prof, sizeof(prof), "--user-data-dir=%s", e->profile);
	/* a bound against a hung browser, never a measure of the page */
	argv[n++] = timeout;
	argv[n++] = "-k";
	argv[n++] = "5";
	argv[n++] = "120";
	argv[n++] = chromium;
	argv[n++] = "--headless";
	if (geteuid() == 0)
		argv[n++] = "--no-sandbox";
	argv[n++] = "--disable-gpu";
	argv[n++] = "--no-first-run";
	argv[n++] = "--disable-background-networking";
	argv[n++] = "--disable-component-update";
	argv[n++] = "--disable-sync";
	argv[n++] = prof;
	argv[n++] = "--window-size=1366,900";
	/* virtual time runs ahead only while no request is pending: the DOM
	 * is dumped once the page's fetches have all been answered */
	argv[n++] = "--virtual-time-budget=30000";
	if (shot) {
		snprintf(shotarg, sizeof(shotarg), "--screenshot=%s", shot);
		argv[n++] = shotarg;
	}
	argv[n++] = "--dump-dom";
	argv[n++] = url;
	argv[n] = NULL;
	rc = test_run(argv, NULL, NULL, &out, &err);
	if (rc != 0 || !out || !strstr(out, "data-ready=\"1\"")) {
		printf("  chromium %s: exit %d\n%s\n%.2000s\n", frag, rc, out ? out : "",
		       err ? err : "");
		free(out);
		out = NULL;
	}
	free(err);
	return out;
}

/* The <tr ...> ... </tr> of the table row whose opening tag holds attr,
 * malloc'd; NULL when there is none. */
static char *pb_row(const char *dom, const char *attr)
{
	const char *a = strstr(dom, attr), *start, *end;

	if (!a)
		return NULL;
	for (start = a; start > dom && strncmp(start, "<tr", 3) != 0; start--)
		;
	end = strstr(a, "</tr>");
	return end ? strndup(start, (size_t)(end - start)) : NULL;
}

/* prog's full path on PATH, into out; false when it is not there. */
static bool pb_which(const char *prog, char *out, size_t outlen)
{
	const char *path = getenv("PATH");

	while (path && *path) {
		size_t len = strcspn(path, ":");

		snprintf(out, outlen, "%.*s/%s", (int)len, path, prog);
		if (access(out, X_OK) == 0)
			return true;
		path += len + (path[len] == ':');
	}
	return false;
}

TEST(page_in_chromium_shows_the_failing_offer_its_run_and_a_lead_timeline)
{
	static struct pb e;
	char *dom, *row, link[256], want[256], *run, *lead, *pbs, chromium[256];
	const char *p;
	int i;

	memset(&e, 0, sizeof(e));
	test_defer(pb_close, &e);
	if (!pb_which("chromium", chromium, sizeof(chromium))) {
		printf("  chromium is missing: scripts/deps.sh installs it (Debian 'chromium')\n");
		ASSERT(!"chromium on PATH");
	}
	e.c = (PGconn *)test_db_migrated("page_chromium", &e.ci);
	ASSERT(e.c != NULL);
	snprintf(e.rules, sizeof(e.rules), "/tmp/leadsync-pgrules-XXXXXX");
	snprintf(e.profile, sizeof(e.profile), "/tmp/leadsync-chromium-XXXXXX");
	ASSERT(mkdtemp(e.rules) && mkdtemp(e.profile));
	ASSERT(pb_write(e.rules, "pg_ok.lua", pb_rule_ok) && pb_write(e.rules, "pg_bad.lua", pb_rule_bad));
	{
		static const struct mock_route routes[] = { { .path = "*", .kind = MOCK_FIXED,
							      .body = "[]" } };
		ASSERT_EQ(mock_crm_start(&e.m, routes, 1), 0);
	}
	ASSERT(pb_import(&e));
	ASSERT(pb_daemon(&e));

	/* a lead made and moved by three postbacks: hold, approved, rejected */
	for (i = 0; i < 3; i++) {
		static const char *const st[3] = { "hold", "approved", "rejected" };
		char path[256], *r;

		snprintf(path, sizeof(path),
			 "/k-acme/s2s?click_id=" PB_CLICK "&request_id=pg-1&action=lead&price=30&status=%s",
			 st[i]);
		r = test_defer_free(tp_get(e.port, path));
		ASSERT(r && strncmp(r, "HTTP/1.1 200 ", 13) == 0);
	}
	ASSERT(pb_wait_sql(&e, "SELECT count(*) > 0 FROM poll_runs WHERE offer = 11"
			       " AND outcome = 'rule_error'", "t"));
	ASSERT(pb_wait_sql(&e, "SELECT count(*) > 0 FROM poll_runs WHERE offer = 10"
			       " AND outcome = 'ok'", "t"));
	/* the board reads the schedule rows, which the lease release writes
	 * after the run's row: wait for those too */
	ASSERT(pb_wait_sql(&e, "SELECT fail_count > 0 AND last_run IS NOT NULL FROM poll_schedule"
			       " WHERE offer = 11 AND variant = 'processing'", "t"));
	ASSERT(pb_wait_sql(&e, "SELECT last_run IS NOT NULL FROM poll_schedule"
			       " WHERE offer = 10 AND variant = 'processing'", "t"));
	lead = test_defer_free(test_sql_value((struct pg_conn *)e.c,
					      "SELECT id FROM leads WHERE request_id = 'pg-1'"));
	pbs = test_defer_free(test_sql_value((struct pg_conn *)e.c,
		"SELECT string_agg(source || ' ' || source_id, ',' ORDER BY id) FROM lead_history"
		" WHERE lead = (SELECT id FROM leads WHERE request_id = 'pg-1')"));
	ASSERT(lead && pbs);
	ASSERT(strncmp(pbs, "postback ", 9) == 0 && strstr(pbs, ",chargeback "));

	/* the board: offer 11 red with its error, offer 10 green; a picture */
	ASSERT_EQ(mkdir("build/test/artefacts", 0755) == 0 || errno == EEXIST, 1);
	unlink("build/test/artefacts/board.png");
	dom = test_defer_free(pb_chromium(&e, "", "build/test/artefacts/board.png"));
	ASSERT(dom != NULL);
	row = test_defer_free(pb_row(dom, "data-offer=\"11\" data-variant=\"processing\""));
	ASSERT(row != NULL);
	ASSERT_CONTAINS(row, "class=\"st-fail\"");
	ASSERT_CONTAINS(row, "rule_error");
	ASSERT_CONTAINS(row, "pg_bad.lua:4:");
	row = test_defer_free(pb_row(dom, "data-offer=\"10\" data-variant=\"processing\""));
	ASSERT(row != NULL);
	ASSERT_CONTAINS(row, "class=\"st-ok\"");
	/* failing first */
	ASSERT(strstr(dom, "data-offer=\"11\"") < strstr(dom, "data-offer=\"10\""));
	ASSERT(strstr(dom, PB_SECRET) == NULL);
	{
		struct stat sb;

		ASSERT_EQ(stat("build/test/artefacts/board.png", &sb), 0);
		ASSERT(sb.st_size > 1000);
	}

	/* the failing run: the error with file:line, the request masked */
	run = test_defer_free(test_sql_value((struct pg_conn *)e.c,
					     "SELECT max(id) FROM poll_runs WHERE offer = 11"));
	ASSERT(run && *run);
	snprintf(want, sizeof(want), "view=run&id=%s", run);
	dom = test_defer_free(pb_chromium(&e, want, NULL));
	ASSERT(dom != NULL);
	p = strstr(dom, "id=\"run-error\"");
	ASSERT(p != NULL);
	ASSERT(strstr(p, "pg_bad.lua:4:") != NULL);
	p = strstr(dom, "id=\"run-request\">GET http://127.0.0.1:");
	ASSERT(p != NULL);
	ASSERT(strstr(p, "/orders?key=") != NULL);
	ASSERT(strstr(dom, PB_SECRET) == NULL);

	/* the lead's timeline: its sources in order, each a link */
	snprintf(want, sizeof(want), "view=lead&id=%s", lead);
	dom = test_defer_free(pb_chromium(&e, want, NULL));
	ASSERT(dom != NULL);
	p = strstr(dom, "id=\"timeline\"");
	ASSERT(p != NULL);
	for (const char *s = pbs; *s;) {
		size_t len = strcspn(s, ",");
		const char *sp = memchr(s, ' ', len);

		ASSERT(sp != NULL);
		snprintf(link, sizeof(link), "<a href=\"#view=postback&amp;id=%.*s\">%.*s</a>",
			 (int)(s + len - sp - 1), sp + 1, (int)len, s);
		p = strstr(p, link);
		ASSERT_CONTAINS(p, link);
		s += len + (s[len] == ',');
	}

	/* and the daemon that served all this stops cleanly (no leak) */
	{
		int status = 0;

		kill(e.pid, SIGTERM);
		ASSERT_EQ(waitpid(e.pid, &status, 0), e.pid);
		e.pid = 0;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			char *log = test_defer_free(test_slurp(e.log));

			printf("  daemon exit status %d:\n%s\n", status, log ? log : "");
			ASSERT(!"the daemon exits 0");
		}
	}
}
