-- Several nodes share the database: a live run's row names the node that holds it (owner) and
-- until when (lease_until, the owner's clock); a lapsed lease lets another node take the run
-- over. The nodes table is for the operators' view: who is up, since when, last heard of when.

ALTER TABLE instances ADD COLUMN owner TEXT;
ALTER TABLE instances ADD COLUMN lease_until DOUBLE PRECISION;

-- Only held rows carry an owner: the takeover scan (lapsed leases) reads this small index.
CREATE INDEX instances_leased ON instances (lease_until) WHERE owner IS NOT NULL;

CREATE TABLE nodes (
    id            TEXT             PRIMARY KEY,
    started_at    DOUBLE PRECISION NOT NULL,
    heartbeat_at  DOUBLE PRECISION NOT NULL,
    host          TEXT             NOT NULL,
    pid           INTEGER          NOT NULL
);
