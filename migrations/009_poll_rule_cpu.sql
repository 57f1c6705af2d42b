-- 009_poll_rule_cpu: the rule's CPU time per poll run (batch), in ms, as
-- the rule threads measured it (prepare, decode and process together, on
-- the thread's CPU clock). What an operator reads to find the offer whose
-- rule is slow; poller.h tells when a run counts as slow.
ALTER TABLE poll_runs ADD COLUMN rule_cpu_ms double precision NOT NULL DEFAULT 0;
