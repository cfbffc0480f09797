-- What runs printed or logged (core/logs.py), and the traceback of an error (core/tracebacks.py).
--
-- logs: one row per line of an instance's runs, numbered by seq (the cursor of a reader that
-- follows them; an instance's lines are written by the one node that holds its run, one
-- statement at a time, so their numbers follow their order); step_name NULL: run()'s own code
-- between steps. An instance's totals are on its row: log_bytes (what is stored, against the
-- limit) and log_dropped (lines over the limits).

CREATE TABLE logs (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_pk   BIGINT           NOT NULL,
    at            DOUBLE PRECISION NOT NULL,
    stream        TEXT             NOT NULL,
    text          TEXT             NOT NULL,
    step_name     TEXT,
    step_count    INTEGER          NOT NULL DEFAULT 0,
    attempt       INTEGER          NOT NULL DEFAULT 0,
    dropped       INTEGER          NOT NULL DEFAULT 0
);

CREATE INDEX logs_by_instance ON logs (instance_pk, seq);

ALTER TABLE instances ADD COLUMN error_traceback TEXT;
ALTER TABLE instances ADD COLUMN log_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN log_dropped BIGINT NOT NULL DEFAULT 0;
ALTER TABLE steps ADD COLUMN error_traceback TEXT;
