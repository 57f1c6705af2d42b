/* listener_int: the listener's test seam (tests and fuzz targets only; the
 * daemon uses listener.h). A listener's connections make their stream
 * calls through a struct listener_io: listener_start() gives them
 * libuv's own (listener_io_uv); listener__open() takes a test's, so a
 * connection made by listener__adopt() needs no socket: the test collects
 * what is written, feeds input by calling the read callback its
 * read_start was given (as libuv would, only between read_start and
 * read_stop), and completes or fails writes itself.
 *
 * Cost on the real path: one indirect call per stream call (one per
 * answer written when the socket takes it at once, as before). */
#ifndef LEADSYNC_LISTENER_INT_H
#define LEADSYNC_LISTENER_INT_H

#include "listener.h"

/* Each with the contract of the libuv call it stands for. A fake's close
 * must end in uv_close(h, cb) (the connection is freed from cb), after
 * dropping whatever it still holds for that stream (a write not
 * completed: its callback must not run any more). */
struct listener_io {
	int (*try_write)(uv_stream_t *s, const uv_buf_t bufs[], unsigned n);
	int (*write)(uv_write_t *req, uv_stream_t *s, const uv_buf_t bufs[], unsigned n,
		     uv_write_cb cb);
	int (*shutdown)(uv_shutdown_t *req, uv_stream_t *s, uv_shutdown_cb cb);
	int (*read_start)(uv_stream_t *s, uv_alloc_cb alloc_cb, uv_read_cb read_cb);
	int (*read_stop)(uv_stream_t *s);
	void (*close)(uv_handle_t *h, uv_close_cb cb);
};

extern const struct listener_io listener_io_uv;

/* A listener with cfg's routes and limits (cfg->addr is not read) and no
 * socket: connections come only from listener__adopt(). Its connections
 * use io (not copied: must outlive the listener). Closed and freed by
 * listener_close() as any. 0, or -1 with a message in err. */
__attribute__((warn_unused_result))
int listener__open(uv_loop_t *loop, const struct listener_config *cfg,
		   const struct listener_io *io, struct listener **out, char *err, size_t errlen);

/* A connection without a socket, from peer address text remote, admitted
 * as an accepted one (caps and eviction); its stream is an initialised
 * uv_tcp_t with no fd, handed to the io calls. It has called read_start
 * when this returns. NULL when out of memory or refused at a cap (it is
 * then closing). */
uv_stream_t *listener__adopt(struct listener *l, const char *remote);

#endif
