/* mock_crm: a scripted HTTP/1.1 server on 127.0.0.1 standing in for
 * advertisers' CRMs in tests: slow, paged, wrong and down on request.
 *
 * It runs in its own thread (plain sockets and poll(2)), so the code under
 * test keeps its own loop. Each request is matched against the route table
 * (first match wins) and answered as its route says; every request is
 * recorded (method, path, query, headers, body, arrival and answer times,
 * connection, requests in flight at the server when it arrived) for the
 * test to assert on. Keep-alive is honoured (HTTP/1.1 default); unknown
 * paths get 404; a request line that is not HTTP (a TLS hello, say) gets a
 * plain 400 and the connection is closed.
 *
 * Times are CLOCK_MONOTONIC microseconds (mock_now_us()), the clock of
 * uv_hrtime(), so they compare with the test's own measurements.
 */
#ifndef LEADSYNC_MOCK_CRM_H
#define LEADSYNC_MOCK_CRM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct mock_crm;

/* One recorded request. Strings belong to the mock and live until
 * mock_crm_stop(). */
struct mock_request {
	char method[16];
	const char *path;      /* as sent, without the query */
	const char *query;     /* without '?'; "" when none */
	const char *headers;   /* "name\0value\0" for each of nheaders, names as sent */
	unsigned nheaders;
	const char *body;      /* NUL-terminated; may hold NULs */
	size_t body_len;
	int route;             /* index of the route that answered; -1: 404 */
	unsigned conn;         /* connection number, from 1 in accept order */
	unsigned in_flight;    /* requests in flight at the server on arrival, this one included */
	uint64_t t_arrive_us;  /* request fully read */
	uint64_t t_done_us;    /* answer fully written or connection gone; 0 until then */
};

/* The first header called name (case-insensitive), or NULL. */
const char *mock_request_header(const struct mock_request *r, const char *name);

/* What a MOCK_FUNC route's function fills in (run on the mock's thread). */
struct mock_answer {
	int status;            /* [200] */
	struct buf headers;    /* extra lines "Name: value\r\n" */
	struct buf body;       /* Content-Type defaults to application/json */
	unsigned delay_ms;     /* before the answer is sent */
	bool close;            /* close the connection after answering */
	/* status 0: close the connection without answering */
};

typedef void (*mock_fn)(const struct mock_request *req, struct mock_answer *ans, void *data);

enum mock_kind {
	MOCK_FIXED,   /* status, headers, body, after delay_ms */
	MOCK_DRIP,    /* headers at once (after delay_ms), then body one byte per drip_ms */
	MOCK_CHUNKED, /* `size` bytes of 'x' in 16 KiB chunks (Transfer-Encoding: chunked) */
	MOCK_CLOSE,   /* reads the request, closes the connection without answering */
	MOCK_GZIP,    /* body (or, when size > 0, `size` bytes of 'a') gzip-encoded,
	               * Content-Encoding: gzip; runs of a byte compress ~250:1 */
	MOCK_PAGED,   /* JSON page ?page=N (default 1) of `pages`, `per_page` items:
	               * {"current_page":N,"last_page":P,"data":[{"id":"1","status":"processing"},...]} */
	MOCK_FUNC,    /* fn(req, answer, data) builds the answer */
};

/* A row of the route table. Strings must outlive the mock. */
struct mock_route {
	const char *path;      /* exact path ("/api/orders"); "*" matches any */
	enum mock_kind kind;
	int status;            /* [200] */
	const char *headers;   /* extra lines "Name: value\r\n" (e.g. "Retry-After: 1\r\n",
	                        * "Location: /x\r\n") */
	const char *body;      /* [""]; Content-Type defaults to application/json */
	unsigned delay_ms;     /* before the answer starts */
	unsigned drip_ms;      /* MOCK_DRIP: between body bytes */
	size_t size;           /* MOCK_CHUNKED, MOCK_GZIP */
	unsigned pages;        /* MOCK_PAGED */
	unsigned per_page;     /* MOCK_PAGED [10] */
	unsigned times;        /* answers only its first `times` matches, then later
	                        * rows take over [0: every match] */
	bool close;            /* Connection: close, then close */
	mock_fn fn;            /* MOCK_FUNC */
	void *data;
};

/* Starts a server on 127.0.0.1 with a free port; routes are copied. 0, or
 * -1 (a message on stderr) with *out NULL. */
int mock_crm_start(struct mock_crm **out, const struct mock_route *routes, size_t nroutes);
int mock_crm_port(const struct mock_crm *m);
/* Copies up to max records (in arrival order) into out; returns how many
 * requests were recorded in all. */
size_t mock_crm_requests(struct mock_crm *m, struct mock_request *out, size_t max);
/* The most requests in flight at once (read, not yet answered). */
unsigned mock_crm_max_in_flight(struct mock_crm *m);
/* Connections accepted so far. */
unsigned mock_crm_connections(struct mock_crm *m);
/* Stops the thread, closes every socket, frees everything. */
void mock_crm_stop(struct mock_crm *m);

uint64_t mock_now_us(void);

#endif
