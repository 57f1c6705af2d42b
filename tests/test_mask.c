/* test_mask: the one masking of secrets that `check` and `rule test`
 * share (moved here from test_poller with the function). */
#include "test.h"

#include <stdlib.h>

#include "buf.h"
#include "mask.h"

TEST(mask_hides_secrets_in_values_and_query)
{
	struct mask m;
	struct buf out;

	mask_init(&m);
	buf_init(&out, 0);
	ASSERT_EQ(mask_add(&m, "s3 cret"), 0);
	ASSERT_EQ(m.n, 3); /* raw, percent- and form-encoded */
	{
	const char *u1 = "http://h/s3%20cret/x?key=s3%20cret&token=abc&ids=1,2&q=s3+cret#f";
	const char *t2 = "error: key s3 cret is wrong, token=abc";
	const char *u3 = "http://h/x?apiKey=k1&Signature=zz&name=x";

	ASSERT_EQ(mask_text(&m, u1, strlen(u1), MASK_URL, &out), 0);
	ASSERT_STREQ(out.p, "http://h/***/x?key=***&token=***&ids=1,2&q=***#f");
	buf_reset(&out);
	ASSERT_EQ(mask_text(&m, t2, strlen(t2), MASK_TEXT, &out), 0);
	ASSERT_STREQ(out.p, "error: key *** is wrong, token=abc");
	buf_reset(&out);
	ASSERT_EQ(mask_text(NULL, u3, strlen(u3), MASK_URL, &out), 0);
	ASSERT_STREQ(out.p, "http://h/x?apiKey=***&Signature=***&name=x");
	ASSERT(mask_name("api_key") && mask_name("X-Auth") && mask_name("password") &&
	       mask_name("apiKey") && mask_name("Authorization") && mask_name("TOKEN") &&
	       !mask_name("host") && !mask_name("ids"));
	}
	buf_release(&out);
	mask_release(&m);
}

TEST(mask_params_headers_and_form_bodies)
{
	struct mask m;
	struct buf out;
	char *s;

	mask_init(&m);
	buf_init(&out, 0);
	/* listed: any value; a secret-looking name: 4 bytes or more */
	ASSERT_EQ(mask_param(&m, "account", "acc-77", true), 0);
	ASSERT_EQ(mask_param(&m, "api_key", "k9k9", false), 0);
	ASSERT_EQ(mask_param(&m, "token", "abc", false), 0);
	ASSERT_EQ(mask_param(&m, "host", "crm.example", false), 0);
	s = mask_dup(&m, "acc-77 k9k9 abc crm.example", 27, MASK_TEXT);
	ASSERT_STREQ(s, "*** *** abc crm.example");
	free(s);
	ASSERT_EQ(mask_header(&m, "Authorization", "Bearer tok-1", &out), 0);
	ASSERT_STREQ(out.p, "Bearer ***");
	buf_reset(&out);
	ASSERT_EQ(mask_header(&m, "X-Api-Key", "zz", &out), 0);
	ASSERT_STREQ(out.p, "***");
	buf_reset(&out);
	ASSERT_EQ(mask_header(&m, "X-Account", "id acc-77", &out), 0);
	ASSERT_STREQ(out.p, "id ***");
	buf_reset(&out);
	ASSERT_EQ(mask_text(&m, "ids=1,2&password=pw&a=k9k9", 26, MASK_FORM, &out), 0);
	ASSERT_STREQ(out.p, "ids=1,2&password=***&a=***");
	buf_release(&out);
	mask_release(&m);
}
