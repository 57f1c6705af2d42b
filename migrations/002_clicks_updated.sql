-- 002_clicks_updated: clicks get an updated time like the other records that
-- `leadsync import` upserts (a click recorded elsewhere can be imported, so
-- that postbacks naming it are taken).
ALTER TABLE clicks ADD COLUMN updated timestamptz NOT NULL DEFAULT now();
