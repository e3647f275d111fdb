/** `SweepLog` over the `sweep_decisions` table (migration 003): the sweep's audit log. */
import type { SweepDecision, SweepLog, SweepPass } from "../functions/ports.js";
import type { Database } from "./database.js";
import { queryAs } from "./errors.js";

export interface RecordedDecision extends SweepDecision {
  at: Date;
}

/** Rows per insert statement: bounded parameter arrays, whatever the number of decisions. */
const CHUNK = 1_000;

/** What an item did (see `SweepLog`: a `skip` is not recorded after one of them). */
export const OUTCOMES = ["removed", "corrected", "adopted", "failed"] as const;

/**
 * One statement per chunk (arrays unnested server-side), so recording 10,000 decisions is ten
 * round trips. `on conflict do nothing`: the unique index on (run, pass, action, project) makes a
 * retried step's second recording of the same decision a no-op.
 */
const INSERT_SQL = `
insert into sweep_decisions (run_id, pass, action, project_id, reason)
select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) as d(run_id, pass, action, project_id, reason)
where not (d.action = 'skip' and exists (
  select 1 from sweep_decisions o
  where o.run_id = d.run_id and o.pass = d.pass and o.project_id = d.project_id and o.action in (${OUTCOMES.map((a) => `'${a}'`).join(", ")})))
on conflict do nothing`;

export class SqlSweepLog implements SweepLog {
  constructor(private readonly db: Database) {}

  async record(decisions: readonly SweepDecision[]): Promise<void> {
    for (let i = 0; i < decisions.length; i += CHUNK) {
      const chunk = decisions.slice(i, i + CHUNK);
      const params = [
        chunk.map((d) => d.runId),
        chunk.map((d) => d.pass),
        chunk.map((d) => d.action),
        chunk.map((d) => d.projectId),
        chunk.map((d) => d.reason),
      ];
      await queryAs(this.db, `record ${chunk.length} sweep decisions`, INSERT_SQL, params, { prepare: true });
    }
  }

  /** Decisions in the order they were recorded, optionally of one run, pass or project. */
  async list(filter: { runId?: string; pass?: SweepPass; projectId?: string } = {}): Promise<RecordedDecision[]> {
    const rows = await queryAs<{ run_id: string; pass: SweepPass; action: string; project_id: string | null; reason: string; at: Date }>(
      this.db,
      "list sweep decisions",
      `select run_id, pass, action, project_id, reason, at from sweep_decisions
       where ($1::text is null or run_id = $1) and ($2::text is null or pass = $2) and ($3::text is null or project_id = $3)
       order by id`,
      [filter.runId ?? null, filter.pass ?? null, filter.projectId ?? null],
    );
    return rows.map((r) => ({ runId: r.run_id, pass: r.pass, action: r.action, projectId: r.project_id, reason: r.reason, at: r.at }));
  }
}
