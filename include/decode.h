/* decode: turns a CRM's answer into a Lua value by its declared format.
 *
 *   json  cJSON (cJSON_ParseWithLength), nesting capped at DECODE_MAX_DEPTH;
 *         objects → tables, arrays → sequences (1-based), null → a
 *         sentinel (decode_null) so keys are not lost; numbers → Lua
 *         integers when integral and exact, else floats; an integral number
 *         that does not fit a double exactly (> 2^53) is pushed as the
 *         decimal string of its original text, so ids are never corrupted.
 *   xml   expat → {name=, attr={...}, children={...}, text=} per element;
 *         the top value is the root element.
 *   form  query string → table; repeated or `a[]` keys become sequences,
 *         `a[b]` nested tables (PHP's parse_str).
 *   text  the raw string.
 * An empty body decodes to an empty table whatever the format.
 *
 * On success one value is pushed on L and 0 returned; on failure nothing is
 * pushed, -1 is returned and err holds "json: line 3 column 7: ..."-style
 * text an operator can act on. Allocation goes through L's allocator, so
 * the rule runtime's memory cap applies. */
#ifndef LEADSYNC_DECODE_H
#define LEADSYNC_DECODE_H

#include <stddef.h>

#include <lua.h>

enum decode_format { DECODE_JSON = 0, DECODE_XML, DECODE_FORM, DECODE_TEXT };
#define DECODE_MAX_DEPTH 64

/* "json" → DECODE_JSON ...; -1 when unknown. */
int decode_format_parse(const char *name);
const char *decode_format_name(enum decode_format f);

__attribute__((warn_unused_result))
int decode_push(lua_State *L, enum decode_format f, const char *body, size_t len, char *err,
		size_t errlen);

/* Pushes the JSON null sentinel (a unique light userdata). */
void decode_push_null(lua_State *L);

#endif
