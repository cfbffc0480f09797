-- Fair claims visit only the scopes that have due work (claim_candidates): before this, every
-- claim probed instances once per tenants row, and a claim of 50 took 4 ms beside 1,000
-- tenants that had nothing due, 19 ms beside 10,000 (3 ms with none). (SQLite's
-- 0011_tenant_next_wake: the same column, the same meaning; numbered 0009 here, the next of
-- this backend's own.)
--
-- tenants.next_wake is a LOWER BOUND of the earliest wake_at among the scope's claimable
-- instances (queued/waiting with a wake_at), NULL when it has none. The invariant, which an
-- instance is never claimed without: for every claimable instance r of scope s,
-- tenants[s].next_wake <= r.wake_at.
--
-- Lowering: the triggers below, on every write that gives an instance a wake_at or a status
-- with one (a create, a sleep, a requeue, an event, a resume, a restart, a recovery, a cron
-- tick, a takeover), in the writer's own transaction, so no path is missed. A lowering UPDATE
-- takes the tenants row only when it lowers it (a claim's "wake_at = NULL" does not even call
-- the function: the WHEN clause). A create lowers its scopes in order; a statement updating
-- the rows of several scopes (end_runs, recover) lowers them in the order it updates its rows,
-- so two such transactions lowering the same two scopes in opposite orders at the same moment
-- can deadlock: PostgreSQL ends one after deadlock_timeout and postgres_db.py runs it again.
-- It takes two scopes' hints both lowered at once, which a hint already below the new
-- wake-up times (the usual case) never is.
--
-- Raising: dwf_raise_next_wake, after a claim that visited a scope for nothing (its hint has
-- come, its earliest claimable instance has not: claim_candidates tells), in a statement of
-- its own (postgres.py, _raise_next_wake). The race it must not lose (READ
-- COMMITTED): a writer W gives an instance of s a wake_at at or after the current hint (so W
-- changes no tenants row and takes no row lock) and commits after the raise's snapshot; the
-- raise, not seeing W's instance, would put the hint above it, and it would never be claimed.
-- So a writer takes a SHARED advisory lock on the scope's bucket before it reads the hint and
-- keeps it until its commit, and the raise takes the EXCLUSIVE lock of the bucket before it
-- takes its snapshot: either W locked first, and the raise finds the lock taken (it leaves
-- that scope alone: the hint stays low, which is always safe) or, W having committed, its
-- snapshot sees W's instance; or the raise locked first, and W waits for its commit, then
-- reads the raised hint and lowers it itself. The raise only TRIES its locks, and skips the
-- tenants rows another transaction holds (SKIP LOCKED): it never waits, so it can be part of
-- no deadlock (a raise waiting for the buckets in order could still close a cycle with a
-- writer that holds the shared locks of two buckets, taken in another order).
--
-- The locks are the two-key advisory locks (a space of their own: the claims' cap locks,
-- lock_caps, use the one-key form) (-237256071, hashtext(scope) & 255):
-- -237256071 is hashtext('dynamic_workflows.next_wake'); 256 buckets bound the locks a
-- transaction writing instances of many scopes takes (a recovery of thousands of scopes: the
-- lock table is shared and sized max_locks_per_transaction x connections). A collision of two
-- scopes only makes a raise skip a scope now and then.
--
-- The functions name tables as the writer's search path finds them, as every statement of the
-- storage does (postgres_db.py sets it to the configured schema).

ALTER TABLE tenants ADD COLUMN next_wake DOUBLE PRECISION;

INSERT INTO tenants (scope) SELECT DISTINCT scope FROM instances WHERE true
ON CONFLICT (scope) DO NOTHING;

UPDATE tenants t SET next_wake = m.wake
FROM (SELECT scope, min(wake_at) AS wake FROM instances WHERE wake_at IS NOT NULL GROUP BY scope) m
WHERE t.scope = m.scope;

-- The scopes a fair claim visits (claim_candidates): those whose hint has come.
CREATE INDEX tenants_next_wake ON tenants (next_wake) WHERE next_wake IS NOT NULL;
-- "Is any tenant capped?" (any_caps, asked by every first-come claim): not a scan of tenants.
CREATE INDEX tenants_capped ON tenants (scope) WHERE max_running IS NOT NULL;

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

-- Statistics at once: without them the planner guesses a third of the tenants due and reads
-- the whole table rather than tenants_next_wake (autovacuum's ANALYZE comes later).
ANALYZE tenants;
