-- Tenants (core/tenancy.py): one row per scope, holding the policy last resolved for it and its
-- create bucket, shared by every node: a create locks its tenant's row to take tokens and count
-- its unfinished instances; claim_due reads each scope's due instances from here, and takes an
-- advisory lock per capped scope and workflow before it counts the runs that hold a slot.
--
-- Numbered 0007: 0005 and 0006 belong to other changes being made in parallel.

CREATE TABLE tenants (
    scope         TEXT             PRIMARY KEY,
    weight        INTEGER          NOT NULL DEFAULT 1,
    max_running   INTEGER,                               -- NULL: no cap
    max_live      INTEGER,
    create_rate   DOUBLE PRECISION,                      -- instances per second
    create_burst  INTEGER,
    tokens        DOUBLE PRECISION,                      -- the create bucket (NULL: full)
    tokens_at     DOUBLE PRECISION,
    updated_at    DOUBLE PRECISION NOT NULL DEFAULT 0
);

INSERT INTO tenants (scope) SELECT DISTINCT scope FROM instances;

-- A scope's due instances, earliest first (claim_due's candidates).
CREATE INDEX instances_scope_due ON instances (scope, wake_at) WHERE wake_at IS NOT NULL;
-- Runs holding a slot (max_running, workflow concurrency): held rows only, few.
CREATE INDEX instances_held ON instances (scope, workflow) WHERE owner IS NOT NULL;
-- Unfinished instances of a scope (max_live).
CREATE INDEX instances_live ON instances (scope)
    WHERE status NOT IN ('complete', 'errored', 'terminated');
