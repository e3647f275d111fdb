/** `PreviewStore` over the `previews` table and its `preview_events` audit log. */
import { createsRow, fromStatuses, LIFECYCLE, matchesClaim, takesClaim, type LifecycleAction } from "../functions/lifecycle.js";
import { PermanentError } from "../functions/ports.js";
import type { ApplyResult, ExpireResult, ExpireWrite, PreviewCounts, PreviewRecord, PreviewStatus, PreviewStore, TransitionFields } from "../functions/ports.js";
import { failureKey, type DiagnosisState, type DiagnosisStore, type FailureOf } from "../functions/ports.js";
import type { ProjectId } from "../functions/project-id.js";
import type { Database } from "./database.js";
import { queryAs, sqlState } from "./errors.js";

export interface PreviewEvent {
  /** The status the preview moved to, or a diagnosis outcome (diagnose-preview). */
  type: PreviewStatus | "diagnosed" | "diagnosis-unavailable";
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
  claim: string | null;
  last_activity_at: Date | null;
  created_at: Date;
  updated_at: Date;
  // diagnose-preview (migration 005)
  diagnosis: string | null;
  diagnosis_key: string | null;
  diagnosis_state: DiagnosisState | null;
  diagnosed_at: Date | null;
};

type ApplyRow = PreviewRow & { applied: boolean; changed: boolean };

const COLUMNS =
  "project_id, status, url, container_id, reason, log_tail, stopped_at, claim, last_activity_at, created_at, updated_at" +
  // diagnose-preview (migration 005)
  ", diagnosis, diagnosis_key, diagnosis_state, diagnosed_at";
const columnsOf = (table: string) =>
  COLUMNS.split(", ")
    .map((c) => `${table}.${c}`)
    .join(", ");

/**
 * Applies one lifecycle action as ONE statement, so it is atomic on every driver without a
 * client-side transaction (a pool would run BEGIN and COMMIT on different connections).
 *
 * Parameters:
 *   $1  project id
 *   $2  target status (`LIFECYCLE[action].to`)
 *   $3  statuses the action applies from (text[], `fromStatuses(action)`)
 *   $4  whether the action may create the row (`createsRow(action)`)
 *   $5  reason
 *   then a (set?, value) pair for url ($6, $7), container_id ($8, $9) and log_tail ($10, $11):
 *   "set" false keeps the stored value, which is how `undefined` differs from `null`.
 *   $12 the acting run (claim), $13 whether the action takes the claim (writes $12), $14 whether
 *   it applies only while the row's claim is $12.
 *
 * Result: at most one row, `applied`, `changed` and the preview's columns:
 *   - applied: the row as written, `changed` true when the status moved (then, and only then, an
 *     event was appended);
 *   - refused with a row: `applied` false and the row as it is (nothing was written);
 *   - no row at all: refused and there is no row, or (creating actions only) the creation lost a
 *     race, see `apply`.
 *
 * How:
 * - `prev` locks the existing row (FOR UPDATE), so the status checked against $3
 *   (compare-and-set) and compared for the audit event is the latest committed one, and no
 *   other statement can move it until this one commits.
 *   Trap: `prev` must be read before the row is written. A FOR UPDATE scan that runs after this
 *   same statement updated the row skips it (it is "self-modified"), so prev would look empty.
 *   CTEs are scanned lazily; `updated` takes its rows FROM prev, which forces the read first,
 *   and carries prev's status out in RETURNING (`prev_status`) so that nothing after the write
 *   has to read prev again. The final SELECT reads prev only when nothing was written.
 * - `updated` moves an existing row whose status is in $3; `created` inserts the row when there
 *   is none and $4 allows it. Exactly one of them can write (prev is empty or not).
 *   `created` uses ON CONFLICT DO NOTHING: a row committed by a concurrent statement after this
 *   statement's snapshot is invisible to prev, and overwriting it blind would skip the
 *   compare-and-set. The conflict is reported as an empty result instead.
 * - claim: written by actions that take it; compared (as part of the compare-and-set) by actions
 *   that match it. It is bookkeeping: it does not move updated_at.
 * - stopped_at: null unless stopped; a replayed "stopped" keeps the first stop time.
 * - updated_at moves only when something changed, so a replay leaves the row exactly as it was.
 * - an event is appended only when the status changes (a new row counts as a change).
 */
const APPLY_SQL = `
with prev as (
  select ${COLUMNS} from previews where project_id = $1::text for update
),
updated as (
  update previews as p set
    status       = $2::text,
    reason       = $5::text,
    url          = case when $6::boolean then $7::text else p.url end,
    container_id = case when $8::boolean then $9::text else p.container_id end,
    log_tail     = case when $10::boolean then $11::text else p.log_tail end,
    stopped_at   = case when $2::text <> 'stopped' then null
                        when p.status = 'stopped' then p.stopped_at
                        else now() end,
    claim        = case when $13::boolean then $12::text else p.claim end,
    updated_at   = case when (p.status, p.reason, p.url, p.container_id, p.log_tail)
                             is not distinct from
                             ($2::text, $5::text,
                              case when $6::boolean then $7::text else p.url end,
                              case when $8::boolean then $9::text else p.container_id end,
                              case when $10::boolean then $11::text else p.log_tail end)
                        then p.updated_at else now() end
  from prev
  where p.project_id = prev.project_id
    and prev.status = any($3::text[])
    and (not $14::boolean or prev.claim is not distinct from $12::text)
  returning ${columnsOf("p")}, prev.status as prev_status
),
created as (
  insert into previews (project_id, status, reason, url, container_id, log_tail, stopped_at, claim)
  select $1::text, $2::text, $5::text, $7::text, $9::text, $11::text,
         case when $2::text = 'stopped' then now() end,
         case when $13::boolean then $12::text end
  where $4::boolean and not $14::boolean and not exists (select 1 from prev)
  on conflict (project_id) do nothing
  returning ${COLUMNS}, null::text as prev_status
),
saved as (
  select * from updated
  union all
  select * from created
),
logged as (
  insert into preview_events (project_id, type, reason)
  select project_id, status, reason from saved
  where status is distinct from prev_status
)
select true as applied, status is distinct from prev_status as changed, ${COLUMNS} from saved
union all
select false as applied, false as changed, ${COLUMNS} from prev
where not exists (select 1 from saved)`;

/**
 * `expireMany`: the sweep's `expire` for a batch, ONE statement. Parameters: $1 project ids,
 * $2 reasons, $3 the rows' `updated_at` as read (ms since the epoch), $4 the claim, $5 the sweep
 * run to audit under (null: no audit), $6 the audit reasons when applied.
 * Applied to a row still `stopped` whose `updated_at` is the one read (a JS Date has ms, the
 * column µs: within that millisecond). The same columns move as `apply("expire")` moves them;
 * the status does not change, so no event is appended (as `apply` would not). Each write's
 * outcome goes to `sweep_decisions` in the same statement when $5 is given; a refused one names
 * the row's status as it is once the statement could read it (see `outcome`).
 */
const EXPIRE_MANY_SQL = `
with input as (
  select * from unnest($1::text[], $2::text[], $3::bigint[], $6::text[]) as i(project_id, reason, read_ms, audit_reason)
),
updated as (
  update previews as p set
    reason       = i.reason,
    url          = null,
    container_id = null,
    claim        = $4::text,
    updated_at   = case when (p.reason, p.url, p.container_id) is not distinct from (i.reason, null::text, null::text)
                        then p.updated_at else now() end
  from input i
  where p.project_id = i.project_id
    and p.status = 'stopped'
    and p.updated_at >= timestamptz 'epoch' + i.read_ms * interval '1 millisecond'
    and p.updated_at <  timestamptz 'epoch' + (i.read_ms + 1) * interval '1 millisecond'
  returning p.project_id
),
applied as (
  select i.*, exists (select 1 from updated u where u.project_id = i.project_id) as applied from input i
),
outcome as (
  -- A refused row's status as it is now, not as this statement's snapshot saw it: FOR SHARE
  -- waits for a launch that holds the row and reads what it committed. Only refused rows are
  -- read so ("not a.applied" gates the scan): an applied row is the one this statement wrote
  -- (stopped), and locking it too would cost a multixact per row.
  select a.project_id, a.reason, a.audit_reason, a.applied,
         case when a.applied then 'stopped' else cur.status end as status
  from applied a
  left join lateral (select p.status from previews p where not a.applied and p.project_id = a.project_id for share) cur on true
),
audited as (
  insert into sweep_decisions (run_id, pass, action, project_id, reason)
  select $5::text, 'expired', 'removed', o.project_id,
         case when o.applied then o.audit_reason
              else o.reason || '; row not recorded (now ' || coalesce(o.status, 'gone') || ')' end
  from outcome o
  where $5::text is not null
  on conflict do nothing
)
select project_id, applied, status from outcome`;

/**
 * How often `apply` runs the statement when a creating action finds the row created under it.
 * The second run sees that row (it is committed by then), so 2 suffice unless rows are deleted
 * concurrently; the bound keeps a pathological case from looping.
 */
const MAX_APPLY_RUNS = 3;

/**
 * Stores a diagnosis (diagnose-preview) as ONE compare-and-set statement: written only while the
 * row is `failed` with exactly the failure it explains ($2 claim, $3 reason, $4 log tail; the key
 * $6 is `failureKey` of them), and never over the same failure's `diagnosed` nor over an
 * identical outcome (a replay). The audit entry goes in with it. The last SELECT answers what the
 * row holds when nothing was written (same snapshot: the row as it was).
 *   $5 text, $7 state, $8 audit type
 */
const DIAGNOSIS_SQL = `
with updated as (
  update previews set diagnosis = $5::text, diagnosis_key = $6::text, diagnosis_state = $7::text, diagnosed_at = now()
  where project_id = $1::text and status = 'failed'
    and claim is not distinct from $2::text
    and reason is not distinct from $3::text
    and log_tail is not distinct from $4::text
    and not (diagnosis_key is not distinct from $6::text
             and (diagnosis_state = 'diagnosed' or (diagnosis_state = $7::text and diagnosis = $5::text)))
  returning project_id, diagnosis, diagnosis_key, diagnosis_state
),
logged as (
  insert into preview_events (project_id, type, reason)
  select project_id, $8::text, diagnosis from updated
)
select true as written, diagnosis, diagnosis_key, diagnosis_state from updated
union all
select false as written, diagnosis, diagnosis_key, diagnosis_state from previews
where project_id = $1::text and not exists (select 1 from updated)`;

/**
 * One attempt at diagnosing a failure (review finding F4), as one statement: counted only while
 * the row still holds that failure, below the limit, and not already taken by this attempt id.
 * A new failure (another key) starts again at 1.
 */
const ATTEMPT_SQL = `
with updated as (
  update previews set
    diagnosis_attempts = case when diagnosis_attempt_key is not distinct from $5::text then diagnosis_attempts + 1 else 1 end,
    diagnosis_attempt_key = $5::text, diagnosis_attempt_id = $6::text
  where project_id = $1::text and status = 'failed'
    and claim is not distinct from $2::text
    and reason is not distinct from $3::text
    and log_tail is not distinct from $4::text
    and diagnosis_attempt_id is distinct from $6::text
    and (diagnosis_attempt_key is distinct from $5::text or diagnosis_attempts < $7::integer)
  returning diagnosis_attempts, diagnosis_attempt_key, diagnosis_attempt_id
)
select true as taken, diagnosis_attempts, diagnosis_attempt_key, diagnosis_attempt_id from updated
union all
select false as taken, diagnosis_attempts, diagnosis_attempt_key, diagnosis_attempt_id from previews
where project_id = $1::text and not exists (select 1 from updated)`;

export class SqlPreviewStore implements PreviewStore, DiagnosisStore, PreviewCounts {
  constructor(private readonly db: Database) {}

  async get(projectId: ProjectId): Promise<PreviewRecord | null> {
    const rows = await this.run(`get project ${JSON.stringify(projectId)}`, `select ${COLUMNS} from previews where project_id = $1::text`, [projectId], true);
    return rows[0] ? toRecord(rows[0]) : null;
  }

  async list(): Promise<PreviewRecord[]> {
    const rows = await this.run("list previews", `select ${COLUMNS} from previews order by project_id`, []);
    return rows.map(toRecord);
  }

  async getMany(projectIds: readonly ProjectId[]): Promise<PreviewRecord[]> {
    if (projectIds.length === 0) return [];
    const rows = await this.run(`get ${projectIds.length} previews`, `select ${COLUMNS} from previews where project_id = any($1::text[]) order by project_id`, [projectIds], true);
    return rows.map(toRecord);
  }

  async expireMany(writes: readonly ExpireWrite[], claim: string, audit?: { runId: string }): Promise<ExpireResult[]> {
    if (writes.length === 0) return [];
    const rows = await this.run<{ project_id: string; applied: boolean; status: PreviewStatus | null }>(
      `expire ${writes.length} previews (${writes.slice(0, 3).map((w) => JSON.stringify(w.projectId)).join(", ")}${writes.length > 3 ? ", ..." : ""})`,
      EXPIRE_MANY_SQL,
      [
        writes.map((w) => w.projectId),
        writes.map((w) => w.reason),
        writes.map((w) => w.readUpdatedAt.getTime()),
        claim,
        audit?.runId ?? null,
        writes.map((w) => w.auditReason ?? w.reason),
      ],
      true,
    );
    const byId = new Map(rows.map((r) => [r.project_id, r]));
    return writes.map((w) => {
      const r = byId.get(w.projectId);
      return { projectId: w.projectId, applied: r?.applied === true, status: r?.status ?? null };
    });
  }

  /**
   * Applies `action` by name (see `LIFECYCLE`) as one compare-and-set statement (`APPLY_SQL`).
   * Applied exactly when `allows(action, current status)`; refused, it writes nothing and
   * returns the current row. Throws `PermanentError` for an action the table does not know.
   *
   * Normally one statement. The exception is a creating action (launch) racing the creation of
   * the same row: the row did not exist in the statement's snapshot but was committed before its
   * insert, which then conflicts. Within one READ COMMITTED statement the new row cannot be
   * locked and compared, so the statement is run again: its fresh snapshot sees the row and
   * compares against it like any other. (Per-project concurrency in the functions makes this
   * rare; the concurrency tests exercise it.)
   */
  async apply(projectId: ProjectId, action: LifecycleAction, fields: TransitionFields): Promise<ApplyResult> {
    if (!Object.hasOwn(LIFECYCLE, action)) {
      throw new PermanentError(`database: apply ${JSON.stringify(action)} to project ${JSON.stringify(projectId)}: not a lifecycle action`);
    }
    const { url, containerId, logTail, reason } = fields;
    const params = [
      projectId,
      LIFECYCLE[action].to,
      fromStatuses(action),
      createsRow(action),
      reason,
      url !== undefined,
      url ?? null,
      containerId !== undefined,
      containerId ?? null,
      logTail !== undefined,
      logTail ?? null,
      fields.claim ?? null,
      takesClaim(action),
      matchesClaim(action),
    ];
    const label = `apply ${JSON.stringify(action)} to project ${JSON.stringify(projectId)}`;
    for (let run = 1; ; run++) {
      // Prepared: the one statement every action runs (its columns are listed, never `*`).
      let row: ApplyRow | undefined;
      try {
        [row] = await this.run<ApplyRow>(label, APPLY_SQL, params, true);
      } catch (err) {
        // Chosen as a deadlock's victim (40P01: seen against the capacity admission, which
        // releases stale slots of other rows in the same statement): aborted, so it wrote
        // nothing, and the other statement has gone on. Run it again at once rather than fail
        // the step (a launch's record-running) and wait for Inngest's retry.
        if (sqlState(err instanceof Error ? err.cause : undefined) === "40P01" && run < MAX_APPLY_RUNS) continue;
        throw err;
      }
      if (row) return row.applied ? { applied: true, changed: row.changed, row: toRecord(row) } : { applied: false, row: toRecord(row) };
      // No row and nothing written. Without `createsRow` that is the answer; with it, the
      // insert lost a creation race (see above) and the next run compares against the winner.
      if (!createsRow(action)) return { applied: false, row: null };
      if (run === MAX_APPLY_RUNS) throw new Error(`database: ${label} failed: the row kept appearing and disappearing (${run} runs)`);
    }
  }

  async recordDiagnosis(projectId: ProjectId, failure: FailureOf, outcome: { state: DiagnosisState; text: string }): Promise<{ recorded: boolean; written: boolean }> {
    const key = failureKey({ projectId, ...failure });
    const type = outcome.state === "diagnosed" ? "diagnosed" : "diagnosis-unavailable";
    const [row] = await this.run<{ written: boolean; diagnosis: string | null; diagnosis_key: string | null; diagnosis_state: string | null }>(
      `record diagnosis of project ${JSON.stringify(projectId)}`,
      DIAGNOSIS_SQL,
      [projectId, failure.claim, failure.reason, failure.logTail, outcome.text, key, outcome.state, type],
    );
    const recorded = row !== undefined && row.diagnosis_key === key && row.diagnosis_state === outcome.state && row.diagnosis === outcome.text;
    return { recorded, written: row?.written === true };
  }

  async takeDiagnosisAttempt(projectId: ProjectId, failure: FailureOf, attemptId: string, max: number): Promise<{ granted: boolean; attempts: number }> {
    const key = failureKey({ projectId, ...failure });
    const [row] = await this.run<{ taken: boolean; diagnosis_attempts: number; diagnosis_attempt_key: string | null; diagnosis_attempt_id: string | null }>(
      `take a diagnosis attempt for project ${JSON.stringify(projectId)}`,
      ATTEMPT_SQL,
      [projectId, failure.claim, failure.reason, failure.logTail, key, attemptId, max],
    );
    const ours = row !== undefined && row.diagnosis_attempt_key === key;
    const attempts = ours ? Number(row.diagnosis_attempts) : 0;
    // Not taken now but recorded under this id: an earlier try of the same step took it.
    return { granted: ours && (row.taken || row.diagnosis_attempt_id === attemptId), attempts };
  }

  /** The project's audit log, in the order the transitions happened. */
  async events(projectId: ProjectId): Promise<PreviewEvent[]> {
    // Ordered by id, not `at`: ids are drawn while the apply statement holds the project's row
    // lock (or, for a new row, its insert's unique-index entry), so they follow the order the
    // transitions took effect. `at` is now(), the start of the statement (equal to the row's
    // updated_at), which under contention can be earlier than that of a transition that
    // committed before it.
    return this.run<{ type: PreviewEvent["type"]; reason: string | null; at: Date }>(
      `read events for project ${JSON.stringify(projectId)}`,
      "select type, reason, at from preview_events where project_id = $1 order by id",
      [projectId],
    );
  }

  async ping(): Promise<void> {
    await this.run("ping", "select 1", []);
  }

  /** Previews per status, in one grouped count (GET /metrics reads it at every scrape). */
  async countByStatus(): Promise<Partial<Record<PreviewStatus, number>>> {
    const rows = await this.run<{ status: PreviewStatus; n: string }>("count previews by status", "select status, count(*) as n from previews group by status", [], true);
    return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
  }

  /** Every query goes through here: one wrapping, one classification (see errors.ts). */
  private run<T extends Record<string, unknown> = PreviewRow>(action: string, text: string, params: unknown[], prepare = false): Promise<T[]> {
    return queryAs<T>(this.db, action, text, params, { prepare });
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
    claim: row.claim,
    lastActivityAt: row.last_activity_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    diagnosis:
      row.diagnosis_state != null && row.diagnosis != null && row.diagnosis_key != null && row.diagnosed_at != null
        ? { key: row.diagnosis_key, state: row.diagnosis_state, text: row.diagnosis, at: row.diagnosed_at }
        : null,
  };
}
