-- 004_poll_content_type: the Content-Type of a poll's last answer, beside
-- its answer_head: its charset is what the answer was decoded from
-- (include/decode.h), so a decode_error can be read against it.
ALTER TABLE poll_runs ADD COLUMN content_type text;
