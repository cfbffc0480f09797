-- A step declared with config={"sensitive": "output"} (Cloudflare's WorkflowStepConfig.sensitive):
-- its value is replayed to the run as any other, and every view of it for operators shows
-- "[REDACTED]" instead (queries.py). 1 for such a step, 0 otherwise.

ALTER TABLE steps ADD COLUMN sensitive INTEGER NOT NULL DEFAULT 0;
