/* metrics: the Prometheus text exposition of the daemon's counters (see
 * metrics.h), and the histogram the modules record into. */
#include "metrics.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "http_client.h"
#include "listener.h"
#include "poller.h"
#include "postback.h"
#include "timers.h"

const double metrics_crm_bounds[] = { 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60 };
const size_t metrics_crm_nbounds = sizeof(metrics_crm_bounds) / sizeof(metrics_crm_bounds[0]);
const double metrics_db_bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
				     0.1,   0.25,   0.5,   1,    2.5,   10 };
const size_t metrics_db_nbounds = sizeof(metrics_db_bounds) / sizeof(metrics_db_bounds[0]);

void metrics_hist_init(struct metrics_hist *h, const double *bounds, size_t nbounds)
{
	memset(h, 0, sizeof(*h));
	h->bounds = bounds;
	h->nbounds = nbounds < METRICS_HIST_MAX ? nbounds : METRICS_HIST_MAX;
}

void metrics_hist_observe(struct metrics_hist *h, double v)
{
	size_t i = 0;

	if (!(v >= 0)) /* NaN or negative: a clock that went back */
		v = 0;
	while (i < h->nbounds && v > h->bounds[i])
		i++;
	h->counts[i]++;
	h->count++;
	h->sum += v;
}

/* ------------------------------------------------------------- writers */

int metrics_head(struct buf *out, const char *name, const char *type, const char *help)
{
	return buf_addf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type) < 0 ? -1 : 0;
}

/* A label value as the format wants it: \\, \" and \n escaped. */
static int metrics__value(struct buf *out, const char *v)
{
	int rc = 0;

	for (; v && *v && !rc; v++) {
		if (*v == '\\')
			rc = buf_adds(out, "\\\\");
		else if (*v == '"')
			rc = buf_adds(out, "\\\"");
		else if (*v == '\n')
			rc = buf_adds(out, "\\n");
		else
			rc = buf_addc(out, *v);
	}
	return rc;
}

/* {a="x",b="y"} with le="..." last when le is not NULL; nothing when there
 * are no labels. */
static int metrics__labels(struct buf *out, const struct metrics_label *l, size_t nl,
			   const char *le)
{
	size_t i;
	int rc = 0;

	if (!nl && !le)
		return 0;
	rc |= buf_addc(out, '{');
	for (i = 0; i < nl; i++) {
		rc |= buf_addf(out, "%s%s=\"", i ? "," : "", l[i].name);
		rc |= metrics__value(out, l[i].value);
		rc |= buf_addc(out, '"');
	}
	if (le)
		rc |= buf_addf(out, "%sle=\"%s\"", nl ? "," : "", le);
	rc |= buf_addc(out, '}');
	return rc ? -1 : 0;
}

/* A number as Go's strconv would read it: integers without a fraction,
 * the rest with enough digits to come back exact. */
static int metrics__number(struct buf *out, double v)
{
	if (isnan(v))
		return buf_adds(out, "NaN");
	if (isinf(v))
		return buf_adds(out, v > 0 ? "+Inf" : "-Inf");
	if (fabs(v) < 9e15 && v == (double)(int64_t)v)
		return buf_addf(out, "%" PRId64, (int64_t)v);
	return buf_addf(out, "%.17g", v);
}

int metrics_sample(struct buf *out, const char *name, const struct metrics_label *l, size_t nl,
		   double v)
{
	int rc = 0;

	rc |= buf_adds(out, name);
	rc |= metrics__labels(out, l, nl, NULL);
	rc |= buf_addc(out, ' ');
	rc |= metrics__number(out, v);
	rc |= buf_addc(out, '\n');
	return rc ? -1 : 0;
}

int metrics_hist_write(struct buf *out, const char *name, const struct metrics_label *l,
		       size_t nl, const struct metrics_hist *h)
{
	uint64_t cum = 0;
	char le[32];
	size_t i;
	int rc = 0;

	for (i = 0; i <= h->nbounds; i++) {
		cum += h->counts[i];
		if (i < h->nbounds)
			snprintf(le, sizeof(le), "%g", h->bounds[i]);
		else
			snprintf(le, sizeof(le), "+Inf");
		rc |= buf_addf(out, "%s_bucket", name);
		rc |= metrics__labels(out, l, nl, le);
		rc |= buf_addf(out, " %" PRIu64 "\n", cum);
	}
	rc |= buf_addf(out, "%s_sum", name);
	rc |= metrics__labels(out, l, nl, NULL);
	rc |= buf_addc(out, ' ');
	rc |= metrics__number(out, h->sum);
	rc |= buf_addf(out, "\n%s_count", name);
	rc |= metrics__labels(out, l, nl, NULL);
	rc |= buf_addf(out, " %" PRIu64 "\n", h->count);
	return rc ? -1 : 0;
}

void metrics_process(int64_t *rss_bytes, int64_t *open_fds)
{
	long long size, resident;
	long page = sysconf(_SC_PAGESIZE);
	FILE *f = fopen("/proc/self/statm", "r");
	DIR *d;
	struct dirent *e;

	*rss_bytes = -1;
	if (f) {
		if (fscanf(f, "%lld %lld", &size, &resident) == 2 && page > 0)
			*rss_bytes = (int64_t)resident * page;
		fclose(f);
	}
	*open_fds = -1;
	d = opendir("/proc/self/fd");
	if (d) {
		int64_t n = 0;

		while ((e = readdir(d)))
			if (e->d_name[0] != '.')
				n++;
		*open_fds = n - 1; /* not the descriptor reading the folder */
		closedir(d);
	}
}

/* ------------------------------------------------------------- render */

/* One unlabelled series with its head. */
static int metrics__one(struct buf *out, const char *name, const char *type, const char *help,
			double v)
{
	return metrics_head(out, name, type, help) | metrics_sample(out, name, NULL, 0, v);
}

static int metrics__polls(struct buf *out, const struct metrics_source *s)
{
	static const char name[] = "leadsync_polls_total";
	char offer[24];
	size_t i;
	int o, rc = 0;

	rc |= metrics_head(out, name, "counter",
			   "CRM polls (poll_runs rows) by offer, variant and outcome; one series "
			   "per offer and variant this daemon has polled");
	for (i = 0; i < s->npolls; i++) {
		const struct poller_count *c = &s->polls[i];

		snprintf(offer, sizeof(offer), "%" PRId64, c->offer);
		for (o = 0; o < POLL_OUTCOME_COUNT; o++) {
			struct metrics_label l[3] = {
				{ "offer", offer },
				{ "variant", rule_variant_name(c->variant) },
				{ "outcome", poll_outcome_name((enum poll_outcome)o) },
			};

			if (c->outcomes[o])
				rc |= metrics_sample(out, name, l, 3, (double)c->outcomes[o]);
		}
	}
	return rc;
}

/* The rule threads: CPU per offer variant, slow runs, and the pool. */
static int metrics__rules(struct buf *out, const struct metrics_source *s)
{
	static const char cpu[] = "leadsync_rule_cpu_seconds_total";
	static const char slow[] = "leadsync_rule_slow_runs_total";
	char offer[24];
	size_t i;
	int rc = 0;

	rc |= metrics_head(out, cpu, "counter",
			   "CPU time of the rules (decode, prepare, process on the rule threads) by "
			   "offer and variant");
	for (i = 0; i < s->npolls; i++) {
		const struct poller_count *c = &s->polls[i];
		struct metrics_label l[2] = { { "offer", offer },
					      { "variant", rule_variant_name(c->variant) } };

		snprintf(offer, sizeof(offer), "%" PRId64, c->offer);
		if (c->rule_ns)
			rc |= metrics_sample(out, cpu, l, 2, (double)c->rule_ns / 1e9);
	}
	rc |= metrics_head(out, slow, "counter",
			   "poll runs whose rule took LEADSYNC_RULE_SLOW_MS or more of CPU per batch, "
			   "by offer and variant");
	for (i = 0; i < s->npolls; i++) {
		const struct poller_count *c = &s->polls[i];
		struct metrics_label l[2] = { { "offer", offer },
					      { "variant", rule_variant_name(c->variant) } };

		snprintf(offer, sizeof(offer), "%" PRId64, c->offer);
		if (c->slow_runs)
			rc |= metrics_sample(out, slow, l, 2, (double)c->slow_runs);
	}
	rc |= metrics__one(out, "leadsync_rule_threads", "gauge", "threads the rules run on",
			   s->poller ? (double)s->poller->rule_threads : 0);
	rc |= metrics__one(out, "leadsync_rule_jobs_waiting", "gauge",
			   "rule calls (a batch's prepare or an answer's process) waiting for a "
			   "rule thread", s->poller ? (double)s->poller->rule_waiting : 0);
	rc |= metrics__one(out, "leadsync_rule_jobs_running", "gauge",
			   "rule calls running on the rule threads",
			   s->poller ? (double)s->poller->rule_running : 0);
	return rc;
}

static int metrics__crm(struct buf *out, const struct metrics_source *s)
{
	static const char name[] = "leadsync_crm_request_duration_seconds";
	size_t i;
	int rc = 0;

	rc |= metrics_head(out, name, "histogram",
			   "CRM request time from its start to its end (queueing not counted) by "
			   "host:port; past the cap of hosts tracked, host=\"other\"");
	for (i = 0; i < s->nhosts; i++) {
		struct metrics_label l = { "host", s->hosts[i].name };

		rc |= metrics_hist_write(out, name, &l, 1, &s->hosts[i].duration);
	}
	return rc;
}

static int metrics__leads(struct buf *out, const struct metrics_source *s)
{
	static const char *const srcs[] = { "poll", "dates", "postback", "timer" };
	uint64_t checked[4] = { 0 }, changed[4] = { 0 };
	size_t i;
	int rc = 0;

	if (s->poller) {
		checked[0] = s->poller->leads_asked - s->poller->leads_asked_dates;
		changed[0] = s->poller->leads_changed - s->poller->leads_changed_dates;
		checked[1] = s->poller->leads_asked_dates;
		changed[1] = s->poller->leads_changed_dates;
	}
	if (s->postback) {
		checked[2] = s->postback->leads_checked;
		changed[2] = s->postback->leads_changed;
	}
	if (s->timers) {
		checked[3] = s->timers->picked;
		changed[3] = s->timers->approved + s->timers->rejected;
	}
	rc |= metrics_head(out, "leadsync_leads_checked_total", "counter",
			   "leads looked at, by source: asked of a CRM (poll, dates), named by a "
			   "postback, picked by a timer");
	for (i = 0; i < 4; i++) {
		struct metrics_label l = { "source", srcs[i] };

		rc |= metrics_sample(out, "leadsync_leads_checked_total", &l, 1, (double)checked[i]);
	}
	rc |= metrics_head(out, "leadsync_leads_changed_total", "counter",
			   "leads changed (one lead_history row each), by source");
	for (i = 0; i < 4; i++) {
		struct metrics_label l = { "source", srcs[i] };

		rc |= metrics_sample(out, "leadsync_leads_changed_total", &l, 1, (double)changed[i]);
	}
	return rc;
}

static int metrics__postbacks(struct buf *out, const struct metrics_source *s)
{
	static const char name[] = "leadsync_postbacks_total";
	char code[8];
	size_t i;
	int rc = 0;

	rc |= metrics_head(out, name, "counter",
			   "incoming postbacks by outcome (as in the postback log) and HTTP status");
	for (i = 0; i < s->npostbacks; i++) {
		struct metrics_label l[2] = { { "outcome", s->postbacks[i].outcome }, { "code", code } };

		snprintf(code, sizeof(code), "%d", s->postbacks[i].code);
		rc |= metrics_sample(out, name, l, 2, (double)s->postbacks[i].n);
	}
	return rc;
}

static int metrics__rule_limits(struct buf *out, const struct metrics_source *s)
{
	static const char name[] = "leadsync_rule_limit_exhausted_total";
	static const char *const limits[] = { "budget", "memory", "time" };
	size_t i;
	int rc = 0;

	rc |= metrics_head(out, name, "counter",
			   "rule calls killed by a limit: instruction budget, memory cap, time");
	for (i = 0; i < 3; i++) {
		struct metrics_label l = { "limit", limits[i] };

		rc |= metrics_sample(out, name, &l, 1,
				     s->poller ? (double)s->poller->rule_limits[i] : 0);
	}
	return rc;
}

int metrics_render(struct buf *out, const struct metrics_source *s)
{
	struct metrics_hist empty;
	int64_t rss, fds;
	int rc = 0;

	rc |= metrics__polls(out, s);
	rc |= metrics__crm(out, s);
	rc |= metrics__leads(out, s);
	rc |= metrics__postbacks(out, s);
	rc |= metrics__one(out, "leadsync_timer_approvals_total", "counter",
			   "leads approved by the hold timer (their hold ran out)",
			   s->timers ? (double)s->timers->approved : 0);
	rc |= metrics__one(out, "leadsync_timer_rejections_total", "counter",
			   "leads rejected by the reject-after timer (reason 17)",
			   s->timers ? (double)s->timers->rejected : 0);
	rc |= metrics__one(out, "leadsync_crm_requests_in_flight", "gauge",
			   "CRM requests started and not finished",
			   s->http ? (double)s->http->in_flight : 0);
	rc |= metrics__one(out, "leadsync_leases_held", "gauge",
			   "(offer, variant) pairs this daemon holds leased and is polling",
			   s->poller ? (double)s->poller->sched.in_flight : 0);
	rc |= metrics__one(out, "leadsync_db_queue_depth", "gauge",
			   "database jobs waiting for a worker", s->db ? (double)s->db->queued : 0);
	metrics_hist_init(&empty, metrics_db_bounds, metrics_db_nbounds);
	rc |= metrics_head(out, "leadsync_db_job_duration_seconds", "histogram",
			   "database job time from its submission to its completion (queue wait "
			   "included)");
	rc |= metrics_hist_write(out, "leadsync_db_job_duration_seconds", NULL, 0,
				 s->db_jobs ? s->db_jobs : &empty);
	rc |= metrics__rule_limits(out, s);
	rc |= metrics__rules(out, s);
	rc |= metrics__one(out, "leadsync_listener_connections_open", "gauge",
			   "HTTP connections open on the listener",
			   s->listener ? (double)s->listener->conn_active : 0);
	rc |= metrics__one(out, "leadsync_listener_connections_refused_total", "counter",
			   "HTTP connections refused (over the connection cap with none idle, or "
			   "over the per-address cap: 503 and closed)",
			   s->listener ? (double)s->listener->conn_rejected : 0);
	rc |= metrics__one(out, "leadsync_listener_connections_evicted_total", "counter",
			   "idle HTTP connections closed to make room at the connection cap, or "
			   "idle too long while near it",
			   s->listener ? (double)s->listener->conn_evicted : 0);
	rc |= metrics__one(out, "leadsync_database_up", "gauge",
			   "1 when a database worker holds a live connection", s->db_up ? 1 : 0);
	rc |= metrics__one(out, "leadsync_ready", "gauge",
			   "1 when serving (/readyz 200), 0 while starting or draining",
			   s->ready ? 1 : 0);
	metrics_process(&rss, &fds);
	if (rss >= 0)
		rc |= metrics__one(out, "process_resident_memory_bytes", "gauge",
				   "resident memory size in bytes", (double)rss);
	if (fds >= 0)
		rc |= metrics__one(out, "process_open_fds", "gauge", "number of open file descriptors",
				   (double)fds);
	return rc ? -1 : 0;
}
