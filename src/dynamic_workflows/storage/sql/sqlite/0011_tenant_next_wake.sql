-- Fair claiming visits only the scopes that have due work (storage/sqlite.py, _choose): before
-- this, every claim read every tenants row, and one tenant's 2,000 instances ran at a third of
-- their speed beside 1,000 tenants that had nothing due.
--
-- tenants.next_wake is a LOWER BOUND of the earliest wake_at among the scope's claimable
-- instances (NULL: it has none). The triggers keep it one on every path that gives an instance
-- a wake_at (a create, a sleep, a requeue, an event, a resume, a restart, a recovery), so none
-- is missed: they only ever lower it, in the transaction that writes the instance. The claim
-- raises it again from the instances themselves when it has taken a scope's last due ones
-- (one writer thread: nothing can come between). Only claimable rows carry wake_at (0001).

ALTER TABLE tenants ADD COLUMN next_wake REAL;

INSERT INTO tenants (scope) SELECT DISTINCT scope FROM instances WHERE true
ON CONFLICT (scope) DO NOTHING;

UPDATE tenants SET next_wake = (
    SELECT min(wake_at) FROM instances
    WHERE instances.scope = tenants.scope AND wake_at IS NOT NULL
);

CREATE INDEX tenants_next_wake ON tenants (next_wake) WHERE next_wake IS NOT NULL;
-- "Is any tenant capped?" (claims without fairness ask it every time): not a scan of tenants.
CREATE INDEX tenants_capped ON tenants (scope) WHERE max_running IS NOT NULL;

CREATE TRIGGER instances_wake_insert AFTER INSERT ON instances WHEN NEW.wake_at IS NOT NULL
BEGIN
    INSERT INTO tenants (scope, next_wake) VALUES (NEW.scope, NEW.wake_at)
    ON CONFLICT (scope) DO UPDATE SET next_wake = excluded.next_wake
    WHERE next_wake IS NULL OR next_wake > excluded.next_wake;
END;

CREATE TRIGGER instances_wake_update AFTER UPDATE OF wake_at ON instances
WHEN NEW.wake_at IS NOT NULL
BEGIN
    INSERT INTO tenants (scope, next_wake) VALUES (NEW.scope, NEW.wake_at)
    ON CONFLICT (scope) DO UPDATE SET next_wake = excluded.next_wake
    WHERE next_wake IS NULL OR next_wake > excluded.next_wake;
END;
