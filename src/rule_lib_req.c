/* rule_lib_req: the request a rule asks for: the request table a
 * variant's declaration gives prepare, and the turning of a request table
 * into struct rule_request; a next page's fields are packed in C between
 * calls. */
#include "rule_int.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- requests -------------------------------------------------------- */

static bool lib_method_ok(const char *m)
{
	return !strcmp(m, "GET") || !strcmp(m, "POST") || !strcmp(m, "PUT") || !strcmp(m, "PATCH") ||
	       !strcmp(m, "DELETE");
}

/* The json.array/json.object mark of the table at src, if any, on the
 * table at dst too. */
static void lib_copy_mark(lua_State *L, int src, int dst)
{
	struct rule_rt *rt = rule__rt(L);

	src = lua_absindex(L, src);
	dst = lua_absindex(L, dst);
	lua_rawgeti(L, LUA_REGISTRYINDEX, rt->ref_marks);
	lua_pushvalue(L, src);
	if (lua_rawget(L, -2) != LUA_TNIL) {
		lua_pushvalue(L, dst);
		lua_insert(L, -2);
		lua_rawset(L, -3);
	} else {
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

/* Packed fields: what a next page inherits from the request before it,
 * kept in C between calls (struct rule_request.fields). A value is a tag
 * byte and its data, so the fields come back exactly as they were sent
 * (integers stay integers, big ids and marks are kept):
 *   'z' json.null, 't' true, 'f' false, 'i' lua_Integer, 'd' lua_Number
 *   (both native bytes), 's' size_t length and bytes, and a table:
 *   'T', its mark ('A' json.array, 'O' json.object, '-' none), size_t
 *   count, then count pairs of key ('i' or 's') and value. */
static void lib_pack(lua_State *L, int idx, struct buf *b, int depth)
{
	struct rule_rt *rt = rule__rt(L);
	lua_Integer iv;
	lua_Number nv;
	const char *s;
	size_t l, n = 0;
	char tag;

	idx = lua_absindex(L, idx);
	switch (lua_type(L, idx)) {
	case LUA_TBOOLEAN:
		rule__add(L, b, lua_toboolean(L, idx) ? "t" : "f", 1);
		return;
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx)) {
			iv = lua_tointeger(L, idx);
			rule__add(L, b, "i", 1);
			rule__add(L, b, (const char *)&iv, sizeof(iv));
		} else {
			nv = lua_tonumber(L, idx);
			rule__add(L, b, "d", 1);
			rule__add(L, b, (const char *)&nv, sizeof(nv));
		}
		return;
	case LUA_TSTRING:
		s = lua_tolstring(L, idx, &l);
		rule__add(L, b, "s", 1);
		rule__add(L, b, (const char *)&l, sizeof(l));
		rule__add(L, b, s, l);
		return;
	case LUA_TTABLE:
		break;
	default:
		if (decode_is_null(L, idx)) {
			rule__add(L, b, "z", 1);
			return;
		}
		rule__errorf(L, "request: fields: a %s value cannot be sent", luaL_typename(L, idx));
	}
	if (depth >= RULE_LIB_DEPTH)
		rule__errorf(L, "request: fields nested deeper than %d (a cycle?)", RULE_LIB_DEPTH);
	luaL_checkstack(L, 6, "fields");
	lua_rawgeti(L, LUA_REGISTRYINDEX, rt->ref_marks);
	lua_pushvalue(L, idx);
	lua_rawget(L, -2);
	tag = lua_type(L, -1) != LUA_TNUMBER		 ? '-'
	      : lua_tointeger(L, -1) == RULE_ARRAY ? 'A'
						     : 'O';
	lua_pop(L, 2);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		n++;
	}
	rule__add(L, b, "T", 1);
	rule__add(L, b, &tag, 1);
	rule__add(L, b, (const char *)&n, sizeof(n));
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		if (lua_type(L, -2) != LUA_TSTRING && !lua_isinteger(L, -2))
			rule__errorf(L, "request: fields: a key of type %s cannot be sent",
				   luaL_typename(L, -2));
		lib_pack(L, -2, b, depth + 1);
		lib_pack(L, -1, b, depth + 1);
		lua_pop(L, 1);
	}
}

/* Reads n bytes of packed data at *p into out; raises past end (only a
 * bug of ours could get there). */
static void lib_unpack_bytes(lua_State *L, const char **p, const char *end, void *out, size_t n)
{
	if ((size_t)(end - *p) < n)
		rule__errorf(L, "internal error: packed fields cut short");
	memcpy(out, *p, n);
	*p += n;
}

/* Pushes the value packed at *p (lib_pack). */
static void lib_unpack(lua_State *L, const char **p, const char *end, int depth)
{
	struct rule_rt *rt = rule__rt(L);
	lua_Integer iv;
	lua_Number nv;
	size_t l, n, i;
	char tag, mark;

	luaL_checkstack(L, 6, "fields");
	lib_unpack_bytes(L, p, end, &tag, 1);
	switch (tag) {
	case 'z':
		decode_push_null(L);
		return;
	case 't':
	case 'f':
		lua_pushboolean(L, tag == 't');
		return;
	case 'i':
		lib_unpack_bytes(L, p, end, &iv, sizeof(iv));
		lua_pushinteger(L, iv);
		return;
	case 'd':
		lib_unpack_bytes(L, p, end, &nv, sizeof(nv));
		lua_pushnumber(L, nv);
		return;
	case 's':
		lib_unpack_bytes(L, p, end, &l, sizeof(l));
		if ((size_t)(end - *p) < l)
			rule__errorf(L, "internal error: packed fields cut short");
		lua_pushlstring(L, *p, l);
		*p += l;
		return;
	case 'T':
		break;
	default:
		rule__errorf(L, "internal error: packed fields: tag %d", tag);
	}
	if (depth >= RULE_LIB_DEPTH)
		rule__errorf(L, "internal error: packed fields too deep");
	lib_unpack_bytes(L, p, end, &mark, 1);
	lib_unpack_bytes(L, p, end, &n, sizeof(n));
	lua_createtable(L, 0, n < 64 ? (int)n : 64);
	for (i = 0; i < n; i++) {
		lib_unpack(L, p, end, depth + 1);
		lib_unpack(L, p, end, depth + 1);
		lua_rawset(L, -3);
	}
	if (mark != '-') {
		lua_rawgeti(L, LUA_REGISTRYINDEX, rt->ref_marks);
		lua_pushvalue(L, -2);
		lua_pushinteger(L, mark == 'A' ? RULE_ARRAY : RULE_OBJECT);
		lua_rawset(L, -3);
		lua_pop(L, 1);
	}
}

/* Expands the data fields of the table at src into a new table (pushed). */
static void lib_fields(lua_State *L, struct rule_rt *rt, int src, struct buf *b, int depth)
{
	struct rule_call *c = rt->call;
	char err[256];
	size_t i;

	if (depth >= RULE_LIB_DEPTH)
		rule__errorf(L, "fields nested deeper than %d", RULE_LIB_DEPTH);
	luaL_checkstack(L, 8, "fields");
	lua_createtable(L, 0, 8);
	lib_copy_mark(L, src, lua_gettop(L));
	lua_pushnil(L);
	while (lua_next(L, src)) {
		int vt = lua_type(L, -1);

		lua_pushvalue(L, -2); /* k v k */
		if (vt == LUA_TSTRING) {
			const char *t = lua_tostring(L, -2);
			int arr = c->v == RULE_DATES ? MACRO_ARRAY_NONE : macro_field_array(t);

			if (arr != MACRO_ARRAY_NONE) {
				lua_createtable(L, (int)c->mctx.n, 0);
				for (i = 0; i < c->mctx.n; i++) {
					if (arr == MACRO_ARRAY_IDS)
						lua_pushinteger(L, c->mctx.ids[i]);
					else
						lua_pushstring(L, c->mctx.exts[i]);
					lua_rawseti(L, -2, (lua_Integer)i + 1);
				}
			} else {
				buf_reset(b);
				if (macro_expand(&c->mctx, t, MACRO_RAW, b, err, sizeof(err)) < 0)
					rule__fail(L, "%s: %s.fields: %s", rt->short_src,
						   rule_variant_name(c->v), err);
				lua_pushlstring(L, b->p ? b->p : "", b->len);
			}
		} else if (vt == LUA_TTABLE) {
			lib_fields(L, rt, lua_absindex(L, -2), b, depth + 1);
		} else {
			lua_pushvalue(L, -2);
		}
		lua_rawset(L, -5); /* k v */
		lua_pop(L, 1);
	}
}

void rule__push_request(lua_State *L, struct rule_rt *rt, int vidx)
{
	struct rule_call *c = rt->call;
	const char *vn = rule_variant_name(c->v);
	char err[256];
	struct buf *b;
	int r;

	vidx = lua_absindex(L, vidx);
	b = rule__ubuf(L, rt->lim.alloc_max);
	lua_createtable(L, 0, 8);
	r = lua_gettop(L);
	if (lua_getfield(L, vidx, "url") != LUA_TSTRING)
		rule__errorf(L, "%s.url must be a string", vn);
	if (macro_expand(&c->mctx, lua_tostring(L, -1), MACRO_URL, b, err, sizeof(err)) < 0)
		rule__fail(L, "%s: %s.url: %s", rt->short_src, vn, err);
	lua_pop(L, 1);
	lua_pushlstring(L, b->p ? b->p : "", b->len);
	lua_setfield(L, r, "url");
	if (lua_getfield(L, vidx, "method") == LUA_TSTRING) {
		char m[8];
		size_t i;

		snprintf(m, sizeof(m), "%s", lua_tostring(L, -1));
		for (i = 0; m[i]; i++)
			m[i] = (char)toupper((unsigned char)m[i]);
		lua_pushstring(L, m);
	} else {
		lua_pushliteral(L, "GET");
	}
	lua_setfield(L, r, "method");
	lua_pop(L, 1);
	lua_createtable(L, 0, 4);
	if (lua_getfield(L, vidx, "headers") == LUA_TTABLE) {
		lua_pushnil(L);
		while (lua_next(L, -2)) {
			if (lua_type(L, -2) != LUA_TSTRING || (lua_type(L, -1) != LUA_TSTRING &&
							       lua_type(L, -1) != LUA_TNUMBER))
				rule__fail(L, "%s: %s.headers: names and values must be strings",
					   rt->short_src, vn);
			buf_reset(b);
			if (macro_expand(&c->mctx, lua_tostring(L, -1), MACRO_HEADER, b, err,
					 sizeof(err)) < 0)
				rule__fail(L, "%s: %s.headers['%s']: %s", rt->short_src, vn,
					   lua_tostring(L, -2), err);
			lua_pop(L, 1);
			lua_pushvalue(L, -1);
			lua_pushlstring(L, b->p ? b->p : "", b->len);
			lua_rawset(L, -5);
		}
	}
	lua_pop(L, 1);
	lua_setfield(L, r, "headers");
	if (lua_getfield(L, vidx, "fields") == LUA_TTABLE)
		lib_fields(L, rt, lua_gettop(L), b, 0);
	else
		lua_createtable(L, 0, 0);
	lua_setfield(L, r, "fields");
	lua_pop(L, 1);
	if (lua_getfield(L, vidx, "encoding") != LUA_TSTRING) {
		lua_pop(L, 1);
		lua_pushliteral(L, "form");
	}
	lua_setfield(L, r, "encoding");
	lua_pushstring(L, decode_format_name(rt->info[c->v].format));
	lua_setfield(L, r, "format");
	lua_remove(L, r - 1); /* the buffer */
}

static int lib_header_find(const struct rule_request *q, const char *name)
{
	size_t i;

	for (i = 0; i < q->nheaders; i++)
		if (strcasecmp(q->headers[i].name, name) == 0)
			return (int)i;
	return -1;
}

static void lib_header_set(lua_State *L, struct rule_request *q, const char *name,
			   const char *value)
{
	const char *p;
	int i = lib_header_find(q, name);
	char *v;

	if (!*name)
		rule__errorf(L, "request: empty header name");
	for (p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("!#$%&'*+-.^_`|~", *p))
			rule__errorf(L, "request: header name '%s' is not a token", name);
	for (p = value; *p; p++)
		if (*p == '\r' || *p == '\n')
			rule__errorf(L, "request: header '%s' holds a line break", name);
	v = strdup(value);
	if (!v)
		rule__errorf(L, "out of memory");
	if (i >= 0) {
		free(q->headers[i].value);
		q->headers[i].value = v;
		return;
	}
	{
		struct rule_header *h = realloc(q->headers, (q->nheaders + 1) * sizeof(*h));
		char *n = strdup(name);

		if (!h || !n) {
			if (h)
				q->headers = h;
			free(n);
			free(v);
			rule__errorf(L, "out of memory");
		}
		q->headers = h;
		h[q->nheaders].name = n;
		h[q->nheaders].value = v;
		q->nheaders++;
	}
}

/* Appends the query (string, or table form-encoded) at idx to url. */
static void lib_add_query(lua_State *L, struct rule_rt *rt, struct buf *url, int idx)
{
	const char *q;
	size_t l;
	struct buf *tmp = NULL;

	if (lua_type(L, idx) == LUA_TTABLE) {
		tmp = rule__ubuf(L, rt->lim.alloc_max);
		rule__form_encode(L, idx, tmp);
		q = tmp->p ? tmp->p : "";
		l = tmp->len;
	} else {
		q = lua_tolstring(L, idx, &l);
	}
	if (l && url->p) {
		const char *qm = memchr(url->p, '?', url->len);
		char last = url->len ? url->p[url->len - 1] : 0;

		if (!qm)
			rule__add(L, url, "?", 1);
		else if (last != '?' && last != '&')
			rule__add(L, url, "&", 1);
		rule__add(L, url, q, l);
	}
	if (tmp)
		lua_pop(L, 1);
}

static char *lib_strdup(lua_State *L, const char *s)
{
	char *p = strdup(s);

	if (!p)
		rule__errorf(L, "out of memory");
	return p;
}

void rule__finish_request(lua_State *L, struct rule_rt *rt, int idx,
			  const struct rule_request *prev)
{
	struct rule_request *q = &rt->call->req;
	struct buf *url, *body, *x;
	const char *s = "", *enc = prev && prev->fields_json ? "json" : "form";
	char err[256];
	size_t i, l;
	bool has_fields = false, json = false, new_url = false;
	int t;

	idx = lua_absindex(L, idx);
	rule_request_release(q);
	url = rule__ubuf(L, rt->lim.alloc_max);
	body = rule__ubuf(L, rt->lim.alloc_max);
	x = rule__ubuf(L, rt->lim.alloc_max); /* macro expansion of a next page */
	/* method */
	t = lua_getfield(L, idx, "method");
	if (t == LUA_TSTRING) {
		s = lua_tostring(L, -1);
		for (i = 0; s[i] && i + 1 < sizeof(q->method); i++)
			q->method[i] = (char)toupper((unsigned char)s[i]);
		q->method[i] = '\0';
		if (s[i] || !lib_method_ok(q->method))
			rule__errorf(L, "request: method '%s' is not GET, POST, PUT, PATCH or DELETE", s);
	} else if (t == LUA_TNIL) {
		snprintf(q->method, sizeof(q->method), "%s", prev ? prev->method : "GET");
	} else {
		rule__errorf(L, "request: method must be a string");
	}
	lua_pop(L, 1);
	/* url */
	t = lua_getfield(L, idx, "url");
	if (t == LUA_TSTRING && prev) {
		/* a next page's url: its macros expand as the declared url's */
		buf_reset(x);
		if (macro_expand(&rt->call->mctx, lua_tostring(L, -1), MACRO_URL, x, err,
				 sizeof(err)) < 0)
			rule__errorf(L, "next: url: %s", err);
		lua_pop(L, 1);
		lua_pushlstring(L, x->p ? x->p : "", x->len);
		s = lua_tostring(L, -1);
		new_url = true;
	} else if (t == LUA_TSTRING)
		s = lua_tostring(L, -1);
	else if (t == LUA_TNIL && prev && prev->base_url)
		s = prev->base_url;
	else
		rule__errorf(L, "request: url must be a string");
	if (strncasecmp(s, "http://", 7) && strncasecmp(s, "https://", 8))
		rule__errorf(L, "request: url '%.60s' is not http:// or https://", s);
	for (i = 0; s[i]; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			rule__errorf(L, "request: url holds a space or a control character");
	q->base_url = lib_strdup(L, s);
	rule__adds(L, url, s);
	lua_pop(L, 1);
	/* query */
	t = lua_getfield(L, idx, "query");
	if (t == LUA_TSTRING || t == LUA_TTABLE)
		lib_add_query(L, rt, url, lua_gettop(L));
	else if (t != LUA_TNIL)
		rule__errorf(L, "request: query must be a string or a table");
	lua_pop(L, 1);
	/* encoding */
	t = lua_getfield(L, idx, "encoding");
	if (t == LUA_TSTRING) {
		enc = lua_tostring(L, -1);
		if (strcmp(enc, "form") && strcmp(enc, "json"))
			rule__errorf(L, "request: encoding '%s' is not form or json", enc);
	} else if (t != LUA_TNIL) {
		rule__errorf(L, "request: encoding must be a string");
	}
	json = strcmp(enc, "json") == 0;
	lua_pop(L, 1);
	/* headers: the previous request's, then these */
	for (i = 0; prev && i < prev->nheaders; i++)
		lib_header_set(L, q, prev->headers[i].name, prev->headers[i].value);
	t = lua_getfield(L, idx, "headers");
	if (t == LUA_TTABLE) {
		struct rule_key *k = rule__sorted_keys(L, lua_gettop(L), &l, "request.headers");

		for (i = 0; i < l; i++) {
			if (k[i].isint)
				rule__errorf(L, "request: header names must be strings");
			rule__push_key(L, &k[i]);
			lua_rawget(L, -3);
			if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
				rule__errorf(L, "request: header '%s' must be a string", k[i].s);
			if (prev) {
				buf_reset(x);
				if (macro_expand(&rt->call->mctx, lua_tostring(L, -1), MACRO_HEADER, x,
						 err, sizeof(err)) < 0)
					rule__errorf(L, "next: header '%s': %s", k[i].s, err);
				lua_pop(L, 1);
				lua_pushlstring(L, x->p ? x->p : "", x->len);
			}
			lib_header_set(L, q, k[i].s, lua_tostring(L, -1));
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	} else if (t != LUA_TNIL) {
		rule__errorf(L, "request: headers must be a table");
	}
	lua_pop(L, 1);
	/* body, or the fields */
	t = lua_getfield(L, idx, "body");
	if (t == LUA_TSTRING) {
		s = lua_tolstring(L, -1, &l);
		q->body_len = l;
		q->body = malloc(l + 1);
		if (!q->body)
			rule__errorf(L, "out of memory");
		memcpy(q->body, s, l);
		q->body[l] = '\0';
	} else if (t != LUA_TNIL) {
		rule__errorf(L, "request: body must be a string");
	}
	lua_pop(L, 1);
	t = lua_getfield(L, idx, "fields");
	if (t != LUA_TTABLE && t != LUA_TNIL)
		rule__errorf(L, "request: fields must be a table");
	if (prev) {
		/* a next page: the fields sent before (none after a new url: a
		 * link the CRM hands out is complete), next's fields merged over
		 * them with their macros expanded; json.null drops one */
		int given = lua_gettop(L);
		const char *p = prev->fields, *end = p + prev->fields_len;

		if (p && !new_url)
			lib_unpack(L, &p, end, 0);
		else
			lua_createtable(L, 0, 4);
		if (t == LUA_TTABLE) {
			lib_fields(L, rt, given, x, 0);
			lua_pushnil(L);
			while (lua_next(L, -2)) {
				if (decode_is_null(L, -1)) {
					lua_pop(L, 1);
					lua_pushnil(L);
				}
				lua_pushvalue(L, -2);
				lua_insert(L, -2);
				lua_rawset(L, -5);
			}
			lua_pop(L, 1);
		}
		lua_remove(L, given);
		t = LUA_TTABLE;
	}
	if (t == LUA_TTABLE) {
		lua_pushnil(L);
		if (lua_next(L, -2)) {
			lua_pop(L, 2);
			has_fields = true;
		}
	}
	if (has_fields) {
		/* kept for a next page to inherit */
		buf_reset(x);
		lib_pack(L, -1, x, 0);
		q->fields_len = x->len;
		q->fields = buf_steal(x);
		if (!q->fields)
			rule__errorf(L, "out of memory");
	}
	q->fields_json = json;
	if (has_fields && !q->body) {
		if (!strcmp(q->method, "GET") || !strcmp(q->method, "DELETE")) {
			lib_add_query(L, rt, url, lua_gettop(L));
		} else {
			if (json)
				rule__json_encode(L, -1, body);
			else
				rule__form_encode(L, -1, body);
			q->body_len = body->len;
			q->body = buf_steal(body);
			if (!q->body)
				rule__errorf(L, "out of memory");
			if (lib_header_find(q, "Content-Type") < 0)
				lib_header_set(L, q, "Content-Type",
					       json ? "application/json"
						    : "application/x-www-form-urlencoded");
		}
	}
	lua_pop(L, 1);
	/* format */
	t = lua_getfield(L, idx, "format");
	if (t == LUA_TSTRING) {
		int f = decode_format_parse(lua_tostring(L, -1));

		if (f < 0)
			rule__errorf(L, "request: format '%s' is not json, xml, form or text",
				   lua_tostring(L, -1));
		q->format = (enum decode_format)f;
	} else if (t == LUA_TNIL) {
		q->format = prev ? prev->format : rt->info[rt->call->v].format;
	} else {
		rule__errorf(L, "request: format must be a string");
	}
	lua_pop(L, 1);
	q->url = buf_steal(url);
	if (!q->url)
		rule__errorf(L, "out of memory");
	lua_pop(L, 3);
}
