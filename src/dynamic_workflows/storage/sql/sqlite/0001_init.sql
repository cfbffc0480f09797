-- The whole durable state of an engine: instances, their steps' journal, and events.

CREATE TABLE instances (
    pk            INTEGER PRIMARY KEY,
    workflow      TEXT    NOT NULL,
    scope         TEXT    NOT NULL DEFAULT '',  -- tenant scope of the id (dispatch library)
    id            TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    params        BLOB    NOT NULL,             -- JSON
    output        BLOB,                         -- JSON of run()'s return value
    error_name    TEXT,
    error_message TEXT,
    generation    INTEGER NOT NULL DEFAULT 0,   -- bumped by terminate/restart: fences stale runs
    created_at    REAL    NOT NULL,
    updated_at    REAL    NOT NULL,
    started_at    REAL,
    ended_at      REAL,
    wake_at       REAL,                         -- claim at this time (queued/waiting)
    UNIQUE (workflow, scope, id)
);

-- Only claimable rows carry wake_at: the scheduler's index holds no finished instance.
CREATE INDEX instances_due ON instances (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX instances_by_created ON instances (workflow, created_at);

CREATE TABLE steps (
    instance_pk   INTEGER NOT NULL,
    name          TEXT    NOT NULL,
    count         INTEGER NOT NULL,
    kind          TEXT    NOT NULL,             -- do | sleep | wait
    state         TEXT    NOT NULL,             -- done | failed | retrying | sleeping | waiting
    value         BLOB,
    error_name    TEXT,
    error_message TEXT,
    attempt       INTEGER NOT NULL DEFAULT 0,
    wake_at       REAL,
    event_type    TEXT,
    PRIMARY KEY (instance_pk, name, count)
) WITHOUT ROWID;

CREATE INDEX steps_waiting ON steps (instance_pk, event_type) WHERE state = 'waiting';

CREATE TABLE events (
    seq           INTEGER PRIMARY KEY,
    instance_pk   INTEGER NOT NULL,
    type          TEXT    NOT NULL,
    payload       BLOB    NOT NULL,
    created_at    REAL    NOT NULL,
    consumed      INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX events_pending ON events (instance_pk, type, seq) WHERE consumed = 0;
