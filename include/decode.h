/* decode: turns a CRM's answer into a Lua value by its declared format.
 *
 *   json  our own parser pushing straight onto the Lua stack (not cJSON:
 *         see src/decode.c; cJSON stays the encoder elsewhere). RFC 8259,
 *         strict: no comments, no trailing commas, no raw control
 *         characters in strings; a leading UTF-8 BOM is skipped; bytes of
 *         strings are not checked for UTF-8. Nesting capped at
 *         DECODE_MAX_DEPTH (checked before descending, so a deep `[[[[`
 *         costs no stack). Objects → tables (a repeated key: the last
 *         wins; a member whose value is null is left out, so it reads as
 *         nil and `o.x or {}` works), arrays → sequences (1-based; a null
 *         element, and a null top value, → the sentinel of
 *         decode_push_null(), so positions are kept), \u escapes
 *         (surrogate pairs too) → UTF-8, a lone surrogate is an error.
 *         Numbers: integer syntax (no '.', no exponent) within ±2^53 → Lua
 *         integer (-0 → 0); integer syntax beyond ±2^53 → the string of its
 *         original text, so ids are never corrupted (e2i["12345678901234567890"]);
 *         anything else → float (1e3 → 1000.0), except a value a double
 *         cannot hold (1e400) → the string of its original text.
 *   xml   expat; each element → {name=, attr={k=v...}, children={el...},
 *         text=}: all four always present; text is the element's own
 *         character data (CDATA included, children's text not), entities
 *         decoded, trimmed of ASCII whitespace. Names are as written
 *         (prefix:local, no namespace processing). The top value is the
 *         root element. Children stay a list: decode_lua_xml_find/all
 *         look them up by name. Elements nested deeper than
 *         DECODE_MAX_DEPTH, a DOCTYPE with an internal subset and any
 *         entity declaration are refused (no billion laughs, no attribute
 *         default amplification); external entities and DTDs are never
 *         read. Encodings: those expat knows (UTF-8/16, ISO-8859-1, ASCII).
 *   form  query string → table, PHP parse_str style: pairs split on '&',
 *         '+' is a space, %XX decoded (a bad % stays as it is); `a[]=`
 *         appends (#t+1), `a[k]=` nests (k stays a string, up to
 *         DECODE_MAX_DEPTH levels); a repeated plain key: the last wins (as
 *         PHP); a key without '=' gets ""; an empty name is skipped; an
 *         unclosed `a[b` is a plain key; raw whitespace around the whole
 *         body is dropped.
 *   text  the raw string.
 * An empty body (len 0; or only whitespace for json, xml and form) decodes
 * to an empty table whatever the format. Bodies over DECODE_MAX_BODY are
 * refused.
 *
 * On success one value is pushed on L and 0 returned; on failure nothing is
 * pushed, -1 is returned and err holds "json: line 3 column 7: ..."-style
 * text an operator can act on (columns count bytes). The conversion runs
 * under lua_pcall: a Lua memory error is reported as an error, never
 * thrown to the caller, and expat never sees a Lua error. Lua values and
 * the XML event buffer are allocated through L's allocator, so the rule
 * runtime's memory cap applies (expat's own parse state uses malloc). */
#ifndef LEADSYNC_DECODE_H
#define LEADSYNC_DECODE_H

#include <stddef.h>

#include <lua.h>

enum decode_format { DECODE_JSON = 0, DECODE_XML, DECODE_FORM, DECODE_TEXT };
#define DECODE_MAX_DEPTH 64
#define DECODE_MAX_BODY ((size_t)256 << 20)

/* "json" → DECODE_JSON ... (case-insensitive); -1 when unknown or NULL. */
int decode_format_parse(const char *name);
/* "json" ...; "unknown" for a value outside the enum. */
const char *decode_format_name(enum decode_format f);

__attribute__((warn_unused_result))
int decode_push(lua_State *L, enum decode_format f, const char *body, size_t len, char *err,
		size_t errlen);

/* Pushes the JSON null sentinel (a unique light userdata). */
void decode_push_null(lua_State *L);
/* 1 when the value at idx is the JSON null sentinel. */
int decode_is_null(lua_State *L, int idx);

/* Lua functions for rules (the rule runtime registers them, e.g. as
 * xml.find / xml.all): find(el, name) → el's first child element named
 * name, or nil; all(el, name) → a sequence of every such child (maybe
 * empty). Raise a Lua error on bad arguments. */
int decode_lua_xml_find(lua_State *L);
int decode_lua_xml_all(lua_State *L);

#endif
