-- The PostgreSQL backend's fixed statements, by name (postgres.py runs them; the few whose
-- shape depends on the call, such as list filters and a transition's columns, are built there).
-- Status values come in as parameters from core/transitions.py: no status rule is written here
-- except claim_due's, which must be one statement (see there).

-- name: create_instances
-- New queued instances, due now, in one statement; existing ids are skipped. Tells the other
-- nodes (new:<workflow>) at commit, once per workflow.
WITH new AS (
    SELECT *
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) WITH ORDINALITY
        AS n (workflow, scope, id, params, ord)
), ins AS (
    INSERT INTO instances (workflow, scope, id, status, params, created_at, updated_at, wake_at)
    SELECT workflow, scope, id, $5, params, $6, $6, $6 FROM new ORDER BY ord
    ON CONFLICT (workflow, scope, id) DO NOTHING
    RETURNING pk, workflow, scope, id
), told AS (
    SELECT count(pg_notify($7, 'new:' || workflow)) AS n FROM (SELECT DISTINCT workflow FROM ins) w
)
SELECT ins.pk, ins.workflow, ins.scope, ins.id FROM ins, told;

-- name: get_instance
SELECT {instance_columns} FROM instances WHERE workflow = $1 AND scope = $2 AND id = $3;

-- name: get_instance_by_pk
SELECT {instance_columns} FROM instances WHERE pk = $1;

-- name: find_instances
SELECT {instance_columns} FROM instances WHERE workflow = $1 AND id = $2 ORDER BY created_at, pk;

-- name: load_journal
SELECT {step_columns} FROM steps WHERE instance_pk = $1
ORDER BY recorded_at NULLS FIRST, name, count;

-- name: load_journals
SELECT instance_pk, {step_columns} FROM steps WHERE instance_pk = ANY ($1::bigint[])
ORDER BY instance_pk, recorded_at NULLS FIRST, name, count;

-- name: claim_due
-- Claims in one statement, earliest first, skipping rows other transactions hold:
--   due:      queued/waiting rows ($3) whose wake_at has come (or comes within $10 seconds:
--             claimed ahead), not held by a live lease (a parked run: its owner keeps it
--             warm) nor by this node ($4: it parks its own); leases are judged at $1, now;
--   lapsed:   running/pausing rows ($5) whose owner's lease ran out: a takeover.
-- A row that had an owner gets its generation bumped, so that the old owner's writes, fenced
-- by generation, can never commit. This is transitions.recover followed by transitions.claim:
-- a taken-over run that was pausing ($6) ends paused and is not returned as a claim.
WITH due AS (
    SELECT pk, wake_at AS t FROM instances
    WHERE wake_at <= $1::float8 + $10::float8 AND status = ANY ($3::text[])
      AND (owner IS NULL OR (owner <> $4 AND lease_until < $1))
    ORDER BY wake_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), lapsed AS (
    SELECT pk, lease_until AS t FROM instances
    WHERE owner IS NOT NULL AND lease_until < $1 AND owner <> $4 AND status = ANY ($5::text[])
    ORDER BY lease_until
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT pk, t FROM (SELECT * FROM due UNION ALL SELECT * FROM lapsed) c ORDER BY t, pk LIMIT $2
)
UPDATE instances i SET
    status      = CASE WHEN i.status = $6 THEN $7 ELSE $8 END,
    generation  = CASE WHEN i.owner IS NULL THEN i.generation ELSE i.generation + 1 END,
    wake_at     = NULL,
    started_at  = CASE WHEN i.status = $6 THEN i.started_at ELSE coalesce(i.started_at, $1) END,
    updated_at  = $1,
    owner       = CASE WHEN i.status = $6 THEN NULL ELSE $4 END,
    lease_until = CASE WHEN i.status = $6 THEN NULL ELSE $1 + $9 END
FROM picked
WHERE i.pk = picked.pk
RETURNING {instance_columns_of_i};

-- name: next_due
-- The earliest time claim_due could take something: a due row not held, or one whose holder's
-- lease runs out (rows held by this node, $1, are its own to resume).
SELECT least(
    (SELECT min(wake_at) FROM instances
     WHERE wake_at IS NOT NULL AND owner IS NULL AND status = ANY ($2::text[])),
    (SELECT min(CASE WHEN status = ANY ($2::text[]) THEN greatest(wake_at, lease_until)
                     ELSE lease_until END)
     FROM instances
     WHERE owner IS NOT NULL AND owner <> $1
       AND (status = ANY ($3::text[]) OR (status = ANY ($2::text[]) AND wake_at IS NOT NULL)))
);

-- name: record_steps
-- Journal writes of many live runs at once. A run is live while its row is active or parked
-- ($18: a parked row is held, waiting or queued) with the run's generation and held by this
-- node ($17). FOR SHARE (taken in pk order, as
-- renew_leases does) holds off a concurrent terminate, restart or takeover until this commits,
-- and a row changed meanwhile is re-read first: no write is kept for a run that lost its row.
-- The upsert keeps recorded_at from the step's first write. Answers the live (pk, generation).
WITH w AS (
    SELECT *
    FROM unnest(
        $1::bigint[], $2::int[], $3::text[], $4::int[], $5::text[], $6::text[], $7::bytea[],
        $8::text[], $9::text[], $10::int[], $11::float8[], $12::text[], $13::float8[],
        $14::float8[], $15::float8[], $16::bytea[]
    ) AS w (pk, generation, name, count, kind, state, value, error_name, error_message,
            attempt, wake_at, event_type, recorded_at, started_at, ended_at, attempts)
), live AS (
    SELECT pk, generation FROM instances
    WHERE pk = ANY ($1::bigint[]) AND owner = $17 AND status = ANY ($18::text[])
    ORDER BY pk
    FOR SHARE
), kept AS (
    INSERT INTO steps (instance_pk, name, count, kind, state, value, error_name, error_message,
                       attempt, wake_at, event_type, recorded_at, started_at, ended_at, attempts)
    SELECT w.pk, w.name, w.count, w.kind, w.state, w.value, w.error_name, w.error_message,
           w.attempt, w.wake_at, w.event_type, w.recorded_at, w.started_at, w.ended_at,
           w.attempts
    FROM w JOIN live ON live.pk = w.pk AND live.generation = w.generation
    ON CONFLICT (instance_pk, name, count) DO UPDATE SET
        kind = excluded.kind, state = excluded.state, value = excluded.value,
        error_name = excluded.error_name, error_message = excluded.error_message,
        attempt = excluded.attempt, wake_at = excluded.wake_at, event_type = excluded.event_type,
        started_at = excluded.started_at, ended_at = excluded.ended_at,
        attempts = excluded.attempts
)
SELECT pk, generation FROM live;

-- name: put_step
-- One journal entry of a run whose row this transaction holds (register_wait); consumes the
-- buffered event $16 if there is one.
WITH consumed AS (
    UPDATE events SET consumed = true WHERE seq = $16::bigint
)
INSERT INTO steps (instance_pk, name, count, kind, state, value, error_name, error_message,
                   attempt, wake_at, event_type, recorded_at, started_at, ended_at, attempts)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (instance_pk, name, count) DO UPDATE SET
    kind = excluded.kind, state = excluded.state, value = excluded.value,
    error_name = excluded.error_name, error_message = excluded.error_message,
    attempt = excluded.attempt, wake_at = excluded.wake_at, event_type = excluded.event_type,
    started_at = excluded.started_at, ended_at = excluded.ended_at, attempts = excluded.attempts;

-- name: lock_instance
-- The row a transition reads, locked until the transaction ends.
SELECT status, generation, wake_at, started_at, owner, lease_until
FROM instances WHERE pk = $1 FOR UPDATE;

-- name: oldest_event
-- register_wait, after lock_instance: the oldest buffered event of the type. A statement of its
-- own, not joined to the lock: under READ COMMITTED a statement that waited for the row lock
-- re-reads only the locked row, and a join would miss the event that a concurrent add_event (the
-- lock's previous holder) just committed; a new statement sees it.
SELECT seq, type, payload, created_at FROM events
WHERE instance_pk = $1 AND type = $2 AND NOT consumed
ORDER BY seq LIMIT 1;

-- name: journal_entry
-- expire_wait, after lock_instance: the journal entry (name, count) if recorded (a statement of
-- its own for the reason given at oldest_event).
SELECT {step_columns} FROM steps WHERE instance_pk = $1 AND name = $2 AND count = $3;

-- name: waiting_steps
SELECT {step_columns} FROM steps
WHERE instance_pk = $1 AND state = 'waiting' AND event_type = $2;

-- name: step_recorded_at
SELECT recorded_at FROM steps WHERE instance_pk = $1 AND name = $2 AND count = $3;

-- name: update_step
-- A transition's StepUpdate: $5/$6 say whether value/error change.
UPDATE steps SET
    state = $4,
    value = CASE WHEN $5::boolean THEN $6::bytea ELSE value END,
    error_name = CASE WHEN $7::boolean THEN $8::text ELSE error_name END,
    error_message = CASE WHEN $7::boolean THEN $9::text ELSE error_message END
WHERE instance_pk = $1 AND name = $2 AND count = $3;

-- name: add_event
-- Store an event and tell the nodes (event:<pk>) at commit.
INSERT INTO events (instance_pk, type, payload, created_at, consumed)
VALUES ($1, $2, $3, $4, $5)
RETURNING pg_notify($6, 'event:' || $1::text);

-- name: truncate_journal
DELETE FROM steps WHERE instance_pk = $1;

-- name: truncate_journal_from
-- A restart from a step: it and every entry recorded at or after its time go (as on SQLite).
DELETE FROM steps WHERE instance_pk = $1 AND (recorded_at IS NULL OR recorded_at >= $2);

-- name: drop_consumed_events
DELETE FROM events WHERE instance_pk = $1 AND consumed;

-- name: delete_instance
-- After lock_instance: the row, its journal and its events; the node running it is told.
WITH gone AS (
    DELETE FROM instances WHERE pk = $1 RETURNING pk
), steps_gone AS (
    DELETE FROM steps WHERE instance_pk = $1
), events_gone AS (
    DELETE FROM events WHERE instance_pk = $1
)
SELECT pg_notify($2, 'control:' || pk::text) FROM gone;

-- name: renew_leases
-- Extend the leases this node ($2) still holds, in pk order (as record_steps locks them).
WITH held AS (
    SELECT pk FROM instances WHERE pk = ANY ($1::bigint[]) AND owner = $2 ORDER BY pk FOR UPDATE
)
UPDATE instances i SET lease_until = greatest(i.lease_until, $3)
FROM held WHERE i.pk = held.pk
RETURNING i.pk;

-- name: release_held
-- recover: rows this node held without a live run (parked ones) are let go as they are.
UPDATE instances SET owner = NULL, lease_until = NULL WHERE owner = $1;

-- name: heartbeat
INSERT INTO nodes (id, started_at, heartbeat_at, host, pid) VALUES ($1, $2, $2, $3, $4)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at;

-- name: notify
SELECT pg_notify($1, $2);
