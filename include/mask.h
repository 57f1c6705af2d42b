/* mask: hides secrets in what leadsync prints for people (`leadsync
 * check`, `leadsync rule test`, poll-run records). One set of rules for
 * every printer, so a secret hidden in one place is hidden in all:
 *  - a value the caller declares secret (the offer's secret_params, `rule
 *    test --secret NAME`) or held by a parameter whose name looks like a
 *    credential (mask_name) and is at least MASK_VALUE_MIN bytes long, in
 *    any of its raw, percent-encoded and form-encoded forms, wherever it
 *    appears: URL, header, body, error text;
 *  - in a URL's query (or a form body), the value of every parameter whose
 *    name looks like a credential, whatever it is;
 *  - a header whose name looks like a credential (Authorization,
 *    X-Api-Key, X-Signature): its whole value but an auth scheme word
 *    ("Bearer ***").
 * A hidden part reads "***". Memory: a struct mask owns its copies of the
 * values; mask_release() frees them. Outputs go into caller's buffers. */
#ifndef LEADSYNC_MASK_H
#define LEADSYNC_MASK_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* Values of credential-looking parameters shorter than this are not
 * masked by value ("1", "yes" would blank out half a report). */
#define MASK_VALUE_MIN 4

struct mask {
	char **values; /* each secret, raw and encoded */
	size_t n;
};

enum mask_kind {
	MASK_TEXT, /* values only */
	MASK_URL,  /* values, and credential-looking query parameters */
	MASK_FORM, /* values, and credential-looking fields of a form body */
};

void mask_init(struct mask *m);
void mask_release(struct mask *m);

/* True when a parameter or header name looks like a credential: it
 * contains key, token, secret, pass, auth or sign, case-insensitively
 * (apiKey, api_key, X-Auth-Token, Authorization, password, signature). */
bool mask_name(const char *name);

/* Adds value (and its percent- and form-encoded forms) to the secrets.
 * An empty value is ignored. Returns 0, or -1 out of memory. */
__attribute__((warn_unused_result))
int mask_add(struct mask *m, const char *value);

/* Adds a parameter's value when listed (declared secret) or when its name
 * looks like a credential and the value has MASK_VALUE_MIN bytes. */
__attribute__((warn_unused_result))
int mask_param(struct mask *m, const char *name, const char *value, bool listed);

/* Appends text with the secrets replaced by ***, the longest match first,
 * then (MASK_URL, MASK_FORM) the credential-looking parameters. m may be
 * NULL (no values). Returns 0, or -1 when out is full. */
__attribute__((warn_unused_result))
int mask_text(const struct mask *m, const char *text, size_t len, enum mask_kind kind,
	      struct buf *out);

/* mask_text into a fresh NUL-terminated string the caller frees; NULL when
 * out of memory. */
char *mask_dup(const struct mask *m, const char *text, size_t len, enum mask_kind kind);

/* Appends a header's value, masked (see the top of this file). */
__attribute__((warn_unused_result))
int mask_header(const struct mask *m, const char *name, const char *value, struct buf *out);

#endif
