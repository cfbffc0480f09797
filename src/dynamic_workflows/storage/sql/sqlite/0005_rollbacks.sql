-- Rollbacks (core/rollback.py): how an instance's rollback phase ended (rollback, JSON
-- {"outcome", "error"?}, NULL when no handler was eligible), and whether a step registered a
-- rollback handler (rollback: 1), so a terminate with rollback knows without running code.
-- A handler's own journal entry is a steps row of kind 'rollback' with count = -(its step's).

ALTER TABLE instances ADD COLUMN rollback TEXT;
ALTER TABLE steps ADD COLUMN rollback INTEGER NOT NULL DEFAULT 0;
