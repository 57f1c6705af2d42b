-- 003_poller: what the poller needs beyond 001 (include/poller.h).
--
-- poll_runs: leads_skipped counts leads a postback changed between the
-- poll's read and its write (not clobbered, asked again next time); notes
-- holds the rule's refused edits, unrecognised words, log lines and the
-- skipped leads; caught_up/missed mark a run that started late and covered
-- `missed` whole intervals (missed runs are never replayed one by one).
ALTER TABLE poll_runs
	ADD COLUMN leads_skipped integer NOT NULL DEFAULT 0,
	ADD COLUMN caught_up boolean NOT NULL DEFAULT false,
	ADD COLUMN missed integer NOT NULL DEFAULT 0,
	ADD COLUMN notes text;

-- The id variants read an offer's leads in id order (keyset pagination):
-- these partial indexes give each page in O(batch), however many leads
-- the offer has in other statuses. The statuses must match the poller's
-- queries literally.
CREATE INDEX leads_poll_processing ON leads (offer, id) WHERE status IN (2, 3, 4);
CREATE INDEX leads_poll_accepted ON leads (offer, id) WHERE status IN (6, 7, 8, 9);
