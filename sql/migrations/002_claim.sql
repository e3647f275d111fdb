-- The run that last took a preview (launch, stop, remove): a failure handler records a failure
-- only while the failing run still holds it (see functions/lifecycle.ts, `Transition.claim`).
-- Runs inside the migration runner's transaction (see sql/migrate.ts): no BEGIN/COMMIT here.
alter table previews add column if not exists claim text;
