-- A step declared with config={"sensitive": "output"} (Cloudflare's WorkflowStepConfig.sensitive):
-- its value is replayed to the run as any other, and every view of it for operators shows
-- "[REDACTED]" instead (queries.py).

ALTER TABLE steps ADD COLUMN sensitive BOOLEAN NOT NULL DEFAULT false;
