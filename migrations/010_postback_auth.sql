-- 010_postback_auth: postback authentication beyond the key in the path
-- (issue 13 item 5; postback.h "Authentication"). Per advertiser, both
-- optional: the networks its postbacks may come from (NULL or empty: any
-- address), matched against the socket peer in the postback's resolve
-- query; and the secret of the request signature (NULL: no signature
-- asked), HMAC-SHA256 over the canonical string the README gives. The
-- cidr type parses and checks each network once, when it is written.
ALTER TABLE advertisers
	ADD COLUMN postback_sources cidr[],
	ADD COLUMN postback_secret text CHECK (postback_secret <> '');
