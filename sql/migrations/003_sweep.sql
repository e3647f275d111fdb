-- The sweep's audit log: every decision of sweep-previews and sweep-item (removals, skips, guard
-- trips, corrections, adoptions, run summaries) with its reason. Append-only. A retried step
-- records the same decision again: the unique index keeps one entry (insert ... on conflict do
-- nothing). Transitions of a preview stay in preview_events, as for every other action.
-- Runs inside the migration runner's transaction (see sql/migrate.ts): no BEGIN/COMMIT here.
create table if not exists sweep_decisions (
  id         bigserial primary key,
  run_id     text not null,
  pass       text not null
    constraint sweep_decisions_pass_check check (pass in ('expired', 'orphans', 'reconcile', 'run')),
  action     text not null,
  project_id text,
  reason     text not null,
  at         timestamptz not null default now()
);
create unique index if not exists sweep_decisions_once_idx on sweep_decisions (run_id, pass, action, (coalesce(project_id, '')));
create index if not exists sweep_decisions_at_idx on sweep_decisions (at);
create index if not exists sweep_decisions_project_idx on sweep_decisions (project_id, at);
