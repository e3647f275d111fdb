-- Failure diagnosis: how many times the model was asked about one failure (review finding F4: a
-- replayed or forged `preview.failed` re-asked the model each time while the stored outcome was
-- "unavailable", 5 paid calls a replay). `diagnosis_attempt_key` is the failure the count is for
-- (`failureKey`, as `diagnosis_key`); `diagnosis_attempt_id` the last attempt taken (run id and
-- round), so a retried step that took its attempt already does not count twice.
-- Runs inside the migration runner's transaction (see sql/migrate.ts): no BEGIN/COMMIT here.
alter table previews add column if not exists diagnosis_attempts integer not null default 0;
alter table previews add column if not exists diagnosis_attempt_key text;
alter table previews add column if not exists diagnosis_attempt_id text;
