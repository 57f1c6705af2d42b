/* test_metrics: the exposition writer (labels escaped, histograms
 * cumulative with +Inf, numbers), the whole rendering checked by promtool,
 * the process gauges, and the two log formats (logfmt and JSON with the
 * same keys). The daemon's /metrics is scraped in test_daemon.c. */
#define _GNU_SOURCE
#include "test.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "buf.h"
#include "db.h"
#include "http_client.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "poller.h"
#include "postback.h"
#include "timers.h"

TEST(metrics_label_values_are_escaped)
{
	struct buf b;
	struct metrics_label l[2] = { { "host", "a\"b\\c\nd" }, { "x", "" } };

	buf_init(&b, 0);
	test_defer((test_cleanup_fn)buf_release, &b);
	ASSERT_EQ(metrics_head(&b, "m_total", "counter", "a help"), 0);
	ASSERT_EQ(metrics_sample(&b, "m_total", l, 2, 3), 0);
	ASSERT_EQ(metrics_sample(&b, "m_total", NULL, 0, 0.25), 0);
	ASSERT_STREQ(b.p, "# HELP m_total a help\n# TYPE m_total counter\n"
			  "m_total{host=\"a\\\"b\\\\c\\nd\",x=\"\"} 3\n"
			  "m_total 0.25\n");
}

TEST(metrics_histogram_is_cumulative_with_inf)
{
	static const double bounds[] = { 0.1, 1 };
	struct metrics_hist h;
	struct metrics_label l = { "host", "h:80" };
	struct buf b;

	buf_init(&b, 0);
	test_defer((test_cleanup_fn)buf_release, &b);
	metrics_hist_init(&h, bounds, 2);
	metrics_hist_observe(&h, 0.05);
	metrics_hist_observe(&h, 0.1); /* on the bound: in it (le) */
	metrics_hist_observe(&h, 0.5);
	metrics_hist_observe(&h, 7);
	metrics_hist_observe(&h, -1); /* a clock that went back counts as 0 */
	ASSERT_EQ(metrics_hist_write(&b, "d_seconds", &l, 1, &h), 0);
	ASSERT_STREQ(b.p, "d_seconds_bucket{host=\"h:80\",le=\"0.1\"} 3\n"
			  "d_seconds_bucket{host=\"h:80\",le=\"1\"} 4\n"
			  "d_seconds_bucket{host=\"h:80\",le=\"+Inf\"} 5\n"
			  "d_seconds_sum{host=\"h:80\"} 7.6500000000000004\n"
			  "d_seconds_count{host=\"h:80\"} 5\n");
}

TEST(metrics_process_gauges_read_proc)
{
	int64_t rss, fds;
	int fd = open("/dev/null", O_RDONLY), fds2;

	ASSERT(fd >= 0);
	metrics_process(&rss, &fds);
	close(fd);
	ASSERT(rss > 1 << 20);
	ASSERT(fds >= 4); /* 0, 1, 2 and the one opened above */
	metrics_process(&rss, &fds);
	fds2 = (int)fds;
	metrics_process(&rss, &fds);
	ASSERT_EQ(fds, fds2); /* the folder's own descriptor is not counted */
}

/* A full rendering from made-up snapshots: every agreed name is there with
 * HELP and TYPE, and promtool finds nothing to say. */
TEST(metrics_render_has_every_name_and_passes_promtool)
{
	static const char *const names[] = {
		"leadsync_polls_total", "leadsync_crm_request_duration_seconds",
		"leadsync_leads_checked_total", "leadsync_leads_changed_total",
		"leadsync_postbacks_total", "leadsync_timer_approvals_total",
		"leadsync_timer_rejections_total", "leadsync_crm_requests_in_flight",
		"leadsync_leases_held", "leadsync_db_queue_depth",
		"leadsync_db_job_duration_seconds", "leadsync_rule_limit_exhausted_total",
		"leadsync_listener_connections_open", "leadsync_listener_connections_refused_total",
		"leadsync_listener_connections_evicted_total",
		"leadsync_database_up", "leadsync_ready", "process_resident_memory_bytes",
		"process_open_fds",
	};
	struct poller_stats ps = { 0 };
	struct poller_count pc[2] = { { .offer = 7, .variant = RULE_PROCESSING },
				      { .offer = 7, .variant = RULE_DATES } };
	struct http_client_stats hs = { 0 };
	struct http_client_host hh[2];
	struct db_stats ds = { 0 };
	struct metrics_hist dj;
	struct listener_stats ls = { 0 };
	struct postback_stats bs = { 0 };
	struct postback_count bc[2] = { { "created", 200, 4 }, { "invalid", 400, 1 } };
	struct timers_stats ts = { 0 };
	struct metrics_source src = { 0 };
	char *argv[] = { "/usr/bin/env", "promtool", "check", "metrics", NULL };
	char *out = NULL, *err = NULL, head[160];
	struct buf b;
	size_t i;
	int rc;

	pc[0].outcomes[POLL_OK] = 3;
	pc[0].outcomes[POLL_HTTP_ERROR] = 1;
	pc[1].outcomes[POLL_RULE_ERROR] = 2;
	ps.leads_asked = 10;
	ps.leads_asked_dates = 4;
	ps.leads_changed = 3;
	ps.rule_limits[0] = 2;
	ps.sched.in_flight = 1;
	memset(hh, 0, sizeof(hh));
	snprintf(hh[0].name, sizeof(hh[0].name), "crm.example:443");
	snprintf(hh[1].name, sizeof(hh[1].name), "other");
	metrics_hist_init(&hh[0].duration, metrics_crm_bounds, metrics_crm_nbounds);
	metrics_hist_init(&hh[1].duration, metrics_crm_bounds, metrics_crm_nbounds);
	metrics_hist_observe(&hh[0].duration, 0.3);
	metrics_hist_init(&dj, metrics_db_bounds, metrics_db_nbounds);
	metrics_hist_observe(&dj, 0.002);
	ts.approved = 5;
	ts.picked = 6;
	src.poller = &ps;
	src.polls = pc;
	src.npolls = 2;
	src.http = &hs;
	src.hosts = hh;
	src.nhosts = 2;
	src.db = &ds;
	src.db_jobs = &dj;
	src.db_up = true;
	src.listener = &ls;
	src.postback = &bs;
	src.postbacks = bc;
	src.npostbacks = 2;
	src.timers = &ts;
	src.ready = true;

	buf_init(&b, 1 << 20);
	test_defer((test_cleanup_fn)buf_release, &b);
	ASSERT_EQ(metrics_render(&b, &src), 0);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(head, sizeof(head), "# TYPE %s ", names[i]);
		ASSERT_CONTAINS(b.p, head);
		snprintf(head, sizeof(head), "# HELP %s ", names[i]);
		ASSERT_CONTAINS(b.p, head);
	}
	ASSERT_CONTAINS(b.p, "\nleadsync_polls_total{offer=\"7\",variant=\"processing\","
			     "outcome=\"ok\"} 3\n");
	ASSERT_CONTAINS(b.p, "\nleadsync_polls_total{offer=\"7\",variant=\"dates\","
			     "outcome=\"rule_error\"} 2\n");
	ASSERT(!strstr(b.p, "outcome=\"decode_error\"")); /* series only once they count */
	ASSERT_CONTAINS(b.p, "\nleadsync_leads_checked_total{source=\"poll\"} 6\n");
	ASSERT_CONTAINS(b.p, "\nleadsync_leads_checked_total{source=\"dates\"} 4\n");
	ASSERT_CONTAINS(b.p, "\nleadsync_leads_checked_total{source=\"timer\"} 6\n");
	ASSERT_CONTAINS(b.p, "\nleadsync_leads_changed_total{source=\"timer\"} 5\n");
	ASSERT_CONTAINS(b.p, "\nleadsync_postbacks_total{outcome=\"created\",code=\"200\"} 4\n");
	ASSERT_CONTAINS(b.p, "\nleadsync_crm_request_duration_seconds_bucket{host=\"crm.example:443\","
			     "le=\"0.5\"} 1\n");
	ASSERT_CONTAINS(b.p, "\nleadsync_crm_request_duration_seconds_count{host=\"other\"} 0\n");
	ASSERT_CONTAINS(b.p, "\nleadsync_rule_limit_exhausted_total{limit=\"budget\"} 2\n");
	ASSERT_CONTAINS(b.p, "\nleadsync_timer_approvals_total 5\n");
	ASSERT_CONTAINS(b.p, "\nleadsync_leases_held 1\n");
	ASSERT_CONTAINS(b.p, "\nleadsync_db_job_duration_seconds_count 1\n");

	rc = test_run(argv, NULL, b.p, &out, &err);
	test_defer(free, out);
	test_defer(free, err);
	if (rc != 0)
		printf("  promtool (scripts/deps.sh installs it): exit %d\n%s%s\n", rc,
		       out ? out : "", err ? err : "");
	ASSERT_EQ(rc, 0);
}

/* ---------------------------------------------------------------- logs */

/* What log calls made by fn wrote to stderr, malloc'd. */
static char *tm_capture(void (*fn)(void))
{
	char path[] = "/tmp/leadsync-log-XXXXXX";
	int fd = mkstemp(path), saved;
	char *s;

	if (fd < 0)
		return NULL;
	fflush(stderr);
	saved = dup(2);
	dup2(fd, 2);
	fn();
	dup2(saved, 2);
	close(saved);
	close(fd);
	s = test_slurp(path);
	unlink(path);
	return s;
}

static void tm_lines(void)
{
	char q[64];
	struct log_lead ll[2] = { { 901, 10, 812, 2, 6 }, { 902, 11, 4411, 0, 2 } };

	log_info("poll done", "offer=%d variant=%s run=%d err=%s code=007 neg=-3", 10, "processing",
		 812, log_quote(q, sizeof(q), "bad \"x\" \\ y"));
	log_lead_changes("poll", ll, 1);
	log_lead_changes("postback", ll + 1, 1);
	log_lead_changes("timer", ll, 1);
	log_warn("bare", "%s", "flag");
}

static void tm_restore(void *arg)
{
	log_format = LOG_LOGFMT;
	log_level = *(int *)arg;
}

TEST(log_formats_carry_the_same_keys)
{
	static int saved;
	char *s;
	cJSON *j;
	char *line, *save;
	int n = 0;

	saved = log_level;
	test_defer(tm_restore, &saved);
	log_level = LOG_DEBUG;
	log_format = LOG_LOGFMT;
	s = tm_capture(tm_lines);
	ASSERT(s);
	test_defer(free, s);
	ASSERT_CONTAINS(s, "level=info msg=\"poll done\" offer=10 variant=processing run=812"
			   " err=\"bad \\\"x\\\" \\\\ y\" code=007 neg=-3\n");
	ASSERT_CONTAINS(s, "msg=\"lead changed\" lead=901 offer=10 source=poll run=812 from=2 to=6\n");
	ASSERT_CONTAINS(s, "msg=\"lead changed\" lead=902 offer=11 source=postback postback=4411"
			   " from=0 to=2\n");
	ASSERT_CONTAINS(s, "msg=\"lead changed\" lead=901 offer=10 source=timer from=2 to=6\n");

	log_format = LOG_JSON;
	s = tm_capture(tm_lines);
	ASSERT(s);
	test_defer(free, s);
	ASSERT_CONTAINS(s, "\"level\":\"info\",\"msg\":\"poll done\",\"offer\":10,"
			   "\"variant\":\"processing\",\"run\":812,\"err\":\"bad \\\"x\\\" \\\\ y\","
			   "\"code\":\"007\",\"neg\":-3}\n");
	ASSERT_CONTAINS(s, "\"msg\":\"lead changed\",\"lead\":901,\"offer\":10,\"source\":\"poll\","
			   "\"run\":812,\"from\":2,\"to\":6}\n");
	ASSERT_CONTAINS(s, "\"source\":\"postback\",\"postback\":4411,");
	ASSERT_CONTAINS(s, "\"lead\":901,\"offer\":10,\"source\":\"timer\",\"from\":2,\"to\":6}\n");
	ASSERT_CONTAINS(s, "\"msg\":\"bare\",\"flag\":\"\"}\n");
	for (line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
		j = cJSON_Parse(line);
		ASSERT(j && cJSON_IsObject(j));
		ASSERT_STREQ(j->child->string, "ts");
		cJSON_Delete(j);
	}
	ASSERT_EQ(n, 5);
}

TEST(log_format_parses_its_names)
{
	ASSERT_EQ(log_format_parse("logfmt"), LOG_LOGFMT);
	ASSERT_EQ(log_format_parse("json"), LOG_JSON);
	ASSERT_EQ(log_format_parse("JSON"), -1);
	ASSERT_EQ(log_format_parse(NULL), -1);
}

/* ------------------------------------------------------ hosts are capped */

static void tm_http_cb(struct http_client_req *req, struct http_result *res, void *ud)
{
	(*(int *)ud)++;
}

static void tm_http_closed(struct http_client *c, void *data)
{
	*(bool *)data = true;
}

struct tm_http {
	uv_loop_t loop;
	struct http_client *c;
	bool closed;
};

/* Closes the client (if open) and the loop, whatever the test reached. */
static void tm_http_cleanup(void *arg)
{
	struct tm_http *t = arg;

	if (t->c) {
		http_client_close(t->c, tm_http_closed, &t->closed);
		t->c = NULL;
	}
	uv_run(&t->loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&t->loop) != 0)
		printf("  loop left with handles open\n");
}

/* The first HTTP_CLIENT_METRIC_HOSTS hosts get a duration series each,
 * every later one counts under "other" (ports nobody listens on: each
 * request ends at once, refused, and is timed all the same). */
TEST(metrics_crm_hosts_are_capped)
{
	const int extra = 6, total = HTTP_CLIENT_METRIC_HOSTS + extra;
	const struct http_client_host *h;
	struct http_request rq = { 0 };
	struct tm_http t = { 0 };
	char url[64], err[256];
	int i, done = 0;
	size_t n;
	uint64_t sum = 0;

	ASSERT_EQ(uv_loop_init(&t.loop), 0);
	test_defer(tm_http_cleanup, &t);
	ASSERT_EQ(http_client_new(&t.loop, NULL, &t.c, err, sizeof(err)), 0);
	for (i = 0; i < total; i++) {
		/* ports 200.. (under 1024: nothing of ours listens there) */
		snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", 200 + i);
		rq.url = url;
		ASSERT_EQ(http_client_request(t.c, &rq, tm_http_cb, &done, NULL, err, sizeof(err)), 0);
	}
	while (done < total && uv_run(&t.loop, UV_RUN_ONCE))
		;
	ASSERT_EQ(done, total);
	h = http_client_hosts(t.c, &n);
	ASSERT_EQ(n, HTTP_CLIENT_METRIC_HOSTS + 1);
	ASSERT_STREQ(h[0].name, "127.0.0.1:200");
	ASSERT_STREQ(h[n - 1].name, "other");
	ASSERT_EQ(h[n - 1].duration.count, extra);
	for (i = 0; i < (int)n; i++)
		sum += h[i].duration.count;
	ASSERT_EQ(sum, total);
	ASSERT(test_undefer(tm_http_cleanup, &t)); /* t lives on this frame */
	tm_http_cleanup(&t);
	ASSERT(t.closed);
}
