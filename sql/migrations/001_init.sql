-- Previews (one row per project) and their append-only audit log.
-- Runs inside the migration runner's transaction (see sql/migrate.ts): no BEGIN/COMMIT here.

create table if not exists previews (
  project_id   text primary key,
  status       text not null
    constraint previews_status_check
    check (status in ('starting', 'running', 'stopping', 'stopped', 'removing', 'removed', 'failed')),
  url          text,
  container_id text,
  reason       text,
  log_tail     text,
  stopped_at   timestamptz,
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  -- the sweep trusts stopped_at: it is set exactly when the preview is stopped
  constraint previews_stopped_at_check check ((status = 'stopped') = (stopped_at is not null))
);
create index if not exists previews_status_idx on previews (status);

create table if not exists preview_events (
  id         bigserial primary key,
  project_id text not null,
  type       text not null, -- the status the preview moved to
  reason     text,
  at         timestamptz not null default now()
);
create index if not exists preview_events_project_at_idx on preview_events (project_id, at);
