/* listener: the HTTP/1.1 server of leadsync (S2S postbacks, click redirects,
 * lead intake, later /metrics, /healthz and the admin API), run on the same
 * libuv loop as the CRM poller.
 *
 * Model. One listener owns a listening TCP socket and its connections. A
 * connection parses one request at a time (libhttp-parser); a complete
 * request is matched against the route table and handed to the route's
 * handler, which answers with listener_respond() either before it returns
 * or later, from the loop thread (e.g. after a database commit). Requests a
 * client pipelines behind a pending one stay unparsed in the connection's
 * input buffer until the answer is out, so answers leave in request order.
 * Keep-alive is HTTP/1.1's default; HTTP/1.0 closes unless the client asks
 * for keep-alive.
 *
 * Threads. Every function here runs on the loop thread only. A handler that
 * hands work to another thread comes back through a uv_async_t (or similar)
 * before it calls listener_respond().
 *
 * Lifetime. A request given to a handler stays valid until the handler calls
 * listener_respond() (or listener_respond_error()) on it, exactly once, and
 * no longer: that call ends it. This holds when the client has gone (the
 * answer is then sent if the socket still takes it, else dropped;
 * listener_req_client_gone() tells the handler) and while the listener is
 * closing. A request never answered keeps its
 * connection, and so listener_close(), from finishing.
 *
 * Limits. Every buffer is bounded by struct listener_limits; each violation
 * has its own answer (see there), always JSON {"ok":false,"error":"..."},
 * after which the connection is closed. No client can block the loop or grow
 * memory past the limits.
 *
 * Strict HTTP. What a proxy in front could read differently is refused, and
 * the connection closed: HTTP/0.9, a request line without a version (or
 * naming 0.9: the parser reads both alike) (400), any other version than
 * HTTP/1.0 and 1.1 (505), whitespace between a header name and its colon
 * (400),
 * Transfer-Encoding other than exactly one "chunked" (501), Expect other
 * than "100-continue" (417), Content-Length beside Transfer-Encoding (400).
 *
 * Not thread-safe. SIGPIPE: listener_start() sets it to be ignored when it is
 * at its default, since a write to a vanished client must not kill the
 * daemon.
 */
#ifndef LEADSYNC_LISTENER_H
#define LEADSYNC_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct listener;
struct listener_req;

/* Method bits of a route's mask. A route that allows GET also answers HEAD
 * (the body is left out, Content-Length kept). Other methods never match a
 * route: 405 where a route has the path, else 404. */
enum listener_method {
	LISTENER_GET = 1u << 0,
	LISTENER_HEAD = 1u << 1,
	LISTENER_POST = 1u << 2,
	LISTENER_PUT = 1u << 3,
	LISTENER_DELETE = 1u << 4,
	LISTENER_PATCH = 1u << 5,
	LISTENER_OPTIONS = 1u << 6,
};

/* A handler is given the request and its route's data. It must end the
 * request with listener_respond() now or later (see Lifetime above). */
typedef void (*listener_handler_fn)(struct listener_req *req, void *data);

/* One row of the route table. The pattern is a path whose segments are
 * literal or a whole-segment parameter "{name}" matching one non-empty
 * segment: "/{api_key}/s2s", "/click/{offer}", "/healthz". Literal parts are
 * compared with the raw path, byte for byte; parameter values are
 * percent-decoded. Rows are tried in order; the first whose pattern and
 * method both match wins. */
struct listener_route {
	unsigned methods; /* LISTENER_* bits */
	const char *pattern;
	listener_handler_fn handler;
	void *data;
};

#define LISTENER_MAX_PARAMS 8 /* "{param}" segments per pattern */

/* Limits; a field left 0 takes the default in brackets. */
struct listener_limits {
	size_t max_url_bytes;      /* request target [8 KiB] -> 414 */
	size_t max_header_bytes;   /* header names and values [16 KiB] -> 431 */
	unsigned max_headers;      /* header fields [100] -> 431 */
	size_t max_body_bytes;     /* body [64 KiB] -> 413: from Content-Length
	                            * before reading, or while reading chunks */
	size_t max_response_bytes; /* a handler's answer [16 MiB]; larger -> 500 */
	unsigned max_requests;     /* per connection [1000]; the last answer
	                            * carries Connection: close */
	unsigned max_connections;  /* open at once [1024]. At the cap the
	                            * oldest idle connection (kept alive, or
	                            * open with nothing sent yet) is closed to
	                            * make room, as nginx does; with none idle
	                            * the new one is answered 503 with
	                            * Retry-After and closed */
	unsigned max_connections_per_ip; /* open at once from one peer
	                            * address [128]; more: 503 with Retry-After,
	                            * closed (nothing is evicted for them). Not
	                            * below max_connections: no per-address cap
	                            * (one proxy in front may use them all) */
	uint64_t header_timeout_ms; /* first byte of a request to end of its
	                             * headers [10 s] -> 408. A connection that
	                             * sends nothing at all within it gets no
	                             * 408: it is closed without a word, since
	                             * nothing was asked (as nginx does) */
	uint64_t body_timeout_ms;   /* end of headers to end of body [30 s] -> 408 */
	uint64_t idle_timeout_ms;   /* keep-alive between requests [60 s] -> closed,
	                             * no answer; a next request begun and not
	                             * finished is under header_timeout_ms: 408 */
	uint64_t idle_pressure_ms;  /* keep-alive between requests while more
	                             * than 3/4 of max_connections are open
	                             * [5 s, at most idle_timeout_ms]; idle ones
	                             * older than it are closed, oldest first, as
	                             * new connections come */
	uint64_t write_timeout_ms;  /* an answer the client does not read [30 s]
	                             * -> close */
	uint64_t linger_ms;         /* after the last answer, unread input is
	                             * drained this long before closing, so the
	                             * answer is not lost to a reset [2 s] */
};

/* A request the listener answered itself (400, 405, 408, 413, 414, 417,
 * 431, 501, 505) after it had read at least part of its target, for a caller
 * that keeps a log of requests (the incoming-postback log); and a 503 at a
 * connection cap whose request line had already arrived when the
 * connection was accepted (nothing more is waited for). Valid during the
 * call only. */
struct listener_refusal {
	const char *method; /* "POST" */
	const char *target; /* the raw request target as far as it was read */
	size_t target_len;
	const char *remote; /* the peer's address */
	int status;
	const char *error;  /* the message the client was sent */
	/* the route the target's path names (one that takes the method, else
	 * the first whose pattern matches); NULL: none. A log of one route's
	 * requests keeps only its own (GET /healthz with a target too long is
	 * not a postback). */
	const struct listener_route *route;
};
typedef void (*listener_refused_fn)(const struct listener_refusal *r, void *data);

struct listener_config {
	const char *addr; /* "host:port": "127.0.0.1:8080", "[::1]:8080";
	                   * numeric hosts only; port 0 picks a free port */
	const struct listener_route *routes; /* not copied: must outlive the
	                                      * listener (a static table) */
	size_t nroutes;
	struct listener_limits limits;
	listener_refused_fn refused; /* may be NULL; called on the loop thread */
	void *refused_data;
};

/* Counters, kept in one place for /metrics. */
struct listener_stats {
	uint64_t requests;        /* answers sent, the listener's own errors too */
	uint64_t status_class[6]; /* answers by class: [2] 2xx ... [5] 5xx */
	uint64_t connections;     /* accepted and served */
	uint64_t conn_rejected;   /* accepted, answered 503 and closed: over
	                           * max_connections with none idle, or over
	                           * max_connections_per_ip */
	uint64_t conn_rejected_ip; /* of conn_rejected: over the per-address cap */
	uint64_t conn_evicted;    /* idle ones closed to make room or under
	                           * pressure (idle_pressure_ms) */
	uint64_t timeouts;        /* 408s and idle/write deadline closes */
	uint64_t bytes_in;
	uint64_t bytes_out;
	/* gauges, taken when listener_stats() is called */
	uint64_t conn_active;     /* open connections */
	uint64_t req_pending;     /* requests with a handler, not answered yet */
	uint64_t buffer_bytes;    /* bytes held by connection buffers */
};

/* Starts listening on cfg->addr with cfg's routes and limits. On success
 * *out is the listener; on failure returns -1 with a message in err and
 * *out is NULL (a socket already opened is closed, and freed by the loop's
 * next run). */
__attribute__((warn_unused_result))
int listener_start(uv_loop_t *loop, const struct listener_config *cfg,
		   struct listener **out, char *err, size_t errlen);

/* The port actually bound (useful with port 0). */
int listener_port(const struct listener *l);

void listener_stats(const struct listener *l, struct listener_stats *out);

typedef void (*listener_close_cb)(struct listener *l, void *data);

/* Stops accepting, closes idle connections at once and the others after
 * their request in progress is answered (with Connection: close). When
 * nothing is left open, cb (may be NULL) is called from the loop, never from
 * within listener_close(); l may still be read inside cb (listener_stats)
 * and is freed when cb returns. Call once. */
void listener_close(struct listener *l, listener_close_cb cb, void *data);

/* --- The request, valid from the handler call until it is answered. --- */

unsigned listener_req_method(const struct listener_req *req); /* a LISTENER_* bit, 0 if none */
const char *listener_req_method_name(const struct listener_req *req); /* "GET" */
/* The path as sent (still percent-encoded), without the query. */
const char *listener_req_path(const struct listener_req *req);
/* The raw query string without '?'; "" when there is none. */
const char *listener_req_query(const struct listener_req *req);
struct buf;
/* Appends the target as received, path and query ("/k/s2s?a=1"), to out
 * (the request holds them apart). 0, or -1 when out of memory. */
int listener_req_target(const struct listener_req *req, struct buf *out);
/* The value of path parameter `name` ("api_key" for "{api_key}"),
 * percent-decoded; NULL if the route has no such parameter. len (may be
 * NULL) receives the length: values may hold any byte, NUL included. */
const char *listener_req_param(const struct listener_req *req, const char *name, size_t *len);
/* The first query parameter called `name`, decoded ('+' is a space, %XX a
 * byte, a malformed escape kept as written); NULL when absent. */
const char *listener_query_get(const struct listener_req *req, const char *name, size_t *len);
/* The first header called `name` (case-insensitive), trailing blanks
 * trimmed; NULL when absent. */
const char *listener_req_header(const struct listener_req *req, const char *name);
/* True when the request carries "Authorization: Bearer <token>". The
 * token is compared in constant time (buf_ct_equal: every byte of the
 * longer is read, so timing tells the length difference and nothing of
 * the bytes); a NULL or empty token matches nothing. */
bool listener_req_bearer_is(const struct listener_req *req, const char *token);
/* The body (NUL-terminated for convenience; may hold NULs); "" when empty. */
const char *listener_req_body(const struct listener_req *req, size_t *len);
/* The peer's IP address as text ("127.0.0.1", "::1"). */
const char *listener_req_remote(const struct listener_req *req);
/* True once the client has closed or reset the connection; the request must
 * still be answered (the answer is sent if the socket still takes it). */
bool listener_req_client_gone(const struct listener_req *req);
struct listener *listener_req_listener(const struct listener_req *req);

/* Decoded name=value pairs of an application/x-www-form-urlencoded text (a
 * query string or a body). Names and values are NUL-terminated and carry
 * their length (they may hold NULs); bytes are kept verbatim, UTF-8 or not. */
struct listener_kv {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
};
struct listener_form {
	struct listener_kv *kv; /* n pairs in order; one allocation with the text */
	size_t n;
};

/* The query's pairs (parsed when the request arrived). */
const struct listener_form *listener_req_query_form(const struct listener_req *req);
/* The body parsed as a form, on first call (whatever its Content-Type: the
 * caller decides); NULL when out of memory. */
const struct listener_form *listener_req_body_form(struct listener_req *req);

/* Parses s[0..len) into f (empty pieces skipped, a piece without '=' has an
 * empty value). Returns 0, or -1 when out of memory (f is then empty). The
 * caller releases f with listener_form_release(). */
__attribute__((warn_unused_result))
int listener_form_parse(struct listener_form *f, const char *s, size_t len);
/* The first value of `name`, or NULL; len (may be NULL) gets its length. */
const char *listener_form_get(const struct listener_form *f, const char *name, size_t *len);
void listener_form_release(struct listener_form *f);

/* --- Answers. --- */

/* Ends req with an answer: status (200..599; anything else becomes 500),
 * content_type (NULL: no Content-Type), body[0..len) and extra_headers
 * (NULL, or lines "Name: value\r\n", e.g. "Location: ...\r\n"). The
 * listener adds Content-Length, and Connection: close when it closes the
 * connection. Headers holding a stray CR or LF are refused (500 and a
 * logged error) rather than sent. body and extra_headers are copied, so
 * they may point into the request. Loop thread only; once per request. */
void listener_respond(struct listener_req *req, int status, const char *content_type,
		      const void *body, size_t len, const char *extra_headers);
/* Answers {"ok":false,"error":msg} as application/json. */
void listener_respond_error(struct listener_req *req, int status, const char *msg);

#endif
