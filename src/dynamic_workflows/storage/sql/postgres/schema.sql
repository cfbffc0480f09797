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
    updated_at    DOUBLE PRECISION NOT NULL DEFAULT 0,
    next_wake     DOUBLE PRECISION                       -- <= its claimable rows' wake_at (0009)
);
CREATE INDEX tenants_next_wake ON tenants (next_wake) WHERE next_wake IS NOT NULL;
CREATE INDEX tenants_capped ON tenants (scope) WHERE max_running IS NOT NULL;
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

-- tenants.next_wake kept a lower bound (0009_tenant_next_wake.sql says how and why).

-- A create (create_instances, fire_schedule): one call per statement, whatever its size (a
-- trigger per row added a third to a 100-row create), each scope's hint lowered to its new
-- instances' earliest wake_at, scope by scope in order (two creates lowering the same scopes
-- lock their rows in one order), each through the primary key (a join of the transition table
-- with tenants was planned as a scan of tenants: a create took 5 ms more beside 1,000
-- tenants). Every scope has its row by now (the create's own statement inserts the missing
-- ones); the INSERT is for one that has not.
CREATE FUNCTION dwf_next_wake_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    s text;
    w double precision;
BEGIN
    FOR s, w IN
        SELECT scope, min(wake_at) FROM inserted WHERE wake_at IS NOT NULL
        GROUP BY scope ORDER BY scope
    LOOP
        PERFORM pg_advisory_xact_lock_shared(-237256071, hashtext(s) & 255);
        UPDATE tenants SET next_wake = w WHERE scope = s AND (next_wake IS NULL OR next_wake > w);
        IF NOT FOUND AND NOT EXISTS (SELECT 1 FROM tenants WHERE scope = s) THEN
            INSERT INTO tenants AS t (scope, next_wake) VALUES (s, w)
            ON CONFLICT (scope) DO UPDATE SET next_wake = excluded.next_wake
            WHERE t.next_wake IS NULL OR t.next_wake > excluded.next_wake;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

-- An update that gives a row a wake_at, or a new status with one (see the trigger's WHEN).
CREATE FUNCTION dwf_next_wake_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(-237256071, hashtext(NEW.scope) & 255);
    UPDATE tenants SET next_wake = NEW.wake_at
    WHERE scope = NEW.scope AND (next_wake IS NULL OR next_wake > NEW.wake_at);
    IF NOT FOUND AND NOT EXISTS (SELECT 1 FROM tenants WHERE scope = NEW.scope) THEN
        INSERT INTO tenants AS t (scope, next_wake) VALUES (NEW.scope, NEW.wake_at)
        ON CONFLICT (scope) DO UPDATE SET next_wake = excluded.next_wake
        WHERE t.next_wake IS NULL OR t.next_wake > excluded.next_wake;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER instances_next_wake_insert AFTER INSERT ON instances
REFERENCING NEW TABLE AS inserted
FOR EACH STATEMENT EXECUTE FUNCTION dwf_next_wake_inserted();

-- A status change counts as well as a new wake_at: a row may carry a wake_at in a status that
-- is not claimable (an event for a running run), and a raise meanwhile does not count it.
CREATE TRIGGER instances_next_wake_update AFTER UPDATE OF wake_at, status ON instances
FOR EACH ROW
WHEN (NEW.wake_at IS NOT NULL
      AND (OLD.wake_at IS DISTINCT FROM NEW.wake_at OR OLD.status IS DISTINCT FROM NEW.status))
EXECUTE FUNCTION dwf_next_wake_updated();

-- The raise: the hints of the scopes ($1) a claim visited for nothing, recomputed
-- from their claimable instances (statuses $2), for the scopes whose bucket it can lock now
-- and whose tenants row nobody holds (the others keep their hint: a lower bound still). Run it
-- on its own, outside any transaction (postgres.py does): its locks must be let go at once,
-- and READ COMMITTED gives each statement of a VOLATILE function a fresh snapshot, so the
-- UPDATE sees every writer that held a bucket's lock before the first statement took it.
-- Answers the number of hints changed.
CREATE FUNCTION dwf_raise_next_wake(scopes text[], claimable text[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    free text[];
    changed integer;
BEGIN
    SELECT array_agg(s) INTO free FROM unnest(scopes) s
    WHERE pg_try_advisory_xact_lock(-237256071, hashtext(s) & 255);
    IF free IS NULL THEN
        RETURN 0;
    END IF;
    WITH held AS (
        SELECT scope, next_wake FROM tenants WHERE scope = ANY (free) ORDER BY scope
        FOR NO KEY UPDATE SKIP LOCKED
    ), fresh AS (
        SELECT held.scope, held.next_wake AS was, (
            SELECT i.wake_at FROM instances i
            WHERE i.scope = held.scope AND i.wake_at IS NOT NULL AND i.status = ANY (claimable)
            ORDER BY i.wake_at LIMIT 1
        ) AS wake
        FROM held
    )
    UPDATE tenants t SET next_wake = fresh.wake
    FROM fresh WHERE t.scope = fresh.scope AND fresh.wake IS DISTINCT FROM fresh.was;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RETURN changed;
END
$$;
