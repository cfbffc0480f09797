-- Cron ticks created their instance without its scope's tenants row (fire_schedule, fixed
-- beside this), and claim_due, reading due work scope by scope from that table, left those
-- instances queued for good. Every scope with instances has a row again (0007's rule).

INSERT INTO tenants (scope) SELECT DISTINCT scope FROM instances WHERE true
ON CONFLICT (scope) DO NOTHING;
