-- 004_schedule_needs_rule: an offer without a rule is never polled (the
-- claim skips it), yet 001 gave every offer its three schedule rows, which
-- then stayed overdue forever and read as a poller falling behind. Rows
-- now exist exactly while the offer names a rule: added when it gets one
-- (created with a rule, or a rule given later), removed when it loses it.
-- Whether a row is polled still depends on enabled, checked at claim time.
CREATE OR REPLACE FUNCTION poll_schedule_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.rule IS NULL THEN
		DELETE FROM poll_schedule WHERE offer = NEW.id;
	ELSE
		INSERT INTO poll_schedule (offer, variant)
		SELECT NEW.id, v FROM unnest(ARRAY['processing', 'accepted', 'dates']) AS v
		ON CONFLICT DO NOTHING;
	END IF;
	RETURN NULL;
END
$$;
DROP TRIGGER offers_poll_schedule ON offers;
CREATE TRIGGER offers_poll_schedule AFTER INSERT OR UPDATE OF rule ON offers
	FOR EACH ROW EXECUTE FUNCTION poll_schedule_add();
DELETE FROM poll_schedule s USING offers o WHERE o.id = s.offer AND o.rule IS NULL;
