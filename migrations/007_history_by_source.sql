-- 007_history_by_source: the operator's views (include/views.h) show the
-- leads one poll run changed: the lead_history rows with that run as
-- source_id. Without this index that is a scan of the whole history.
-- Ids only grow, so each insert lands on the index's rightmost page.
CREATE INDEX lead_history_source ON lead_history (source_id) WHERE source_id IS NOT NULL;
