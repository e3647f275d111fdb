/** `PreviewStore` over the `previews` table and its `preview_events` audit log. */
import type { PreviewRecord, PreviewStatus, PreviewStore, RecordOptions, Transition } from "../functions/ports.js";
import type { ProjectId } from "../functions/project-id.js";
import type { Database } from "./database.js";
import { databaseError } from "./errors.js";

export interface PreviewEvent {
  /** The status the preview moved to. */
  type: PreviewStatus;
  reason: string | null;
  at: Date;
}

type PreviewRow = {
  project_id: string;
  status: PreviewStatus;
  url: string | null;
  container_id: string | null;
  reason: string | null;
  log_tail: string | null;
  stopped_at: Date | null;
  created_at: Date;
  updated_at: Date;
};

const COLUMNS = "project_id, status, url, container_id, reason, log_tail, stopped_at, created_at, updated_at";

/**
 * One statement, so it is atomic on every driver without a client-side transaction (a Pool
 * would run BEGIN and COMMIT on different connections).
 *
 * Parameters: $1 project, $2 status, $3 reason, then a (set?, value) pair for url ($4, $5),
 * container_id ($6, $7) and log_tail ($8, $9): "set" false keeps the stored value, which is how
 * `undefined` differs from `null`. $10: the `from` statuses (text[]), or null for a plain upsert;
 * $11: the `unless` statuses (text[]), or null.
 *
 * - `prev` locks the existing row (FOR UPDATE), so under concurrency the status checked against
 *   `from` (compare-and-set) and compared for the audit event is the latest committed one.
 *   (Two FIRST records of one project racing, without `from`, could both log an event; the
 *   functions' per-project concurrency key rules that out.)
 *   Trap: `prev` must be read before `saved` writes. A FOR UPDATE scan that runs after this
 *   same statement updated the row skips it (it is "self-modified"), so prev would look empty
 *   and every replay would log an event. CTEs are scanned lazily, so the insert's source JOINs
 *   prev (a short-circuited `or exists (select 1 from prev)` did not force the read).
 * - stopped_at: null unless stopped; a replayed "stopped" keeps the first stop time.
 * - updated_at moves only when something changed, so a replay leaves the row exactly as it was.
 * - an event is appended only when the status changes (or the row is new).
 */
const RECORD_SQL = `
with prev as (
  select status from previews where project_id = $1::text for update
),
saved as (
  insert into previews as p (project_id, status, reason, url, container_id, log_tail, stopped_at)
  select $1::text, $2::text, $3::text, $5::text, $7::text, $9::text,
         case when $2::text = 'stopped' then now() end
  -- the join makes prev run BEFORE the upsert (see above)
  from (select 1) as one left join prev on true
  where ($10::text[] is null or prev.status = any($10::text[]))
    and ($11::text[] is null or prev.status is null or not (prev.status = any($11::text[])))
  on conflict (project_id) do update set
    status       = excluded.status,
    reason       = excluded.reason,
    url          = case when $4::boolean then excluded.url else p.url end,
    container_id = case when $6::boolean then excluded.container_id else p.container_id end,
    log_tail     = case when $8::boolean then excluded.log_tail else p.log_tail end,
    stopped_at   = case when excluded.status <> 'stopped' then null
                        when p.status = 'stopped' then p.stopped_at
                        else excluded.stopped_at end,
    updated_at   = case when (p.status, p.reason, p.url, p.container_id, p.log_tail)
                             is not distinct from
                             (excluded.status, excluded.reason,
                              case when $4::boolean then excluded.url else p.url end,
                              case when $6::boolean then excluded.container_id else p.container_id end,
                              case when $8::boolean then excluded.log_tail else p.log_tail end)
                        then p.updated_at else now() end
  returning ${COLUMNS}
),
logged as (
  insert into preview_events (project_id, type, reason)
  select project_id, status, reason from saved
  where saved.status is distinct from (select status from prev)
)
select * from saved`;

export class SqlPreviewStore implements PreviewStore {
  constructor(private readonly db: Database) {}

  async get(projectId: ProjectId): Promise<PreviewRecord | null> {
    const rows = await this.run(`get project ${JSON.stringify(projectId)}`, `select ${COLUMNS} from previews where project_id = $1`, [projectId]);
    return rows[0] ? toRecord(rows[0]) : null;
  }

  async list(): Promise<PreviewRecord[]> {
    const rows = await this.run("list previews", `select ${COLUMNS} from previews order by project_id`, []);
    return rows.map(toRecord);
  }

  /**
   * Upsert, or with `from` a compare-and-set: only an existing row whose status is listed moves
   * (list the target status too if a replay must succeed); otherwise nothing is written and the
   * result is null.
   */
  async record(projectId: ProjectId, transition: Transition, options: RecordOptions = {}): Promise<PreviewRecord | null> {
    const { status, reason, url, containerId, logTail } = transition;
    const rows = await this.run(`record ${JSON.stringify(status)} for project ${JSON.stringify(projectId)}`, RECORD_SQL, [
      projectId,
      status,
      reason,
      url !== undefined,
      url ?? null,
      containerId !== undefined,
      containerId ?? null,
      logTail !== undefined,
      logTail ?? null,
      options.from ? [...options.from] : null,
      options.unless ? [...options.unless] : null,
    ]);
    return rows[0] ? toRecord(rows[0]) : null;
  }

  /** The project's audit log, in the order the transitions happened. */
  async events(projectId: ProjectId): Promise<PreviewEvent[]> {
    // Ordered by id, not `at`: ids are drawn while the record statement holds the project's row
    // lock, so they follow the order the transitions took effect. `at` is now(), the start of
    // the statement (equal to the row's updated_at), which under contention can be earlier than
    // that of a transition that committed before it.
    return this.run<{ type: PreviewStatus; reason: string | null; at: Date }>(
      `read events for project ${JSON.stringify(projectId)}`,
      "select type, reason, at from preview_events where project_id = $1 order by id",
      [projectId],
    );
  }

  async ping(): Promise<void> {
    await this.run("ping", "select 1", []);
  }

  /** Every query goes through here: one wrapping, one classification (see errors.ts). */
  private async run<T extends Record<string, unknown> = PreviewRow>(action: string, text: string, params: unknown[]): Promise<T[]> {
    try {
      return await this.db.query<T>(text, params);
    } catch (err) {
      throw databaseError(action, err);
    }
  }
}

function toRecord(row: PreviewRow): PreviewRecord {
  return {
    projectId: row.project_id,
    status: row.status,
    url: row.url,
    containerId: row.container_id,
    reason: row.reason,
    logTail: row.log_tail,
    stoppedAt: row.stopped_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
