-- The PostgreSQL backend's fixed statements, by name (postgres.py runs them; the few whose
-- shape depends on the call, such as list filters and a transition's columns, are built there).
-- Status values come in as parameters from core/transitions.py: no status rule is written here
-- except claim_due's, which must be one statement (see there).

-- name: create_instances
-- New queued instances, due now, in one statement; existing ids are skipped. Tells the other
-- nodes (new:<workflow>) at commit, once per workflow.
-- $8-$10: each one's schedule (its cron tick's JSON) and retentions, NULL for none.
WITH new AS (
    SELECT *
    FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::bytea[], $8::bytea[], $9::float8[], $10::float8[]
    ) WITH ORDINALITY
        AS n (workflow, scope, id, params, schedule, success_retention, error_retention, ord)
), ins AS (
    INSERT INTO instances (workflow, scope, id, status, params, created_at, updated_at, wake_at,
                           schedule, success_retention, error_retention)
    SELECT workflow, scope, id, $5, params, $6, $6, $6, schedule, success_retention,
           error_retention
    FROM new ORDER BY ord
    ON CONFLICT (workflow, scope, id) DO NOTHING
    RETURNING pk, workflow, scope, id
), told AS (
    SELECT count(pg_notify($7, 'new:' || workflow)) AS n FROM (SELECT DISTINCT workflow FROM ins) w
), tenant AS (
    -- Every scope has a row (claim_due reads scopes from there); taking no lock when it has.
    INSERT INTO tenants (scope) SELECT DISTINCT scope FROM ins ORDER BY scope
    ON CONFLICT (scope) DO NOTHING
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
-- The journals of the claimed runs: each run's entries read through the primary key, one run
-- at a time (the subquery's ORDER BY keeps the planner from flattening it into a join). Not
-- "instance_pk = ANY ($1)", nor a plain join: planned without statistics (a new database, the
-- first minute of a deployment, every benchmark) they read the whole steps table every claim.
SELECT p.pk, {step_columns_of_s}
FROM unnest($1::bigint[]) AS p (pk)
CROSS JOIN LATERAL (
    SELECT * FROM steps WHERE instance_pk = p.pk ORDER BY recorded_at NULLS FIRST, name, count
) s
ORDER BY p.pk, s.recorded_at NULLS FIRST, s.name, s.count;

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
{claim_update}

-- name: claim_candidates
-- Fair (or capped) claims, step 1: each scope's earliest claimable instances, at most $4 of
-- each, through instances_scope_due (one short index range per scope), with the scope's
-- weight and max_running. Conditions as claim_due's "due"; nothing is locked yet. Only the
-- scopes whose next_wake (a lower bound of their claimable rows' wake_at, 0009) has come are
-- visited, through tenants_next_wake: a claim costs the scopes with due work, not every
-- tenant. A scope visited without a due row comes as one row, pk NULL, with the earliest
-- wake_at of its claimable rows (the last column, NULL: none): when that is beyond the claim's
-- horizon (by postgres.py's _RAISE_MARGIN), its hint is stale and the claim raises it
-- (raise_next_wake); when it is not, a row is due that this claim may not take (parked by its
-- holder, or this node's own), and a raise would change nothing. That probe runs for such scopes only (c.pk IS NULL: a one-time filter).
SELECT t.scope, t.weight, t.max_running, c.pk, c.workflow, c.wake_at, n.wake_at
FROM tenants t
LEFT JOIN LATERAL (
    SELECT pk, workflow, wake_at FROM instances
    WHERE scope = t.scope AND wake_at <= $1::float8 + $5::float8 AND status = ANY ($2::text[])
      AND (owner IS NULL OR (owner <> $3 AND lease_until < $1))
    ORDER BY wake_at
    LIMIT $4
) c ON true
LEFT JOIN LATERAL (
    SELECT wake_at FROM instances
    WHERE c.pk IS NULL AND scope = t.scope AND wake_at IS NOT NULL AND status = ANY ($2::text[])
    ORDER BY wake_at
    LIMIT 1
) n ON true
WHERE t.next_wake <= $1::float8 + $5::float8;

-- name: raise_next_wake
-- After a claim that found scopes ($1) with a stale hint: their hints recomputed from their
-- claimable instances (statuses $2), where that is safe now (see the function, 0009). On its
-- own, outside the claim's transaction; answers the number of hints changed.
SELECT dwf_raise_next_wake($1::text[], $2::text[]);

-- name: lock_caps
-- Step 2 when a candidate has a cap: one transaction-scoped advisory lock per capped scope and
-- workflow, taken in key order (so two claims never wait for each other in a cycle); every
-- claim that counts a capped slot holds it until its commit, so the counts that follow see
-- every other node's claims of the same scope or workflow.
SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT k FROM unnest($1::bigint[]) k ORDER BY k) s;

-- name: held_counts
-- The runs holding a slot (held: active, or parked warm by their owner) of the capped scopes
-- ($1) and workflows ($2), through instances_held.
SELECT 's', scope, count(*) FROM instances WHERE owner IS NOT NULL AND scope = ANY ($1::text[])
GROUP BY scope
UNION ALL
SELECT 'w', workflow, count(*) FROM instances
WHERE owner IS NOT NULL AND workflow = ANY ($2::text[]) GROUP BY workflow;

-- name: claim_picked
-- Step 3: claim_due with "due" restricted to the rows picked ($11), re-checked under their
-- row locks (a row another node claimed meanwhile is skipped). The rest is claim_due's.
WITH due AS (
    SELECT pk, wake_at AS t FROM instances
    WHERE pk = ANY ($11::bigint[])
      AND wake_at <= $1::float8 + $10::float8 AND status = ANY ($3::text[])
      AND (owner IS NULL OR (owner <> $4 AND lease_until < $1))
    FOR UPDATE SKIP LOCKED
), lapsed AS (
    SELECT pk, lease_until AS t FROM instances
    WHERE owner IS NOT NULL AND lease_until < $1 AND owner <> $4 AND status = ANY ($5::text[])
    ORDER BY lease_until
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT pk, t FROM (SELECT * FROM lapsed UNION ALL SELECT * FROM due) c LIMIT $2
)
{claim_update}

-- name: any_caps
SELECT EXISTS (SELECT 1 FROM tenants WHERE max_running IS NOT NULL);

-- name: lock_tenant
-- A create with a policy: store the policy on the scope's row and lock it (until the commit:
-- creates of one tenant take their tokens one after the other, on every node); answers the
-- bucket as it was.
INSERT INTO tenants AS t (scope, weight, max_running, max_live, create_rate, create_burst,
                          updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (scope) DO UPDATE SET
    weight = excluded.weight, max_running = excluded.max_running, max_live = excluded.max_live,
    create_rate = excluded.create_rate, create_burst = excluded.create_burst,
    updated_at = excluded.updated_at
RETURNING t.tokens, t.tokens_at;

-- name: count_live
-- Unfinished instances of a scope (the literal statuses are instances_live's predicate).
SELECT count(*) FROM instances
WHERE scope = $1 AND status NOT IN ('complete', 'errored', 'terminated');

-- name: set_tokens
UPDATE tenants SET tokens = $2, tokens_at = $3 WHERE scope = $1;

-- name: get_tenant
SELECT scope, weight, max_running, max_live, create_rate, create_burst, tokens, tokens_at
FROM tenants WHERE scope = $1;

-- name: list_tenants
SELECT scope, weight, max_running, max_live, create_rate, create_burst, tokens, tokens_at
FROM tenants ORDER BY scope;

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
-- $19: each write's error traceback; $20: whether its step registered a rollback handler;
-- $21: whether its step is sensitive.
WITH w AS (
    SELECT *
    FROM unnest(
        $1::bigint[], $2::int[], $3::text[], $4::int[], $5::text[], $6::text[], $7::bytea[],
        $8::text[], $9::text[], $10::int[], $11::float8[], $12::text[], $13::float8[],
        $14::float8[], $15::float8[], $16::bytea[], $19::text[], $20::boolean[], $21::boolean[]
    ) AS w (pk, generation, name, count, kind, state, value, error_name, error_message,
            attempt, wake_at, event_type, recorded_at, started_at, ended_at, attempts,
            error_traceback, rollback, sensitive)
), live AS (
    SELECT pk, generation FROM instances
    WHERE pk = ANY ($1::bigint[]) AND owner = $17 AND status = ANY ($18::text[])
    ORDER BY pk
    FOR SHARE
), kept AS (
    INSERT INTO steps (instance_pk, name, count, kind, state, value, error_name, error_message,
                       attempt, wake_at, event_type, recorded_at, started_at, ended_at, attempts,
                       error_traceback, rollback, sensitive)
    SELECT w.pk, w.name, w.count, w.kind, w.state, w.value, w.error_name, w.error_message,
           w.attempt, w.wake_at, w.event_type, w.recorded_at, w.started_at, w.ended_at,
           w.attempts, w.error_traceback, w.rollback, w.sensitive
    FROM w JOIN live ON live.pk = w.pk AND live.generation = w.generation
    ON CONFLICT (instance_pk, name, count) DO UPDATE SET
        kind = excluded.kind, state = excluded.state, value = excluded.value,
        error_name = excluded.error_name, error_message = excluded.error_message,
        attempt = excluded.attempt, wake_at = excluded.wake_at, event_type = excluded.event_type,
        started_at = excluded.started_at, ended_at = excluded.ended_at,
        attempts = excluded.attempts, error_traceback = excluded.error_traceback,
        rollback = excluded.rollback, sensitive = excluded.sensitive
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

-- name: read_held
-- end_runs, first: the rows as a transition reads them (lock_instance's columns), not locked.
SELECT pk, status, generation, wake_at, started_at, owner, lease_until
FROM instances WHERE pk = ANY ($1::bigint[]);

-- name: end_runs
-- The ends of many live runs at once (finish_run, suspend_run, release_run), compare and set:
-- each row gets the change its transition computed from the row as read_held read it, if the
-- row still reads so: held by this node ($25), the same status, generation, wake_at and
-- started_at ($2-$5: every column the transition and the live view read). A row changed
-- meanwhile is left as it is (its run's end is then made the locked way). For each column of
-- the change a flag says whether it changes (false: as it is); let_go drops the row's holder;
-- notify is announced on $26 at commit; $27: the errors' tracebacks; $28/$29: whether the
-- instance's rollback outcome changes, and to what. The rows are locked first, in pk order (as
-- record_steps and renew_leases lock them); the update then compares the locked rows. Answers
-- the pks changed.
WITH held AS (
    SELECT pk FROM instances WHERE pk = ANY ($1::bigint[]) AND owner = $25 ORDER BY pk FOR UPDATE
), ended AS (
    UPDATE instances i SET
        status        = CASE WHEN w.set_status THEN w.status ELSE i.status END,
        generation    = CASE WHEN w.set_generation THEN w.generation ELSE i.generation END,
        wake_at       = CASE WHEN w.set_wake_at THEN w.wake_at ELSE i.wake_at END,
        output        = CASE WHEN w.set_output THEN w.output ELSE i.output END,
        error_name    = CASE WHEN w.set_error THEN w.error_name ELSE i.error_name END,
        error_message = CASE WHEN w.set_error THEN w.error_message ELSE i.error_message END,
        error_traceback = CASE WHEN w.set_error THEN w.error_traceback
                               ELSE i.error_traceback END,
        started_at    = CASE WHEN w.set_started_at THEN w.started_at ELSE i.started_at END,
        ended_at      = CASE WHEN w.set_ended_at THEN w.ended_at ELSE i.ended_at END,
        updated_at    = CASE WHEN w.set_updated_at THEN w.updated_at ELSE i.updated_at END,
        rollback      = CASE WHEN w.set_rollback THEN w.rollback ELSE i.rollback END,
        owner         = CASE WHEN w.let_go THEN NULL ELSE i.owner END,
        lease_until   = CASE WHEN w.let_go THEN NULL ELSE i.lease_until END
    FROM held, unnest(
        $1::bigint[], $2::text[], $3::int[], $4::float8[], $5::float8[],
        $6::boolean[], $7::text[], $8::boolean[], $9::int[], $10::boolean[], $11::float8[],
        $12::boolean[], $13::bytea[], $14::boolean[], $15::text[], $16::text[],
        $17::boolean[], $18::float8[], $19::boolean[], $20::float8[],
        $21::boolean[], $22::float8[], $23::boolean[], $24::text[], $27::text[],
        $28::boolean[], $29::text[]
    ) AS w (pk, was_status, was_generation, was_wake_at, was_started_at,
            set_status, status, set_generation, generation, set_wake_at, wake_at,
            set_output, output, set_error, error_name, error_message,
            set_started_at, started_at, set_ended_at, ended_at,
            set_updated_at, updated_at, let_go, notify, error_traceback,
            set_rollback, rollback)
    WHERE i.pk = held.pk AND w.pk = held.pk
      AND i.owner = $25 AND i.status = w.was_status AND i.generation = w.was_generation
      AND i.wake_at IS NOT DISTINCT FROM w.was_wake_at
      AND i.started_at IS NOT DISTINCT FROM w.was_started_at
    RETURNING i.pk, w.notify
), told AS (
    SELECT count(pg_notify($26, notify)) AS n FROM ended WHERE notify IS NOT NULL
)
SELECT ended.pk FROM ended, told;

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

-- name: instance_rollback
-- control, after lock_instance, for a terminate: the rollback outcome (JSON text), since a
-- terminate stops a rollback phase that is on and records that it did.
SELECT rollback FROM instances WHERE pk = $1;

-- name: step_recorded_at
SELECT recorded_at FROM steps WHERE instance_pk = $1 AND name = $2 AND count = $3;

-- name: update_step
-- A transition's StepUpdate: $5/$6 say whether value/error change.
UPDATE steps SET
    state = $4,
    value = CASE WHEN $5::boolean THEN $6::bytea ELSE value END,
    error_name = CASE WHEN $7::boolean THEN $8::text ELSE error_name END,
    error_message = CASE WHEN $7::boolean THEN $9::text ELSE error_message END,
    error_traceback = CASE WHEN $7::boolean THEN $10::text ELSE error_traceback END
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
-- After lock_instance: the row, its journal, its events and its logs; the node running it is
-- told.
WITH gone AS (
    DELETE FROM instances WHERE pk = $1 RETURNING pk
), steps_gone AS (
    DELETE FROM steps WHERE instance_pk = $1
), events_gone AS (
    DELETE FROM events WHERE instance_pk = $1
), logs_gone AS (
    DELETE FROM logs WHERE instance_pk = $1
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

-- name: record_logs
-- Lines of live runs ($1-$9, an element per line, in order) and what each run adds to its
-- instance's totals ($10-$13, an element per run). A run is live as for record_steps: its
-- row held by this node ($14) in a held status ($15), with the run's generation; the rows are
-- locked in pk order (as record_steps and renew_leases lock them). Lines are numbered in the
-- order given (seq); a node writes one such statement at a time.
WITH live AS (
    SELECT pk, generation FROM instances
    WHERE pk = ANY ($10::bigint[]) AND owner = $14 AND status = ANY ($15::text[])
    ORDER BY pk
    FOR NO KEY UPDATE
), counted AS (
    UPDATE instances i
    SET log_bytes = i.log_bytes + t.bytes, log_dropped = i.log_dropped + t.dropped
    FROM unnest($10::bigint[], $11::int[], $12::bigint[], $13::bigint[])
        AS t (pk, generation, bytes, dropped)
    JOIN live ON live.pk = t.pk AND live.generation = t.generation
    WHERE i.pk = t.pk
)
INSERT INTO logs (instance_pk, at, stream, text, step_name, step_count, attempt, dropped)
SELECT l.pk, l.at, l.stream, l.text, l.step_name, l.step_count, l.attempt, l.dropped
FROM unnest(
    $1::bigint[], $2::int[], $3::float8[], $4::text[], $5::text[], $6::text[], $7::int[],
    $8::int[], $9::int[]
) WITH ORDINALITY AS l (pk, generation, at, stream, text, step_name, step_count, attempt,
                        dropped, ord)
JOIN live ON live.pk = l.pk AND live.generation = l.generation
ORDER BY l.ord;

-- name: load_logs
-- An instance's lines after seq $2, at most $3, of one step ($4, $5) and/or attempt ($6).
SELECT seq, at, stream, text, step_name, step_count, attempt, dropped FROM logs
WHERE instance_pk = $1 AND seq > $2
  AND ($4::text IS NULL OR (step_name = $4 AND step_count = $5::int))
  AND ($6::int IS NULL OR attempt = $6)
ORDER BY seq
LIMIT $3;

-- name: first_tick
-- fire_schedule, first: a schedule never seen before is recorded as standing at now ($3).
INSERT INTO schedule_ticks (workflow, cron, last_tick) VALUES ($1, $2, $3)
ON CONFLICT (workflow, cron) DO NOTHING
RETURNING last_tick;

-- name: move_tick
-- fire_schedule, then: the schedule moves to the tick $3 if it stands before it. A node firing
-- the same tick at the same moment waits for this row, then finds it moved and gets no row.
UPDATE schedule_ticks SET last_tick = $3
WHERE workflow = $1 AND cron = $2 AND last_tick < $3
RETURNING last_tick;

-- name: delete_retained
-- Up to $2 finished instances whose retention ran out by $1 (core.retention.retain_until, the
-- expression of the index instances_retained, repeated as it is there), the longest due first,
-- with their journals, events and logs. Rows another node's sweep (or a restart) holds are
-- skipped, not waited for; a row restarted meanwhile is re-checked under its lock and left
-- alone. The ORDER BY keeps the due scan on the index whatever the statistics say (planned
-- without them, a plain LIMIT read the whole table when little was due), and "= ANY (ARRAY(...))"
-- keeps the deletes on the primary keys (a join with the CTE was planned as a scan of each
-- table).
WITH due AS (
    SELECT pk FROM instances
    WHERE (success_retention IS NOT NULL OR error_retention IS NOT NULL)
      AND (
    CASE status
        WHEN 'complete' THEN ended_at + success_retention
        WHEN 'errored' THEN ended_at + error_retention
        WHEN 'terminated' THEN ended_at + error_retention
    END
) <= $1::float8
    ORDER BY (
    CASE status
        WHEN 'complete' THEN ended_at + success_retention
        WHEN 'errored' THEN ended_at + error_retention
        WHEN 'terminated' THEN ended_at + error_retention
    END
)
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM instances WHERE pk = ANY (ARRAY(SELECT pk FROM due)) RETURNING pk
), steps_gone AS (
    DELETE FROM steps WHERE instance_pk = ANY (ARRAY(SELECT pk FROM gone))
), events_gone AS (
    DELETE FROM events WHERE instance_pk = ANY (ARRAY(SELECT pk FROM gone))
), logs_gone AS (
    DELETE FROM logs WHERE instance_pk = ANY (ARRAY(SELECT pk FROM gone))
)
SELECT count(*) FROM gone;
