/**
 * `ActivityStore` and `CapacityStore` over the `previews` table (columns `last_activity_at` and
 * `slot`, migration 004). Every call is ONE statement, so it is atomic on every driver.
 */
import type { ActivityMark, ActivityStore, Admission, CapacityStore, PreviewStatus } from "../functions/ports.js";
import type { ProjectId } from "../functions/project-id.js";
import type { Database } from "./database.js";
import { databaseError, queryAs, sqlState } from "./errors.js";

/**
 * Statuses in which a preview may have a container running, and so keeps its capacity slot:
 * from its launch's admission until it is recorded stopped, failed or removed.
 */
export const HOLDING_STATUSES: readonly PreviewStatus[] = ["starting", "running", "stopping", "removing"];

/**
 * One batch of activity marks: `last_activity_at` only moves forward (a late flush never moves
 * it back), rows are touched in project order (two instances flushing at once cannot deadlock),
 * and projects without a row are skipped (nothing is created by a request).
 */
const RECORD_SQL = `
update previews as p
set last_activity_at = greatest(p.last_activity_at, m.at)
from (select * from unnest($1::text[], $2::timestamptz[]) as u(project_id, at) order by project_id) as m
where p.project_id = m.project_id
  and (p.last_activity_at is null or p.last_activity_at < m.at)`;

/**
 * Admission, as one statement. Parameters: $1 project, $2 the launching run (claim), $3 the cap,
 * $4 the holding statuses.
 *
 *   me        the project's row, only while it is this run's launch (`starting` with its claim),
 *             locked;
 *   released  slots of rows that no longer hold a container are given back (lazily: stop, fail
 *             and remove never need to know about capacity);
 *   held      slots of the other holders, as this statement's snapshot sees them;
 *   free      the lowest slot 1..$3 not in `held`;
 *   taken     the project keeps its slot, or takes `free`.
 * The snapshot may miss a slot another launch committed a moment ago: then both picked the same
 * number, and the unique constraint `previews_slot_key` (deferred to the end of the statement)
 * lets only one commit; the other fails with 23505 and `admit` runs the statement again, with a
 * fresh snapshot. So at most $3 rows ever hold a slot, however many launches run at once.
 *
 * Running previews without a slot (started before the cap was set, or while it was unlimited)
 * count against the cap too: a slot is free only while the slotted and the unslotted holders
 * together are fewer than $3. (Their number only ever falls, since every launch takes a slot, so
 * a stale snapshot can only overcount them; the numbered slots stay what serialises admissions.)
 * When nothing is free, `victim` is the least recently active running preview, with a slot or
 * not (its last use, or when it became ready, whichever is later).
 */
const ADMIT_SQL = `
with me as (
  select project_id, slot from previews
  where project_id = $1::text and status = 'starting' and claim is not distinct from $2::text
  for update
),
released as (
  update previews set slot = null
  where slot is not null and not (status = any($4::text[]))
  returning project_id
),
held as (
  select slot from previews
  where slot is not null and status = any($4::text[]) and project_id <> $1::text
),
unslotted as (
  select project_id from previews
  where slot is null and status = 'running' and project_id <> $1::text
),
free as (
  select s from generate_series(1, $3::int) as s
  where s not in (select slot from held)
    and (select count(*) from held) + (select count(*) from unslotted) < $3::int
  limit 1
),
taken as (
  update previews as p set slot = coalesce(me.slot, (select s from free))
  from me
  where p.project_id = me.project_id and coalesce(me.slot, (select s from free)) is not null
  returning p.slot
)
select
  (select slot from taken) as slot,
  exists (select 1 from me) as mine,
  (select status from previews where project_id = $1::text) as status,
  ((select count(*) from held) + (select count(*) from unslotted))::int as holders,
  (select project_id from previews
    where status = 'running' and project_id <> $1::text
    order by greatest(last_activity_at, updated_at) asc, project_id
    limit 1) as victim,
  (select count(*) from released)::int as released`;

/** Runs of the admission statement when concurrent launches keep picking the same slot. */
const MAX_ADMIT_RUNS = 20;

type AdmitRow = { slot: number | null; mine: boolean; status: PreviewStatus | null; holders: number; victim: string | null; released: number };

export class SqlActivityStore implements ActivityStore, CapacityStore {
  constructor(private readonly db: Database) {}

  async recordActivity(marks: readonly ActivityMark[]): Promise<void> {
    if (marks.length === 0) return;
    await this.run(
      `record activity of ${marks.length} previews`,
      RECORD_SQL,
      [marks.map((m) => m.projectId), marks.map((m) => m.at.toISOString())],
    );
  }

  async lastActivity(projectId: ProjectId): Promise<Date | null> {
    const rows = await this.run<{ last_activity_at: Date | null }>(
      `read activity of project ${JSON.stringify(projectId)}`,
      "select last_activity_at from previews where project_id = $1",
      [projectId],
    );
    return rows[0]?.last_activity_at ?? null;
  }

  async admit(projectId: ProjectId, claim: string, max: number): Promise<Admission> {
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError(`capacity must be a positive integer, not ${max}`);
    const label = `admit project ${JSON.stringify(projectId)} (capacity ${max})`;
    for (let run = 1; ; run++) {
      let row: AdmitRow | undefined;
      try {
        [row] = await this.db.query<AdmitRow>(ADMIT_SQL, [projectId, claim, max, HOLDING_STATUSES]);
      } catch (err) {
        // Another launch committed the same slot first (23505), or two admissions releasing the
        // same stale slots met (40P01): try again from a fresh snapshot.
        const state = sqlState(err);
        if ((state === "23505" || state === "40P01") && run < MAX_ADMIT_RUNS) continue;
        throw databaseError(label, err);
      }
      if (!row) throw new Error(`database: ${label}: no answer`);
      if (!row.mine) return { admitted: false, full: false, status: row.status };
      if (row.slot !== null) return { admitted: true, slot: row.slot };
      return { admitted: false, full: true, victim: row.victim, holders: row.holders };
    }
  }

  private run<T extends Record<string, unknown>>(action: string, text: string, params: unknown[]): Promise<T[]> {
    return queryAs<T>(this.db, action, text, params);
  }
}
