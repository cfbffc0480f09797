-- Each step's attempt history (core/attempts.py): when its latest attempt, or its sleep or
-- wait, began (started_at) and when its latest attempt ended (ended_at); its failed attempts,
-- bounded, as JSON (attempts, NULL for a step that never failed).

ALTER TABLE steps ADD COLUMN started_at DOUBLE PRECISION;
ALTER TABLE steps ADD COLUMN ended_at DOUBLE PRECISION;
ALTER TABLE steps ADD COLUMN attempts BYTEA;
