/* admin_page: the operator page at /admin/ (issue 9): its static files,
 * embedded in the binary at build time (src/admin/ through
 * scripts/embed.sh), and the listener handler that serves them.
 *
 * The page is static and public: its files carry no data and are served
 * without the admin token; every data call the page makes goes to
 * /admin/api/... with `Authorization: Bearer TOKEN`. Each answer carries
 * `Cache-Control: no-cache` (a new binary serves a new page at once), a
 * strict Content-Security-Policy (same origin only: no inline script, no
 * external request) and `X-Content-Type-Options: nosniff`.
 *
 * Routes (rows of the daemon's table, GET and so HEAD):
 *   /admin         -> 308 to /admin/
 *   /admin/        -> index.html
 *   /admin/{file}  -> that file, 404 when the page has none of that name
 * Loop thread only, like every listener handler; no state. */
#ifndef LEADSYNC_ADMIN_PAGE_H
#define LEADSYNC_ADMIN_PAGE_H

#include <stddef.h>

#include "listener.h"

/* One embedded file; the table ends with a row whose name is NULL. data is
 * NUL-terminated for convenience; len does not count the NUL. */
struct admin_page_asset {
	const char *name; /* base name: "index.html", "app.js" */
	const unsigned char *data;
	size_t len;
};

extern const struct admin_page_asset admin_page_assets[]; /* generated */

/* The file called name, or NULL. */
const struct admin_page_asset *admin_page_find(const char *name);

/* Its Content-Type, from the name's extension. */
const char *admin_page_content_type(const char *name);

/* The headers every answer of the page carries, "Name: value\r\n" lines. */
extern const char admin_page_headers[];

/* The routes above as rows for a listener's table (the daemon copies them
 * into its own; a test serves them alone). */
#define ADMIN_PAGE_NROUTES 3
extern const struct listener_route admin_page_routes[ADMIN_PAGE_NROUTES];

#endif
