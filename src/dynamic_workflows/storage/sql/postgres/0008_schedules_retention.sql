-- Cron-triggered instances and retention (core/cron.py, core/retention.py).
--
-- instances.schedule: JSON {"cron", "scheduledTime"} of the tick that created the instance
-- (its event's schedule), NULL for one created by a call. success_retention/error_retention:
-- seconds the instance is kept once it ended complete / errored or terminated (NULL: forever).
-- When it may be deleted ("retain_until", core/retention.retain_until) is not a column: it is
-- this index's expression, which queries.sql's delete_retained repeats word for word so that
-- the planner uses the index (no column to keep up to date on every way a run ends). Only
-- instances with a retention are in it. Adding the columns rewrites nothing (no default).
--
-- schedule_ticks: per schedule (workflow, cron expression), the last tick fired (epoch
-- seconds); a tick fires by moving it forward in the transaction that creates the instance,
-- so that of several nodes (or a node before and after a crash) one fires each tick.

ALTER TABLE instances ADD COLUMN schedule BYTEA;
ALTER TABLE instances ADD COLUMN success_retention DOUBLE PRECISION;
ALTER TABLE instances ADD COLUMN error_retention DOUBLE PRECISION;

CREATE INDEX instances_retained ON instances ((
    CASE status
        WHEN 'complete' THEN ended_at + success_retention
        WHEN 'errored' THEN ended_at + error_retention
        WHEN 'terminated' THEN ended_at + error_retention
    END
)) WHERE success_retention IS NOT NULL OR error_retention IS NOT NULL;

CREATE TABLE schedule_ticks (
    workflow      TEXT             NOT NULL,
    cron          TEXT             NOT NULL,
    last_tick     DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (workflow, cron)
);
