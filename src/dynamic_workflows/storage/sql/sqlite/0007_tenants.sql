-- Tenants (core/tenancy.py): one row per scope, holding the policy last resolved for it and its
-- create bucket, so that caps and rates are the same for every create and claim. Every scope
-- with instances has a row: claim_due reads its due instances scope by scope from here.
--
-- Numbered 0007: 0005 and 0006 belong to other changes being made in parallel; PRAGMA
-- user_version only has to grow.

CREATE TABLE tenants (
    scope         TEXT    PRIMARY KEY,
    weight        INTEGER NOT NULL DEFAULT 1,
    max_running   INTEGER,                      -- NULL: no cap
    max_live      INTEGER,
    create_rate   REAL,                         -- instances per second
    create_burst  INTEGER,
    tokens        REAL,                         -- the create bucket (NULL: full)
    tokens_at     REAL,
    updated_at    REAL    NOT NULL DEFAULT 0
) WITHOUT ROWID;

INSERT INTO tenants (scope) SELECT DISTINCT scope FROM instances;

-- A scope's due instances, earliest first (claim_due's candidates).
CREATE INDEX instances_scope_due ON instances (scope, wake_at) WHERE wake_at IS NOT NULL;
-- Runs holding a slot (max_running, workflow concurrency): few rows.
CREATE INDEX instances_held ON instances (scope, workflow)
    WHERE status IN ('running', 'waitingForPause');
-- Unfinished instances of a scope (max_live).
CREATE INDEX instances_live ON instances (scope)
    WHERE status IN ('paused', 'queued', 'running', 'waiting', 'waitingForPause');
