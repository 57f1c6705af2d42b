/* pbauth: postback authentication beyond the key in the path (issue 13
 * item 5): an advertiser's allowed source networks and its request
 * signature. postback.c applies them (postback.h "Authentication"); import
 * checks the networks an admin gives (import.h); pure functions, any
 * thread.
 *
 * Source networks. "10.0.0.0/8", "2001:db8::/32", or a bare address (a
 * /32 or /128). Stored as PostgreSQL cidr[] (advertisers.postback_sources,
 * migration 010), which the resolve query matches with <<=; the check here
 * gives an admin a clear message first, with the rule PostgreSQL applies
 * (no bits set past the prefix). The address matched is the socket peer's
 * (the listener has no trusted-proxy setting, so X-Forwarded-For is never
 * read); an IPv4-mapped IPv6 peer (::ffff:192.0.2.1) is its IPv4 address.
 *
 * Signature. With a secret set, every postback of the advertiser carries
 *   X-Leadsync-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>
 * (more v1= entries may follow, e.g. while a secret is rotated: one that
 * matches is enough), where the HMAC, keyed with the secret's bytes, is of
 * the canonical string
 *   t "\n" METHOD "\n" path "\n" query "\n" body
 * t as sent in the header; METHOD as sent (GET, POST); path as sent, still
 * percent-encoded, the key included ("/k-acme/s2s"); query as sent, without
 * '?', "" when none; body the bytes received ("" for a GET). A signature
 * that matches but whose t is more than the window
 * (LEADSYNC_POSTBACK_SIGNATURE_WINDOW) away from the daemon's clock, either
 * way, is expired (one that does not match is a mismatch, whatever its t).
 * Digests are compared with CRYPTO_memcmp. */
#ifndef LEADSYNC_PBAUTH_H
#define LEADSYNC_PBAUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define PBAUTH_HEADER "X-Leadsync-Signature"
#define PBAUTH_V1_MAX 4      /* v1= entries read from one header */
#define PBAUTH_ADDR_MAX 46   /* INET6_ADDRSTRLEN */
#define PBAUTH_T_MAX 18      /* digits of t */

/* A network: family AF_INET or AF_INET6, the address, the prefix length. */
struct pbauth_net {
	int family;
	unsigned char addr[16];
	unsigned bits;
};

/* Parses s into *out. Returns 0, or -1 with a message for an admin in err
 * ("'10.0.0.1/8' has bits set past the prefix: 10.0.0.0/8?"). */
__attribute__((warn_unused_result))
int pbauth_net_parse(const char *s, struct pbauth_net *out, char *err, size_t errlen);

/* The peer address as the resolve query compares it, into out
 * (PBAUTH_ADDR_MAX): an IPv4-mapped IPv6 address as IPv4. Returns 0, or -1
 * when remote is not an address ("unknown"): no network holds it. */
int pbauth_addr(const char *remote, char *out, size_t outlen);

/* A parsed signature header: t (its digits as sent, for the canonical
 * string, and its value) and the v1 digests. */
struct pbauth_sig {
	char t[PBAUTH_T_MAX + 1];
	int64_t at;
	unsigned char v1[PBAUTH_V1_MAX][32];
	unsigned nv1;
};

/* Parses the header's value. Returns 0, or -1 when it is not of the form
 * above (no t, no v1, a digest that is not 64 hex digits): read as no
 * signature. Unknown keys (v0=, a future v2=) are skipped. */
int pbauth_sig_parse(const char *value, struct pbauth_sig *out);

/* Appends the canonical string to out. Returns 0 or -1 (out of memory or
 * out's cap). */
__attribute__((warn_unused_result))
int pbauth_canonical(struct buf *out, const char *t, const char *method, const char *path,
		     const char *query, const char *body, size_t blen);

/* HMAC-SHA256(secret, msg) as 64 lower-case hex digits and a NUL into hex
 * (65 bytes). Returns 0 or -1. */
int pbauth_sign(const char *secret, const char *msg, size_t len, char hex[65]);

enum pbauth_verdict { PBAUTH_OK = 0, PBAUTH_MISSING, PBAUTH_MISMATCH, PBAUTH_EXPIRED };

/* The check of a request for an advertiser with that secret: sig NULL (no
 * header, or one that does not parse) is missing; no v1 that matches the
 * HMAC of msg is a mismatch; a matching one whose t is more than window_s
 * from now is expired. */
enum pbauth_verdict pbauth_check(const struct pbauth_sig *sig, const char *msg, size_t len,
				 const char *secret, int64_t now, int64_t window_s);

/* The reason as the answer, the log row and the log line name it:
 * "signature missing", "signature mismatch", "signature expired"; and
 * PBAUTH_SOURCE_REFUSED for the networks. */
const char *pbauth_reason(enum pbauth_verdict v);
#define PBAUTH_SOURCE_REFUSED "source address not allowed"

#endif
