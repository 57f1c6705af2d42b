/* pbauth: postback authentication beyond the key in the path: source
 * networks and the request signature (see pbauth.h). */
#include "pbauth.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

int pbauth_net_parse(const char *s, struct pbauth_net *out, char *err, size_t errlen)
{
	char host[PBAUTH_ADDR_MAX + 1], canon[PBAUTH_ADDR_MAX];
	const char *slash = strchr(s, '/');
	size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned long bits, max, i;
	char *end;

	memset(out, 0, sizeof(*out));
	if (!hlen || hlen >= sizeof(host))
		goto bad;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (inet_pton(AF_INET, host, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, host, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		goto bad;
	}
	bits = max;
	if (slash) {
		if (slash[1] < '0' || slash[1] > '9')
			goto bad;
		bits = strtoul(slash + 1, &end, 10);
		if (*end || bits > max || end - (slash + 1) > 3)
			goto bad;
	}
	out->bits = (unsigned)bits;
	for (i = bits; i < max; i++)
		if (out->addr[i / 8] & (0x80u >> (i % 8))) {
			for (; i < max; i++)
				out->addr[i / 8] &= (unsigned char)~(0x80u >> (i % 8));
			inet_ntop(out->family, out->addr, canon, sizeof(canon));
			snprintf(err, errlen, "'%.60s' has bits set past the prefix: %s/%lu?", s, canon,
				 bits);
			return -1;
		}
	return 0;
bad:
	snprintf(err, errlen, "'%.60s' is not a network like 192.0.2.0/24 or 2001:db8::/32", s);
	return -1;
}

int pbauth_addr(const char *remote, char *out, size_t outlen)
{
	unsigned char a[16];

	if (inet_pton(AF_INET, remote, a) == 1)
		return inet_ntop(AF_INET, a, out, (socklen_t)outlen) ? 0 : -1;
	if (inet_pton(AF_INET6, remote, a) != 1)
		return -1;
	/* ::ffff:a.b.c.d: the IPv4 peer of a dual-stack socket */
	if (!memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12))
		return inet_ntop(AF_INET, a + 12, out, (socklen_t)outlen) ? 0 : -1;
	return inet_ntop(AF_INET6, a, out, (socklen_t)outlen) ? 0 : -1;
}

int pbauth_sig_parse(const char *value, struct pbauth_sig *out)
{
	const char *p = value;

	memset(out, 0, sizeof(*out));
	while (*p) {
		const char *e = strchr(p, ','), *v;
		size_t n, i;

		while (*p == ' ' || *p == '\t')
			p++;
		if (!e)
			e = p + strlen(p);
		v = memchr(p, '=', (size_t)(e - p));
		if (v) {
			n = (size_t)(e - v - 1);
			while (n && (v[n] == ' ' || v[n] == '\t'))
				n--;
			if (v - p == 1 && p[0] == 't') {
				if (!n || n > PBAUTH_T_MAX || out->t[0])
					return -1;
				for (i = 0; i < n; i++) {
					if (v[1 + i] < '0' || v[1 + i] > '9')
						return -1;
					out->at = out->at * 10 + (v[1 + i] - '0');
				}
				memcpy(out->t, v + 1, n);
				out->t[n] = '\0';
			} else if (v - p == 2 && p[0] == 'v' && p[1] == '1') {
				if (n != 64)
					return -1;
				if (out->nv1 < PBAUTH_V1_MAX) {
					for (i = 0; i < 32; i++) {
						int hi = OPENSSL_hexchar2int((unsigned char)v[1 + 2 * i]);
						int lo = OPENSSL_hexchar2int((unsigned char)v[2 + 2 * i]);

						if (hi < 0 || lo < 0)
							return -1;
						out->v1[out->nv1][i] = (unsigned char)(hi << 4 | lo);
					}
					out->nv1++;
				}
			}
		}
		p = *e ? e + 1 : e;
	}
	return out->t[0] && out->nv1 ? 0 : -1;
}

int pbauth_canonical(struct buf *out, const char *t, const char *method, const char *path,
		     const char *query, const char *body, size_t blen)
{
	if (buf_adds(out, t) < 0 || buf_addc(out, '\n') < 0 || buf_adds(out, method) < 0 ||
	    buf_addc(out, '\n') < 0 || buf_adds(out, path) < 0 || buf_addc(out, '\n') < 0 ||
	    buf_adds(out, query) < 0 || buf_addc(out, '\n') < 0 || buf_add(out, body, blen) < 0)
		return -1;
	return 0;
}

static int pbauth__mac(const char *secret, const char *msg, size_t len, unsigned char md[32])
{
	unsigned int mdlen = 0;

	if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg, len, md,
		  &mdlen) || mdlen != 32)
		return -1;
	return 0;
}

int pbauth_sign(const char *secret, const char *msg, size_t len, char hex[65])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char md[32];
	size_t i;

	if (pbauth__mac(secret, msg, len, md) < 0)
		return -1;
	for (i = 0; i < 32; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[64] = '\0';
	return 0;
}

enum pbauth_verdict pbauth_check(const struct pbauth_sig *sig, const char *msg, size_t len,
				 const char *secret, int64_t now, int64_t window_s)
{
	unsigned char md[32];
	bool match = false;
	unsigned i;

	if (!sig)
		return PBAUTH_MISSING;
	if (pbauth__mac(secret, msg, len, md) < 0)
		return PBAUTH_MISMATCH;
	for (i = 0; i < sig->nv1; i++)
		match |= CRYPTO_memcmp(md, sig->v1[i], sizeof(md)) == 0;
	OPENSSL_cleanse(md, sizeof(md));
	if (!match)
		return PBAUTH_MISMATCH;
	if (sig->at > now + window_s || sig->at < now - window_s)
		return PBAUTH_EXPIRED;
	return PBAUTH_OK;
}

const char *pbauth_reason(enum pbauth_verdict v)
{
	switch (v) {
	case PBAUTH_OK:
		return "ok";
	case PBAUTH_MISSING:
		return "signature missing";
	case PBAUTH_MISMATCH:
		return "signature mismatch";
	case PBAUTH_EXPIRED:
		return "signature expired";
	}
	return "signature mismatch";
}
