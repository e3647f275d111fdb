-- Activity and capacity (issue 7).
-- Runs inside the migration runner's transaction (see sql/migrate.ts): no BEGIN/COMMIT here.

-- When the preview was last used (forward-auth requests, UI heartbeats), flushed in batches by
-- the host; null until the first use. The idle tracker compares it with IDLE_TIMEOUT.
alter table previews add column if not exists last_activity_at timestamptz;

-- Capacity (MAX_RUNNING_PREVIEWS): a preview may start its container only while it holds a slot
-- 1..N. The unique constraint is the guarantee that concurrent launches never overshoot: two
-- launches that picked the same free slot from their snapshots cannot both commit it (the second
-- fails with a unique violation and tries again from a fresh snapshot). Deferred to the end of
-- the statement, so one statement can release stale slots and take one at once.
alter table previews add column if not exists slot integer;
alter table previews drop constraint if exists previews_slot_key;
alter table previews add constraint previews_slot_key unique (slot) deferrable initially deferred;
