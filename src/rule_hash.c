/* rule_hash: MD5 (RFC 1321), SHA-1 and SHA-256 (FIPS 180-4), HMAC (RFC
 * 2104) and base64 (RFC 4648) for rules that sign their requests. */
#include "rule_int.h"

#include <string.h>

static uint32_t rotl(uint32_t x, unsigned n)
{
	return (x << n) | (x >> (32 - n));
}

static uint32_t rotr(uint32_t x, unsigned n)
{
	return (x >> n) | (x << (32 - n));
}

static uint32_t load_le(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t load_be(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* ---- MD5 ------------------------------------------------------------- */

/* floor(|sin(i + 1)| * 2^32) */
static const uint32_t md5_t[64] = {
	0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee,
	0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
	0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be,
	0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
	0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa,
	0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
	0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
	0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
	0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c,
	0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
	0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05,
	0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
	0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039,
	0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
	0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1,
	0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
};

static const unsigned char md5_shift[4][4] = {
	{ 7, 12, 17, 22 }, { 5, 9, 14, 20 }, { 4, 11, 16, 23 }, { 6, 10, 15, 21 }
};

static void md5_compress(uint32_t *s, const unsigned char *block)
{
	uint32_t x[16], a = s[0], b = s[1], c = s[2], d = s[3], f, t;
	unsigned i, k;

	for (i = 0; i < 16; i++)
		x[i] = load_le(block + 4 * i);
	for (i = 0; i < 64; i++) {
		switch (i / 16) {
		case 0:
			f = (b & c) | (~b & d);
			k = i;
			break;
		case 1:
			f = (b & d) | (c & ~d);
			k = (5 * i + 1) % 16;
			break;
		case 2:
			f = b ^ c ^ d;
			k = (3 * i + 5) % 16;
			break;
		default:
			f = c ^ (b | ~d);
			k = (7 * i) % 16;
			break;
		}
		t = d;
		d = c;
		c = b;
		b = b + rotl(a + f + x[k] + md5_t[i], md5_shift[i / 16][i % 4]);
		a = t;
	}
	s[0] += a;
	s[1] += b;
	s[2] += c;
	s[3] += d;
}

/* ---- SHA-1 ----------------------------------------------------------- */

static void sha1_compress(uint32_t *s, const unsigned char *block)
{
	uint32_t w[80], a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f, k, t;
	unsigned i;

	for (i = 0; i < 16; i++)
		w[i] = load_be(block + 4 * i);
	for (i = 16; i < 80; i++)
		w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	for (i = 0; i < 80; i++) {
		if (i < 20) {
			f = (b & c) | (~b & d);
			k = 0x5a827999;
		} else if (i < 40) {
			f = b ^ c ^ d;
			k = 0x6ed9eba1;
		} else if (i < 60) {
			f = (b & c) | (b & d) | (c & d);
			k = 0x8f1bbcdc;
		} else {
			f = b ^ c ^ d;
			k = 0xca62c1d6;
		}
		t = rotl(a, 5) + f + e + k + w[i];
		e = d;
		d = c;
		c = rotl(b, 30);
		b = a;
		a = t;
	}
	s[0] += a;
	s[1] += b;
	s[2] += c;
	s[3] += d;
	s[4] += e;
}

/* ---- SHA-256 --------------------------------------------------------- */

/* first 32 bits of the fractional parts of the cube roots of the first 64 primes */
static const uint32_t sha256_k[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5,
	0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
	0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
	0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
	0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
	0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
	0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
	0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
	0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static void sha256_compress(uint32_t *s, const unsigned char *block)
{
	uint32_t w[64], v[8], t1, t2;
	unsigned i;

	for (i = 0; i < 16; i++)
		w[i] = load_be(block + 4 * i);
	for (i = 16; i < 64; i++) {
		uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);

		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	memcpy(v, s, sizeof(v));
	for (i = 0; i < 64; i++) {
		uint32_t e = v[4], a = v[0];

		t1 = v[7] + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & v[5]) ^ (~e & v[6])) +
		     sha256_k[i] + w[i];
		t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & v[1]) ^ (a & v[2]) ^ (v[1] & v[2]));
		memmove(v + 1, v, 7 * sizeof(v[0]));
		v[4] += t1;
		v[0] = t1 + t2;
	}
	for (i = 0; i < 8; i++)
		s[i] += v[i];
}

const struct rule_hash rule__md5 = {
	"md5", 16, false, { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476 }, md5_compress,
	40 /* 2.5 ns a byte */
};
const struct rule_hash rule__sha1 = {
	"sha1", 20, true, { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0 },
	sha1_compress, 96 /* 5.7 ns a byte */
};
/* first 32 bits of the fractional parts of the square roots of the first 8 primes */
const struct rule_hash rule__sha256 = {
	"sha256", 32, true,
	{ 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
	  0x5be0cd19 },
	sha256_compress, 160 /* 10.4 ns a byte */
};

/* ---- the frame ------------------------------------------------------- */

void rule__hash_init(struct rule_hash_ctx *c, const struct rule_hash *h)
{
	memcpy(c->s, h->iv, sizeof(c->s));
	c->fill = 0;
	c->total = 0;
	c->h = h;
}

void rule__hash_update(struct rule_hash_ctx *c, const void *p, size_t n)
{
	const unsigned char *u = p;

	c->total += n;
	if (c->fill) {
		size_t k = RULE_HASH_BLOCK - c->fill;

		if (k > n)
			k = n;
		memcpy(c->buf + c->fill, u, k);
		c->fill += k;
		u += k;
		n -= k;
		if (c->fill < RULE_HASH_BLOCK)
			return;
		c->h->compress(c->s, c->buf);
		c->fill = 0;
	}
	for (; n >= RULE_HASH_BLOCK; u += RULE_HASH_BLOCK, n -= RULE_HASH_BLOCK)
		c->h->compress(c->s, u);
	memcpy(c->buf, u, n);
	c->fill = n;
}

void rule__hash_final(struct rule_hash_ctx *c, unsigned char *out)
{
	uint64_t bits = c->total * 8;
	unsigned char len[8];
	size_t i, pad;
	static const unsigned char one = 0x80, zeros[RULE_HASH_BLOCK];

	for (i = 0; i < 8; i++)
		len[c->h->big_endian ? 7 - i : i] = (unsigned char)(bits >> (8 * i));
	pad = (c->fill < 56 ? 56 : 120) - c->fill - 1;
	rule__hash_update(c, &one, 1);
	rule__hash_update(c, zeros, pad);
	rule__hash_update(c, len, 8);
	for (i = 0; i < c->h->size; i++) {
		uint32_t w = c->s[i / 4];
		unsigned sh = c->h->big_endian ? 24 - 8 * (i % 4) : 8 * (i % 4);

		out[i] = (unsigned char)(w >> sh);
	}
}

void rule__hash(const struct rule_hash *h, const void *p, size_t n, unsigned char *out)
{
	struct rule_hash_ctx c;

	rule__hash_init(&c, h);
	rule__hash_update(&c, p, n);
	rule__hash_final(&c, out);
}

void rule__hmac(const struct rule_hash *h, const void *key, size_t klen, const void *msg,
		size_t mlen, unsigned char *out)
{
	unsigned char k[RULE_HASH_BLOCK], pad[RULE_HASH_BLOCK], inner[RULE_HASH_MAX];
	struct rule_hash_ctx c;
	size_t i;

	memset(k, 0, sizeof(k));
	if (klen > RULE_HASH_BLOCK)
		rule__hash(h, key, klen, k);
	else if (klen)
		memcpy(k, key, klen);
	for (i = 0; i < RULE_HASH_BLOCK; i++)
		pad[i] = k[i] ^ 0x36;
	rule__hash_init(&c, h);
	rule__hash_update(&c, pad, sizeof(pad));
	rule__hash_update(&c, msg, mlen);
	rule__hash_final(&c, inner);
	for (i = 0; i < RULE_HASH_BLOCK; i++)
		pad[i] = k[i] ^ 0x5c;
	rule__hash_init(&c, h);
	rule__hash_update(&c, pad, sizeof(pad));
	rule__hash_update(&c, inner, h->size);
	rule__hash_final(&c, out);
}

/* ---- base64 ---------------------------------------------------------- */

size_t rule__b64_encode(const unsigned char *p, size_t n, char *out, bool url)
{
	const char *abc = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
			      : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

		out[o++] = abc[v >> 18];
		out[o++] = abc[(v >> 12) & 63];
		out[o++] = abc[(v >> 6) & 63];
		out[o++] = abc[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);

		out[o++] = abc[v >> 18];
		out[o++] = abc[(v >> 12) & 63];
		if (i + 1 < n)
			out[o++] = abc[(v >> 6) & 63];
		else if (!url)
			out[o++] = '=';
		if (!url)
			out[o++] = '=';
	}
	return o;
}

static int b64_value(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+' || ch == '-')
		return 62;
	if (ch == '/' || ch == '_')
		return 63;
	return -1;
}

long rule__b64_decode(const char *s, size_t n, unsigned char *out)
{
	uint32_t acc = 0;
	size_t i, bits = 0, o = 0, pad = 0;

	while (n > 0 && s[n - 1] == '=' && pad < 2) {
		n--;
		pad++;
	}
	if (pad && (n + pad) % 4)
		return -1;
	if (n % 4 == 1)
		return -1;
	for (i = 0; i < n; i++) {
		int v = b64_value((unsigned char)s[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	/* the bits left over must be zero (a canonical encoding) */
	if (acc & ((1u << bits) - 1))
		return -1;
	return (long)o;
}
