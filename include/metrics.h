/* metrics: the Prometheus text exposition (format 0.0.4) of the daemon's
 * counters, served at GET /metrics, and the histogram type the modules
 * record into.
 *
 * Model. The modules keep their own counters (the *_stats structs, plus
 * the labelled tables below); the daemon takes a snapshot of each on the
 * loop thread and metrics_render() writes the whole text from it. Nothing
 * here keeps state of its own, so a scrape costs one pass over the
 * snapshots and nothing is counted twice.
 *
 * Names (agreed with the alert rules in docker/; extend, never rename):
 *   leadsync_polls_total{offer,variant,outcome}        counter
 *   leadsync_crm_request_duration_seconds{host}        histogram
 *   leadsync_leads_checked_total{source}               counter
 *   leadsync_leads_changed_total{source}               counter
 *   leadsync_postbacks_total{outcome,code}             counter
 *   leadsync_timer_approvals_total                     counter
 *   leadsync_timer_rejections_total                    counter
 *   leadsync_crm_requests_in_flight                    gauge
 *   leadsync_leases_held                               gauge
 *   leadsync_db_queue_depth                            gauge
 *   leadsync_db_job_duration_seconds                   histogram
 *   leadsync_rule_limit_exhausted_total{limit}         counter
 *   leadsync_rule_cpu_seconds_total{offer,variant}     counter
 *   leadsync_rule_slow_runs_total{offer,variant}       counter
 *   leadsync_rule_threads, leadsync_rule_jobs_waiting,
 *   leadsync_rule_jobs_running                         gauges
 *   leadsync_listener_connections_open                 gauge
 *   leadsync_listener_connections_refused_total        counter
 *   leadsync_listener_connections_evicted_total        counter
 *   leadsync_database_up, leadsync_ready               gauges (1/0)
 *   process_resident_memory_bytes, process_open_fds    gauges
 *
 * Cardinality. polls_total has one series per (offer, variant, outcome)
 * this daemon has polled: at most offers x 3 x 10, series appearing only
 * once they count. Hosts are capped by the http client
 * (HTTP_CLIENT_METRIC_HOSTS; later hosts are host="other"); postbacks by
 * (outcome, code) are a small fixed set.
 *
 * Threads: loop thread (the snapshots are taken there). */
#ifndef LEADSYNC_METRICS_H
#define LEADSYNC_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define METRICS_HIST_MAX 16 /* bucket bounds, +Inf not counted */

/* A histogram: counts[i] holds the observations <= bounds[i] and above
 * the bound before it (not cumulative), counts[nbounds] those above the
 * last bound; sum in the observations' unit (seconds). bounds is a static
 * array, ascending. Plain memory: copy it to take a snapshot. */
struct metrics_hist {
	const double *bounds;
	size_t nbounds;
	uint64_t counts[METRICS_HIST_MAX + 1];
	uint64_t count;
	double sum;
};

/* Bucket bounds, seconds. */
extern const double metrics_crm_bounds[];   /* CRM requests: 50 ms .. 60 s */
extern const size_t metrics_crm_nbounds;
extern const double metrics_db_bounds[];    /* database jobs: 1 ms .. 10 s */
extern const size_t metrics_db_nbounds;

void metrics_hist_init(struct metrics_hist *h, const double *bounds, size_t nbounds);
void metrics_hist_observe(struct metrics_hist *h, double v);

struct metrics_label {
	const char *name;
	const char *value; /* escaped when written */
};

/* The writers; each appends to out (buf.h: out's maximum applies) and
 * returns 0 or -1 when it is full or out of memory. */
int metrics_head(struct buf *out, const char *name, const char *type, const char *help);
int metrics_sample(struct buf *out, const char *name, const struct metrics_label *l, size_t nl,
		   double v);
/* name_bucket{...,le="..."} cumulative, le="+Inf", name_sum, name_count. */
int metrics_hist_write(struct buf *out, const char *name, const struct metrics_label *l,
		       size_t nl, const struct metrics_hist *h);

/* Resident memory (/proc/self/statm) and open descriptors (/proc/self/fd);
 * -1 where it cannot be read. */
void metrics_process(int64_t *rss_bytes, int64_t *open_fds);

/* The snapshot metrics_render() writes. Pointers may be NULL where the
 * daemon runs without that part (no poller, no timers): its series are
 * then written as 0, or left out when they have labels. */
struct http_client_stats;
struct http_client_host;
struct poller_stats;
struct poller_count;
struct db_stats;
struct listener_stats;
struct postback_stats;
struct postback_count;
struct timers_stats;

struct metrics_source {
	const struct poller_stats *poller;
	const struct poller_count *polls; /* sorted by offer, variant */
	size_t npolls;
	const struct http_client_stats *http;
	const struct http_client_host *hosts;
	size_t nhosts;
	const struct db_stats *db;
	const struct metrics_hist *db_jobs;
	bool db_up;
	const struct listener_stats *listener;
	const struct postback_stats *postback;
	const struct postback_count *postbacks;
	size_t npostbacks;
	const struct timers_stats *timers;
	bool ready;
};

/* Appends the whole exposition. Returns 0, or -1 when out is full. */
int metrics_render(struct buf *out, const struct metrics_source *src);

#endif
