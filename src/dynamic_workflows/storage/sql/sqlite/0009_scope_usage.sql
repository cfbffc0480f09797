-- The tenants view (Storage.scope_usage) groups instances by scope: this index covers what it
-- reads of each instance, so the read never visits the rows (whose params make them wide). At
-- 200,000 instances the grouping went from about 0.5-0.8 s to 0.12-0.15 s
-- (bench/scope_usage.py). PostgreSQL has no such index: its parallel sequential scan was as
-- fast as an index-only scan here, and an index would cost every status change a write.

CREATE INDEX instances_by_scope ON instances (scope, workflow, status, updated_at, created_at);
