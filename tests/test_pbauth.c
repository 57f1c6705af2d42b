/* test_pbauth: postback authentication's pure parts (pbauth.h): networks,
 * IPv4 and IPv6; the peer address; the signature header, the canonical
 * string and the verdicts. The daemon's use of them over real HTTP is in
 * test_postback.c. */
#include "pbauth.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "test.h"

TEST(pbauth_networks_ipv4_and_ipv6_parse)
{
	static const struct {
		const char *s;
		int family;
		unsigned bits;
	} ok[] = {
		{ "10.0.0.0/8", AF_INET, 8 },         { "192.0.2.7", AF_INET, 32 },
		{ "0.0.0.0/0", AF_INET, 0 },          { "192.0.2.0/24", AF_INET, 24 },
		{ "2001:db8::/32", AF_INET6, 32 },    { "::1", AF_INET6, 128 },
		{ "::/0", AF_INET6, 0 },              { "fe80::/10", AF_INET6, 10 },
		{ "2001:DB8:0:0:8::/80", AF_INET6, 80 }, { "::ffff:192.0.2.0/120", AF_INET6, 120 },
	};
	static const char *const bad[] = {
		"", "/8", "10.0.0.0/", "10.0.0.0/33", "2001:db8::/129", "10.0.0/8", "10.0.0.0/8x",
		"10.0.0.0/-1", "2001:db8::g/32", "10.0.0.0 /8", "localhost", "10.0.0.0/0008",
		"2001:db8:::/48",
	};
	struct pbauth_net n;
	char err[200];
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (pbauth_net_parse(ok[i].s, &n, err, sizeof(err)) < 0)
			test__fail(__FILE__, __LINE__, "%s: %s", ok[i].s, err);
		ASSERT_EQ(n.family, ok[i].family);
		ASSERT_EQ(n.bits, ok[i].bits);
	}
	ASSERT_EQ(pbauth_net_parse("2001:db8::/32", &n, err, sizeof(err)), 0);
	ASSERT(n.addr[0] == 0x20 && n.addr[1] == 0x01 && n.addr[2] == 0x0d && n.addr[3] == 0xb8);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (pbauth_net_parse(bad[i], &n, err, sizeof(err)) == 0)
			test__fail(__FILE__, __LINE__, "'%s' parsed", bad[i]);
		ASSERT_CONTAINS(err, "is not a network like");
	}
	/* bits past the prefix: refused as PostgreSQL's cidr refuses them,
	 * with the network meant */
	ASSERT_EQ(pbauth_net_parse("10.1.2.3/8", &n, err, sizeof(err)), -1);
	ASSERT_STREQ(err, "'10.1.2.3/8' has bits set past the prefix: 10.0.0.0/8?");
	ASSERT_EQ(pbauth_net_parse("2001:db8::1/32", &n, err, sizeof(err)), -1);
	ASSERT_STREQ(err, "'2001:db8::1/32' has bits set past the prefix: 2001:db8::/32?");
	ASSERT_EQ(pbauth_net_parse("2001:db8:ff00::/39", &n, err, sizeof(err)), -1);
	ASSERT_STREQ(err, "'2001:db8:ff00::/39' has bits set past the prefix: 2001:db8:fe00::/39?");
}

TEST(pbauth_peer_address_ipv4_mapped_is_ipv4)
{
	char a[PBAUTH_ADDR_MAX];

	ASSERT_EQ(pbauth_addr("127.0.0.1", a, sizeof(a)), 0);
	ASSERT_STREQ(a, "127.0.0.1");
	ASSERT_EQ(pbauth_addr("::ffff:192.0.2.9", a, sizeof(a)), 0);
	ASSERT_STREQ(a, "192.0.2.9");
	ASSERT_EQ(pbauth_addr("2001:DB8::0:1", a, sizeof(a)), 0);
	ASSERT_STREQ(a, "2001:db8::1");
	ASSERT_EQ(pbauth_addr("unknown", a, sizeof(a)), -1);
	ASSERT_EQ(pbauth_addr("", a, sizeof(a)), -1);
}

TEST(pbauth_signature_header_forms)
{
	struct pbauth_sig s;
	static const char h64[] = "f0809d5c2916cdc86ebd75c3aa143ba3004f68962a48a8dda67d6b308fbece4d";
	char hdr[400];

	snprintf(hdr, sizeof(hdr), "t=1700000000,v1=%s", h64);
	ASSERT_EQ(pbauth_sig_parse(hdr, &s), 0);
	ASSERT_STREQ(s.t, "1700000000");
	ASSERT_EQ(s.at, 1700000000);
	ASSERT_EQ(s.nv1, 1u);
	ASSERT_EQ(s.v1[0][0], 0xf0);
	ASSERT_EQ(s.v1[0][31], 0x4d);
	/* blanks after commas, unknown keys skipped, two v1 (a rotation),
	 * upper-case hex */
	snprintf(hdr, sizeof(hdr), "v0=zz, t=42 ,v1=%s, v1=%.62sAB", h64, h64);
	ASSERT_EQ(pbauth_sig_parse(hdr, &s), 0);
	ASSERT_EQ(s.at, 42);
	ASSERT_EQ(s.nv1, 2u);
	ASSERT_EQ(s.v1[1][31], 0xab);
	/* not a signature */
	ASSERT_EQ(pbauth_sig_parse("", &s), -1);
	ASSERT_EQ(pbauth_sig_parse("t=1700000000", &s), -1);
	snprintf(hdr, sizeof(hdr), "v1=%s", h64);
	ASSERT_EQ(pbauth_sig_parse(hdr, &s), -1);
	snprintf(hdr, sizeof(hdr), "t=17x,v1=%s", h64);
	ASSERT_EQ(pbauth_sig_parse(hdr, &s), -1);
	snprintf(hdr, sizeof(hdr), "t=1,v1=%.63s", h64);
	ASSERT_EQ(pbauth_sig_parse(hdr, &s), -1);
	snprintf(hdr, sizeof(hdr), "t=1,v1=%.63sg", h64);
	ASSERT_EQ(pbauth_sig_parse(hdr, &s), -1);
	snprintf(hdr, sizeof(hdr), "t=1234567890123456789,v1=%s", h64);
	ASSERT_EQ(pbauth_sig_parse(hdr, &s), -1);
	snprintf(hdr, sizeof(hdr), "t=1,t=2,v1=%s", h64);
	ASSERT_EQ(pbauth_sig_parse(hdr, &s), -1);
}

static void pbt_buf_release(void *b)
{
	buf_release(b);
}

/* The canonical string and the HMAC against openssl's command line: the
 * README's one-liner gives these digests. */
TEST(pbauth_signature_matches_the_readme_openssl_example)
{
	static const char body[] = "{\"click_id\":\"c7e2206f-03af-49fa-9046-dd6aeaa44e9b\","
				   "\"request_id\":\"94583\",\"action\":\"lead\",\"status\":\"hold\"}";
	static const char secret[] = "whsec-0123456789abcdef";
	struct pbauth_sig s;
	struct buf b;
	char hex[65], hdr[200];

	buf_init(&b, 0);
	test_defer(pbt_buf_release, &b);
	ASSERT_EQ(pbauth_canonical(&b, "1700000000", "POST", "/k-acme/s2s", "", body,
				   sizeof(body) - 1), 0);
	ASSERT_EQ(pbauth_sign(secret, b.p, b.len, hex), 0);
	ASSERT_STREQ(hex, "f0809d5c2916cdc86ebd75c3aa143ba3004f68962a48a8dda67d6b308fbece4d");
	snprintf(hdr, sizeof(hdr), "t=1700000000,v1=%s", hex);
	ASSERT_EQ(pbauth_sig_parse(hdr, &s), 0);
	ASSERT_EQ(pbauth_check(&s, b.p, b.len, secret, 1700000000, 300), PBAUTH_OK);
	ASSERT_EQ(pbauth_check(&s, b.p, b.len, secret, 1700000300, 300), PBAUTH_OK);
	ASSERT_EQ(pbauth_check(&s, b.p, b.len, secret, 1699999700, 300), PBAUTH_OK);
	ASSERT_EQ(pbauth_check(&s, b.p, b.len, secret, 1700000301, 300), PBAUTH_EXPIRED);
	ASSERT_EQ(pbauth_check(&s, b.p, b.len, secret, 1699999699, 300), PBAUTH_EXPIRED);
	ASSERT_EQ(pbauth_check(&s, b.p, b.len, "whsec-0123456789abcdeF", 1700000000, 300),
		  PBAUTH_MISMATCH);
	ASSERT_EQ(pbauth_check(&s, b.p, b.len - 1, secret, 1700000000, 300), PBAUTH_MISMATCH);
	ASSERT_EQ(pbauth_check(NULL, NULL, 0, secret, 1700000000, 300), PBAUTH_MISSING);
	ASSERT_STREQ(pbauth_reason(PBAUTH_EXPIRED), "signature expired");

	buf_reset(&b);
	ASSERT_EQ(pbauth_canonical(&b, "1700000000", "GET", "/k-acme/s2s",
				   "click_id=c7e2206f-03af-49fa-9046-dd6aeaa44e9b&request_id=1"
				   "&action=lead&status=hold", "", 0), 0);
	ASSERT_EQ(pbauth_sign(secret, b.p, b.len, hex), 0);
	ASSERT_STREQ(hex, "9607bdc689caf12dddfb7828193574a16ff8bec84e3cfc195bad0d76c819a388");
}
