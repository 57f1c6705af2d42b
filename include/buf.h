/* buf: a growable byte buffer with a hard maximum (every buffer is bounded).
 *
 * The buffer owns its memory; buf_release() frees it. Contents are always
 * NUL-terminated (the NUL is not counted in len), so b.p can be used as a
 * C string when the data holds no NUL bytes. An append that would pass
 * b.max fails with -1 and leaves the buffer as it was.
 */
#ifndef LEADSYNC_BUF_H
#define LEADSYNC_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct buf {
	char *p;
	size_t len;
	size_t cap;
	size_t max;
};

#define BUF_DEFAULT_MAX ((size_t)64 << 20)

void buf_init(struct buf *b, size_t max);
void buf_release(struct buf *b);
void buf_reset(struct buf *b);
__attribute__((warn_unused_result)) int buf_add(struct buf *b, const void *p, size_t n);
__attribute__((warn_unused_result)) int buf_adds(struct buf *b, const char *s);
__attribute__((warn_unused_result)) int buf_addc(struct buf *b, char c);
__attribute__((warn_unused_result, format(printf, 2, 3)))
int buf_addf(struct buf *b, const char *fmt, ...);
__attribute__((warn_unused_result)) int buf_vaddf(struct buf *b, const char *fmt, va_list ap);
/* Appends s as a JSON string literal, quotes included. Bytes that are not
 * valid UTF-8 are written as \u00XX escapes of the byte value. */
__attribute__((warn_unused_result)) int buf_add_json_str(struct buf *b, const char *s, size_t n);
/* Appends s percent-encoded (RFC 3986 unreserved characters kept). */
__attribute__((warn_unused_result)) int buf_add_urlenc(struct buf *b, const char *s, size_t n);
/* True when s[0..n) is valid UTF-8 holding no NUL byte (text that a
 * PostgreSQL text column takes as it is). */
bool buf_utf8_ok(const char *s, size_t n);
/* Appends s[0..n) as valid UTF-8 text without NULs: each byte that is NUL
 * or not part of a valid UTF-8 sequence is written as the four characters
 * \xNN; everything else is kept. For logs of what a client sent. */
__attribute__((warn_unused_result)) int buf_add_text(struct buf *b, const char *s, size_t n);
/* True when a[0..alen) equals b[0..blen), in a time that depends on the
 * lengths only, never on where the bytes differ (keys, tokens). */
bool buf_ct_equal(const char *a, size_t alen, const char *b, size_t blen);
/* Cuts b to at most n bytes on a UTF-8 character boundary. */
void buf_cut_utf8(struct buf *b, size_t n);
/* Percent-decodes s[0..n) into out (room for n bytes); '+' becomes a
 * space when plus is set (forms and query strings); a '%' not followed by
 * two hex digits stays as written (PHP's urldecode). Returns the decoded
 * length. */
size_t buf_urldecode(char *out, const char *s, size_t n, bool plus);
/* Takes the contents out: the caller frees the returned string; b is empty. */
char *buf_steal(struct buf *b);

#endif
