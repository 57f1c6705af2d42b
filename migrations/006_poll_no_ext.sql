-- 004_poll_no_ext: leads without an external id (postbacks make them) are
-- never asked about by the id variants, only counted (include/poller.h).
--
-- poll_runs.leads_no_ext: how many open leads of the run's variant the
-- run left out for having no external id; on the run's first row.
ALTER TABLE poll_runs ADD COLUMN leads_no_ext integer NOT NULL DEFAULT 0;

-- The id variants' pages skip those leads: the partial indexes hold only
-- the leads they ask about, so a page stays O(batch) however many
-- ext-less leads an offer has. The conditions must match the poller's
-- queries literally.
DROP INDEX leads_poll_processing;
DROP INDEX leads_poll_accepted;
CREATE INDEX leads_poll_processing ON leads (offer, id) WHERE status IN (2, 3, 4) AND ext <> '';
CREATE INDEX leads_poll_accepted ON leads (offer, id) WHERE status IN (6, 7, 8, 9) AND ext <> '';
