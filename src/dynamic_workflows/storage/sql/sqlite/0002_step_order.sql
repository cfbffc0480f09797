-- When each step was first recorded: the journal is read back in the order the steps ran
-- (the admin API and the dashboard list an instance's steps in that order).

ALTER TABLE steps ADD COLUMN recorded_at REAL;
