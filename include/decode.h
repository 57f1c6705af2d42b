/* decode: turns a CRM's answer into a Lua value by its declared format.
 *
 *   json  our own parser pushing straight onto the Lua stack (not cJSON:
 *         see src/decode.c; cJSON stays the encoder elsewhere). RFC 8259,
 *         strict: no comments, no trailing commas, no raw control
 *         characters in strings; a leading UTF-8 BOM is skipped; the text
 *         is UTF-8 (see Charsets below). Nesting capped at
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
 *         read. Encodings: those expat knows (UTF-8/16, ISO-8859-1,
 *         US-ASCII) and, declared as encoding="windows-1251" (koi8-r,
 *         cp866, iso-8859-5...), any single-byte charset glibc's iconv
 *         knows (a byte map built per parse through expat's unknown
 *         encoding handler). A multi-byte charset (Shift_JIS, GBK) works
 *         only as the Content-Type charset. Values are UTF-8.
 *   form  query string → table, PHP parse_str style: pairs split on '&',
 *         '+' is a space, %XX decoded (a bad % stays as it is); `a[]=`
 *         appends (#t+1), `a[k]=` nests (k stays a string, up to
 *         DECODE_MAX_DEPTH levels); a repeated plain key: the last wins (as
 *         PHP); a key without '=' gets ""; an empty name is skipped; an
 *         unclosed `a[b` is a plain key; raw whitespace around the whole
 *         body is dropped.
 *   text  the raw string (in UTF-8, see Charsets).
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
 * runtime's memory cap applies (expat's own parse state uses malloc).
 *
 * Charsets. A rule always sees UTF-8. The charset comes from the answer's
 * Content-Type (`application/json; charset=windows-1251`):
 *   - utf-8 (or none): json and text are checked to be UTF-8 in one
 *     linear pass before parsing (the fast path: no copy); form checks
 *     each name and value once %-decoded; xml is left to expat, which
 *     checks as it parses (and reads the XML declaration when there is no
 *     charset).
 *   - any other charset glibc's iconv knows (windows-1251, koi8-r, cp866,
 *     iso-8859-5, utf-16...): the body is converted to UTF-8 with iconv
 *     first (into a buffer from L's allocator, bounded by DECODE_MAX_BODY),
 *     then parsed as UTF-8; form converts each %-decoded name and value
 *     (a %CE is a byte of the charset). A byte the charset does not
 *     define is an error naming it and its offset. Line, column and byte
 *     numbers in later errors count bytes of the UTF-8 text.
 *   - xml: the Content-Type charset wins over the XML declaration's
 *     encoding (RFC 7303 section 3.2; the declaration is then ignored, and
 *     an error says that it differed).
 * A json, form or text answer that is not UTF-8 and declares no charset
 * is an error that says so, at which byte, and names the usual charsets
 * ("json: not UTF-8 at byte 17 (0xce 0xf2) and no charset declared ...").
 * An unknown charset name is an error naming it. */
#ifndef LEADSYNC_DECODE_H
#define LEADSYNC_DECODE_H

#include <stddef.h>

#include <lua.h>

enum decode_format { DECODE_JSON = 0, DECODE_XML, DECODE_FORM, DECODE_TEXT };
#define DECODE_MAX_DEPTH 64
#define DECODE_MAX_BODY ((size_t)256 << 20)
#define DECODE_CHARSET_MAX 48 /* longest charset name, NUL included */

/* "json" → DECODE_JSON ... (case-insensitive); -1 when unknown or NULL. */
int decode_format_parse(const char *name);
/* "json" ...; "unknown" for a value outside the enum. */
const char *decode_format_name(enum decode_format f);

/* Decodes body (len bytes, may be NULL when len is 0) of format f onto L.
 * content_type: the answer's Content-Type header value as sent (only its
 * charset parameter is read), or NULL/"" when there was none. */
__attribute__((warn_unused_result))
int decode_push(lua_State *L, enum decode_format f, const char *content_type, const char *body,
		size_t len, char *err, size_t errlen);

/* The charset parameter of a Content-Type value ("text/xml; charset=\"koi8-r\""
 * → koi8-r) into out, as written. Returns 1 when there is one, 0 when
 * there is none (or content_type is NULL), -1 when it is not a charset
 * name (RFC 2978 characters only: no '/', so nothing like //IGNORE reaches
 * iconv) or does not fit outlen. */
int decode_charset(const char *content_type, char *out, size_t outlen);

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
