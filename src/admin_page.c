/* admin_page: serves the operator page's embedded files (see admin_page.h). */
#include "admin_page.h"

#include <string.h>

const char admin_page_headers[] =
	"Cache-Control: no-cache\r\n"
	"Content-Security-Policy: default-src 'self'; script-src 'self'; style-src 'self'; "
	"img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
	"form-action 'self'; frame-ancestors 'none'\r\n"
	"X-Content-Type-Options: nosniff\r\n"
	"Referrer-Policy: no-referrer\r\n";

const struct admin_page_asset *admin_page_find(const char *name)
{
	const struct admin_page_asset *a;

	for (a = admin_page_assets; a->name; a++)
		if (strcmp(a->name, name) == 0)
			return a;
	return NULL;
}

const char *admin_page_content_type(const char *name)
{
	static const struct {
		const char *ext;
		const char *type;
	} types[] = {
		{ ".html", "text/html; charset=utf-8" },
		{ ".js", "text/javascript; charset=utf-8" },
		{ ".css", "text/css; charset=utf-8" },
		{ ".svg", "image/svg+xml" },
		{ ".png", "image/png" },
		{ ".ico", "image/x-icon" },
	};
	const char *dot = strrchr(name, '.');
	size_t i;

	for (i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(dot, types[i].ext) == 0)
			return types[i].type;
	return "application/octet-stream";
}

static void admin_page__file(struct listener_req *req, void *data)
{
	size_t len = 0;
	const char *name = listener_req_param(req, "file", &len);
	const struct admin_page_asset *a = NULL;

	(void)data;
	if (!name)
		a = admin_page_find("index.html");
	else if (strlen(name) == len) /* a %00 names no file */
		a = admin_page_find(name);
	if (!a) {
		listener_respond_error(req, 404, "not found");
		return;
	}
	listener_respond(req, 200, admin_page_content_type(a->name), a->data, a->len,
			 admin_page_headers);
}

static void admin_page__redirect(struct listener_req *req, void *data)
{
	(void)data;
	listener_respond(req, 308, "text/plain; charset=utf-8", "/admin/\n", 8,
			 "Location: /admin/\r\nCache-Control: no-cache\r\n");
}

const struct listener_route admin_page_routes[ADMIN_PAGE_NROUTES] = {
	{ LISTENER_GET, "/admin", admin_page__redirect, NULL },
	{ LISTENER_GET, "/admin/", admin_page__file, NULL },
	{ LISTENER_GET, "/admin/{file}", admin_page__file, NULL },
};
