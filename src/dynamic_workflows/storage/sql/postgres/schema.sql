-- The schema the migrations (NNNN_*.sql) add up to, for reading: nothing applies this file but
-- the test that checks the migrations reproduce it exactly. Change the schema with a new
-- migration, then mirror it here.
--
-- Times are epoch seconds from the engine's clock (which tests replace), never the server's
-- now(). JSON is stored as the exact bytes the engine gives (BYTEA).

CREATE TABLE instances (
    pk            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow      TEXT             NOT NULL,
    scope         TEXT             NOT NULL DEFAULT '',  -- tenant scope of the id
    id            TEXT             NOT NULL,
    status        TEXT             NOT NULL,
    params        BYTEA            NOT NULL,             -- JSON
    output        BYTEA,                                 -- JSON of run()'s return value
    error_name    TEXT,
    error_message TEXT,
    generation    INTEGER          NOT NULL DEFAULT 0,   -- bumped by terminate/restart/takeover
    created_at    DOUBLE PRECISION NOT NULL,
    updated_at    DOUBLE PRECISION NOT NULL,
    started_at    DOUBLE PRECISION,
    ended_at      DOUBLE PRECISION,
    wake_at       DOUBLE PRECISION,                      -- claim at this time (queued/waiting)
    owner         TEXT,                                  -- the node holding a live/parked run
    lease_until   DOUBLE PRECISION,                      -- ... until then, unless it renews
    error_traceback TEXT,                                -- the workflow's frames (bounded)
    log_bytes     BIGINT           NOT NULL DEFAULT 0,   -- its runs' lines stored (bytes)
    log_dropped   BIGINT           NOT NULL DEFAULT 0,   -- ... and dropped (lines)
    rollback      TEXT,                                  -- JSON: the rollback phase's outcome
    schedule      BYTEA,                                 -- JSON {cron, scheduledTime} of its tick
    success_retention DOUBLE PRECISION,                  -- seconds kept once complete (NULL: ever)
    error_retention DOUBLE PRECISION,                    -- ... once errored/terminated
    UNIQUE (workflow, scope, id)
);

CREATE INDEX instances_due ON instances (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX instances_by_created ON instances (workflow, created_at, pk);
CREATE INDEX instances_leased ON instances (lease_until) WHERE owner IS NOT NULL;
CREATE INDEX instances_scope_due ON instances (scope, wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX instances_held ON instances (scope, workflow) WHERE owner IS NOT NULL;
CREATE INDEX instances_live ON instances (scope)
    WHERE status NOT IN ('complete', 'errored', 'terminated');

-- One row per scope (tenant): its policy as last resolved, and its create bucket.
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
-- core.retention.retain_until: when a finished instance may be deleted (delete_retained).
CREATE INDEX instances_retained ON instances ((
    CASE status
        WHEN 'complete' THEN ended_at + success_retention
        WHEN 'errored' THEN ended_at + error_retention
        WHEN 'terminated' THEN ended_at + error_retention
    END
)) WHERE success_retention IS NOT NULL OR error_retention IS NOT NULL;

CREATE TABLE steps (
    instance_pk   BIGINT           NOT NULL,
    name          TEXT COLLATE "C" NOT NULL,
    count         INTEGER          NOT NULL,
    kind          TEXT             NOT NULL,             -- do | sleep | wait | rollback
    state         TEXT             NOT NULL,             -- done | failed | retrying | sleeping | waiting
    value         BYTEA,
    error_name    TEXT,
    error_message TEXT,
    attempt       INTEGER          NOT NULL DEFAULT 0,
    wake_at       DOUBLE PRECISION,
    event_type    TEXT,
    recorded_at   DOUBLE PRECISION,                      -- first recorded: the journal's order
    started_at    DOUBLE PRECISION,                      -- latest attempt, sleep or wait began
    ended_at      DOUBLE PRECISION,                      -- latest attempt ended
    attempts      BYTEA,                                 -- JSON: failed attempts, bounded
    error_traceback TEXT,                                -- the workflow's frames (bounded)
    rollback      BOOLEAN          NOT NULL DEFAULT false, -- registered a rollback handler
    sensitive     BOOLEAN          NOT NULL DEFAULT false, -- config sensitive: "output"
    PRIMARY KEY (instance_pk, name, count)
);

CREATE INDEX steps_waiting ON steps (instance_pk, event_type) WHERE state = 'waiting';

CREATE TABLE events (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_pk   BIGINT           NOT NULL,
    type          TEXT             NOT NULL,
    payload       BYTEA            NOT NULL,
    created_at    DOUBLE PRECISION NOT NULL,
    consumed      BOOLEAN          NOT NULL DEFAULT false
);

CREATE INDEX events_pending ON events (instance_pk, type, seq) WHERE NOT consumed;
CREATE INDEX events_by_instance ON events (instance_pk);

-- What runs printed or logged, a row per line, numbered (the cursor of a reader that follows).
CREATE TABLE logs (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_pk   BIGINT           NOT NULL,
    at            DOUBLE PRECISION NOT NULL,
    stream        TEXT             NOT NULL,             -- stdout | stderr | INFO... | dwf
    text          TEXT             NOT NULL,
    step_name     TEXT,                                  -- NULL: run()'s own code
    step_count    INTEGER          NOT NULL DEFAULT 0,
    attempt       INTEGER          NOT NULL DEFAULT 0,
    dropped       INTEGER          NOT NULL DEFAULT 0    -- a note (dwf): lines dropped here
);

CREATE INDEX logs_by_instance ON logs (instance_pk, seq);

CREATE TABLE nodes (
    id            TEXT             PRIMARY KEY,
    started_at    DOUBLE PRECISION NOT NULL,
    heartbeat_at  DOUBLE PRECISION NOT NULL,
    host          TEXT             NOT NULL,
    pid           INTEGER          NOT NULL
);

-- Each cron schedule's last tick fired (a tick fires with the instance it creates).
CREATE TABLE schedule_ticks (
    workflow      TEXT             NOT NULL,
    cron          TEXT             NOT NULL,
    last_tick     DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (workflow, cron)
);
