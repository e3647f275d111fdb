-- Failure diagnosis (issue 9, diagnose-preview): the last diagnosis of a failed preview, with the
-- failure it explains. `diagnosis_key` is `failureKey` of the failed row (functions/ports.ts: the
-- failing run's claim, the reason and the log tail), so a stored diagnosis is shown only while
-- the preview is still in that failure, and a replayed `preview.failed` finds it and calls no
-- model again. Each outcome is also appended to preview_events (type `diagnosed` or
-- `diagnosis-unavailable`).
-- Runs inside the migration runner's transaction (see sql/migrate.ts): no BEGIN/COMMIT here.
alter table previews add column if not exists diagnosis text;
alter table previews add column if not exists diagnosis_key text;
alter table previews add column if not exists diagnosis_state text;
alter table previews add column if not exists diagnosed_at timestamptz;
alter table previews drop constraint if exists previews_diagnosis_state_check;
alter table previews add constraint previews_diagnosis_state_check
  check (diagnosis_state in ('diagnosed', 'unavailable')
         and diagnosis is not null and diagnosis_key is not null and diagnosed_at is not null
         or diagnosis_state is null and diagnosis is null and diagnosis_key is null and diagnosed_at is null);
