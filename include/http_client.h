/* http_client: the CRM-facing HTTP client of leadsync, libcurl's multi
 * interface driven by curl_multi_socket_action on the daemon's libuv loop.
 *
 * Model. One client owns one CURLM (so connections, DNS answers and TLS
 * sessions are shared and reused: HTTP keep-alive, TCP keep-alive) and three
 * libuv handles of its own (curl's timeout timer, a wake-up timer for held
 * hosts and rate-limited keys, an idle handle that delivers deferred
 * callbacks) plus one uv_poll_t per socket curl asks to watch. Nothing here
 * blocks the loop: sockets are non-blocking, names are resolved by curl's
 * threaded resolver (a transfer that ends while its name is still being
 * resolved leaves that thread to finish alone, CURLOPT_QUICK_EXIT, rather
 * than joining it), and every wait is a timer armed for the moment it ends.
 *
 * Admission. A request starts only when all of these allow it:
 *   - the global cap on requests in flight (limits.max_in_flight);
 *   - the per-host cap (limits.max_per_host), a host being the "host:port"
 *     of the request's URL (lowercase, default port filled in; the host of
 *     a redirect target is not counted separately);
 *   - the host is not on hold: an answer 429 or 503 carrying Retry-After
 *     (delta-seconds or HTTP-date) holds the host for that long (capped by
 *     limits.max_retry_after_ms); requests in flight go on, queued and new
 *     ones wait. A 429/503 without Retry-After holds nothing;
 *   - the request's rate key, if any, has a token: a token bucket per key
 *     (request.rate_key) refilled at request.rate_per_min, holding at most
 *     request.rate_burst tokens (the newest request's figures win). A
 *     token is taken when the request starts, so starts of one key are
 *     spaced by 60 s / rate_per_min once the burst is spent.
 * Waiting requests queue FIFO per (host, key); hosts with something to start
 * are served round-robin, so one slow or held CRM never delays another. The
 * queue is bounded (limits.max_queued): a request that would pass it is
 * refused with an error. The CURLM's MAX_HOST_CONNECTIONS and
 * MAX_TOTAL_CONNECTIONS are set to the caps, so curl never queues on its own.
 *
 * Transfers. Connect timeout and total timeout (from the start, queueing
 * not counted), optional low-speed abort, the answer body capped while it is
 * read (decoded bytes: a small gzip answer that inflates past the cap is
 * too_large too), redirects followed up to a limit and only to http/https,
 * compressed answers accepted (every encoding curl knows), TLS verified
 * (peer and host name; limits.ca_file replaces the system CAs), no signals.
 * Only http:// and https:// URLs are accepted.
 *
 * Callbacks. http_client_request() either returns -1 with a message (the
 * callback is then never called) or returns 0, and then the callback is
 * called exactly once, on the loop thread, never from within
 * http_client_request(), http_client_cancel() or http_client_close(): with
 * the transfer's result, or with HTTP_CANCELLED. An HTTP error status is not
 * a transport failure: a 500 is outcome HTTP_OK with status 500.
 *
 * Lifetime. The handle (struct http_client_req) is valid from a successful
 * http_client_request() until its callback returns; the request's data
 * (URL, headers, body, key) are copied, the caller's may go at once. The
 * result and everything it points to are valid during the callback only
 * (http_result_take_body() keeps the body). A callback may make new
 * requests, cancel others, or close the client.
 *
 * Threads. Every function runs on the loop thread only. Not thread-safe.
 */
#ifndef LEADSYNC_HTTP_CLIENT_H
#define LEADSYNC_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "metrics.h"

struct http_client;
struct http_client_req;

/* How a transfer ended: about the transport, not the HTTP status. */
enum http_outcome {
	HTTP_OK = 0,         /* a complete answer arrived, whatever its status */
	HTTP_TIMEOUT,        /* connect timeout, total timeout or too slow */
	HTTP_CONNECT_ERROR,  /* name not resolved, connection refused/unreachable */
	HTTP_TLS_ERROR,      /* handshake failed, certificate not trusted */
	HTTP_TOO_LARGE,      /* the answer passed max_response_bytes */
	HTTP_BAD_ANSWER,     /* closed without an answer, reset, malformed, bad encoding */
	HTTP_REDIRECT_ERROR, /* too many redirects, or to a refused protocol or bad URL */
	HTTP_CANCELLED,      /* http_client_cancel() or http_client_close() */
	HTTP_INTERNAL_ERROR, /* out of memory, or an unexpected curl error */
	HTTP_OUTCOME_COUNT
};

/* "ok", "timeout", "connect_error", "tls_error", "too_large", "bad_answer",
 * "redirect_error", "cancelled", "internal_error". */
const char *http_outcome_name(enum http_outcome o);

/* Limits of a client; a field left 0 takes the default in brackets. */
struct http_client_limits {
	unsigned max_in_flight;      /* requests in flight, all hosts [64] */
	unsigned max_per_host;       /* requests in flight per host:port [8] */
	unsigned max_queued;         /* requests waiting to start [10000] */
	uint64_t connect_timeout_ms; /* [10 s] */
	uint64_t timeout_ms;         /* whole transfer, redirects included [60 s] */
	size_t max_response_bytes;   /* decoded answer body [8 MiB] */
	int max_redirects;           /* [5]; HTTP_NO_REDIRECTS: not followed */
	uint64_t max_retry_after_ms; /* longest host hold a Retry-After sets [600 s] */
	unsigned low_speed_bytes;    /* abort (timeout) below this many bytes/s ... */
	unsigned low_speed_time_s;   /* ... for this long [both 0: off] */
	const char *ca_file;         /* PEM CA bundle instead of the system's
	                              * (copied) [NULL] */
	const char *user_agent;      /* [leadsync] (copied) */
	/* The client's clock in µs, monotonic and above 0 [NULL:
	 * uv_hrtime() / 1000]. Rate keys, Retry-After holds, queued_ms and
	 * total_ms are read from it (curl's own timeouts are not: they run
	 * on curl's clock). Tests inject one to move time by hand and then
	 * call http_client_wake(). */
	uint64_t (*clock_us)(void *ctx);
	void *clock_ctx;
};

#define HTTP_NO_REDIRECTS (-1)

struct http_header {
	const char *name;  /* an HTTP token: no blanks, colons, CR or LF */
	const char *value; /* no CR, LF */
};

/* One request. Only url is required. */
struct http_request {
	const char *method;  /* "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"...
	                      * NULL: POST when there is a body, else GET */
	const char *url;     /* http:// or https:// */
	const struct http_header *headers; /* sent as given, after curl's own;
	                                    * a name with an empty value removes
	                                    * curl's header of that name */
	size_t nheaders;
	const void *body;    /* sent as is (Content-Length); curl's default
	                      * Content-Type is form-urlencoded: set yours */
	size_t body_len;
	/* Rate limit: requests naming the same key share a token bucket. */
	const char *rate_key;   /* e.g. "offer:10"; NULL: no limit */
	double rate_per_min;    /* > 0 with a key; e.g. 60 for KeyCRM */
	unsigned rate_burst;    /* tokens the bucket holds [1] */
	/* Per-request overrides of the client's limits (0: the client's). */
	uint64_t connect_timeout_ms;
	uint64_t timeout_ms;
	size_t max_response_bytes;
	int max_redirects;      /* HTTP_NO_REDIRECTS: not followed */
};

/* What the callback gets. Pointers are valid during the callback only. */
struct http_result {
	enum http_outcome outcome;
	long status;              /* the last HTTP status, 0 when none came */
	char *body;               /* NUL-terminated, never NULL ("" when empty);
	                           * at most max_response_bytes (too_large: the
	                           * part that fitted) */
	size_t body_len;
	uint64_t bytes;           /* body bytes received (decoded), over the cap too */
	uint64_t bytes_sent;      /* request body bytes sent */
	double queued_ms;         /* from http_client_request() to the start */
	double total_ms;          /* from the start to the end */
	long retry_after_s;       /* Retry-After of the last answer, -1 when none
	                           * or unreadable; a date becomes seconds from
	                           * now, 0 when past */
	long redirects;           /* redirects followed */
	const char *effective_url; /* the last URL asked; may carry secrets
	                            * (keys in the query): mask before logging */
	const char *content_type; /* "" when none */
	const char *error;        /* "" when outcome is ok, else curl's text or ours */
};

/* Takes the body out of the result: the caller frees the returned string
 * (NUL-terminated, res->body_len bytes); res->body becomes "". NULL only
 * when out of memory. */
char *http_result_take_body(struct http_result *res);

/* Called exactly once per accepted request (see Callbacks above). */
typedef void (*http_client_cb)(struct http_client_req *req, struct http_result *res,
			       void *ud);

/* Counters, kept in one place for /metrics. */
struct http_client_stats {
	uint64_t requests;                   /* accepted by http_client_request() */
	uint64_t refused;                    /* refused: queue full, bad request, closing */
	uint64_t started;                    /* transfers started */
	uint64_t done[HTTP_OUTCOME_COUNT];   /* results by outcome, counted just before
	                                      * their callback runs */
	uint64_t status_class[6];            /* HTTP_OK answers by class: [2] 2xx ... [5] 5xx */
	uint64_t bytes_in;                   /* body bytes received */
	uint64_t bytes_out;                  /* body bytes sent */
	uint64_t holds;                      /* host holds set by Retry-After */
	uint64_t rate_waits;                 /* times a key ran out of tokens */
	/* gauges, taken when http_client_stats() is called */
	uint64_t in_flight;
	uint64_t queued;
	uint64_t hosts;                      /* hosts known (in use, queued or held) */
	uint64_t hosts_held;                 /* of which on a Retry-After hold */
	uint64_t keys;                       /* rate keys known */
	uint64_t sockets;                    /* sockets watched for curl */
};

/* Request durations by host, for /metrics: the first
 * HTTP_CLIENT_METRIC_HOSTS hosts ("host:port") a client sees get a series
 * each, kept for the client's life; later hosts share one named "other". */
#define HTTP_CLIENT_METRIC_HOSTS 64
#define HTTP_CLIENT_HOST_NAME_MAX 272
struct http_client_host {
	char name[HTTP_CLIENT_HOST_NAME_MAX];
	struct metrics_hist duration; /* from the start to the end, seconds
	                               * (total_ms), every request that started */
};

/* The series, *n of them, in order of first use; valid until the loop
 * turns. */
const struct http_client_host *http_client_hosts(const struct http_client *c, size_t *n);

/* Creates a client on loop. Returns 0 with *out set, or -1 with a message
 * in err (*out NULL; nothing is left open). limits may be NULL (all
 * defaults); it is copied. */
__attribute__((warn_unused_result))
int http_client_new(uv_loop_t *loop, const struct http_client_limits *limits,
		    struct http_client **out, char *err, size_t errlen);

/* Queues req and starts it when its caps allow (possibly at once). Returns
 * 0, with *handle (may be NULL) set to the request, or -1 with a message in
 * err when the request is malformed (URL, scheme, method, header), the
 * queue is full, or the client is closing; the callback is then never
 * called. */
__attribute__((warn_unused_result))
int http_client_request(struct http_client *c, const struct http_request *req,
			http_client_cb cb, void *ud, struct http_client_req **handle,
			char *err, size_t errlen);

/* Stops req, queued or in flight: its callback is called later from the
 * loop with outcome HTTP_CANCELLED (not from within this call). A request
 * whose transfer has already finished but whose callback has not run yet
 * keeps its result. No-op from within req's own callback. req must not be
 * used after its callback has returned. */
void http_client_cancel(struct http_client_req *req);

/* The URL and the user data a request was made with. */
const char *http_client_req_url(const struct http_client_req *req);
void *http_client_req_data(const struct http_client_req *req);

void http_client_stats(const struct http_client *c, struct http_client_stats *out);

/* Starts, at once, what holds and rate keys allow by now on the client's
 * clock. The client calls it itself from a loop timer armed for the next
 * hold or token; call it after moving an injected clock (limits.clock_us)
 * forward, since that timer runs on the loop's real clock. Callbacks are
 * not called from within it. No-op once closing. */
void http_client_wake(struct http_client *c);

typedef void (*http_client_close_cb)(struct http_client *c, void *data);

/* Cancels every request, queued or in flight (each callback is called with
 * HTTP_CANCELLED, from the loop), then closes every libuv handle and the
 * CURLM. When all is freed, cb (may be NULL) is called from the loop, never
 * from within http_client_close(); c may still be read in cb
 * (http_client_stats) and is freed when cb returns. New requests are
 * refused from the moment of this call. Call once. */
void http_client_close(struct http_client *c, http_client_close_cb cb, void *data);

#endif
