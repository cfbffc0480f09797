-- What runs printed or logged (core/logs.py), and the traceback of an error (core/tracebacks.py).
--
-- logs: one row per line of an instance's runs, numbered by seq (the cursor of a reader that
-- follows them); step_name NULL: run()'s own code between steps. Written with the step
-- writes of its run (record_steps), bounded by the engine; an instance's totals are on its
-- row: log_bytes (what is stored, against the limit) and log_dropped (lines over the limits).

CREATE TABLE logs (
    seq           INTEGER PRIMARY KEY,
    instance_pk   INTEGER NOT NULL,
    at            REAL    NOT NULL,
    stream        TEXT    NOT NULL,             -- stdout | stderr | INFO, WARNING... | dwf
    text          TEXT    NOT NULL,
    step_name     TEXT,
    step_count    INTEGER NOT NULL DEFAULT 0,
    attempt       INTEGER NOT NULL DEFAULT 0,
    dropped       INTEGER NOT NULL DEFAULT 0    -- a note (stream dwf): lines dropped here
);

CREATE INDEX logs_by_instance ON logs (instance_pk, seq);

ALTER TABLE instances ADD COLUMN error_traceback TEXT;
ALTER TABLE instances ADD COLUMN log_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN log_dropped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE steps ADD COLUMN error_traceback TEXT;
