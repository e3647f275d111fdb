/**
 * The expired pass's action, for many previews at once: `sweep-previews` runs it in its
 * `expire-N` steps, EXPIRE_CHUNK previews per step (and `sweep-item` for a single `expire` item
 * sent by an earlier version). A batch costs three statements whatever its size, where one run
 * per preview cost three per preview: on a host whose engine is busy removing containers, the
 * sweep's own database work was what kept it from the benchmark target (issue 8).
 *
 * For a batch:
 *   1. read the rows of all its previews in one statement (`getMany`);
 *   2. for each preview, SWEEP_CONCURRENCY at a time, decide again on what was read and act:
 *      the row still stopped longer than STOPPED_RETENTION (or, without a row, the container's
 *      own FinishedAt that old, inspected), then the container removed without force (a
 *      container started meanwhile stays), by the id the plan found: the row's own container
 *      id is removed by id, any other is checked by name and labels first (a replaced or
 *      forged id is never removed). With object storage its last log is archived first (best
 *      effort). Site files stay: the project exists;
 *   3. record `expire` for every row read in step 1 in one statement (`expireMany`), each only
 *      while its row is still exactly as read (stopped, `updatedAt` unchanged), with its audit
 *      entry in the same statement: a retried step never finds a removal recorded on the row
 *      but missing from the audit (and then, say, a launch since, recorded as a mere skip).
 *
 * Without the per-project concurrency key (a batch spans projects), a launch can claim a preview
 * between steps 1 and 2. What keeps that safe:
 *   - a container that runs is never removed (no force; `running` is an outcome, not an error);
 *   - a launch that claimed before step 1 is seen there (row `starting`): skipped;
 *   - a launch that claimed between 1 and 2 and found the stopped container may see it removed
 *     under it: its `start-container` step creates it again (launch-preview.ts). Nothing is
 *     lost but the seconds of a create;
 *   - step 3 refuses any row written since step 1, so a launched preview's row is never
 *     rewritten; its audit entry says so.
 * One preview that fails (the engine refusing one removal) is an outcome (`failed`, with the
 * error) and never stops the others; the next sweep plans it again. A failure of the database
 * throws (the step is retried: every write above converges on a replay).
 */
import type { PreviewDeps } from "./deps.js";
import type { ExpireWrite, PreviewRecord, ProjectId } from "./ports.js";
import { formatAge, mapBounded, type SweepDeps } from "./sweep-plan.js";

/**
 * Previews per `expire-N` step: 4 steps for 1,000 previews, 40 for 10,000 (Inngest allows 1,000).
 * Each step ends when its slowest removal does, so fewer, larger steps leave the engine idle
 * less often (measured: 100 per step cost a few per cent more); a step of 250 takes ~0.6 s.
 */
export const EXPIRE_CHUNK = 250;

/** What one action on one preview did: `done` (with the audit action) or `skip` (with why). */
export type Outcome = { done: false; reason: string } | { done: true; action: string; reason: string; changed?: boolean };
export const skip = (reason: string): Outcome => ({ done: false, reason });
/** The audit action (and metric outcome) of an outcome. */
export const actionOf = (o: Outcome): string => (o.done ? o.action : "skip");

/** One preview to expire, as the plan decided it. */
export interface ExpireItem {
  projectId: ProjectId;
  /** The container the plan found (ours, stopped, older than SWEEP_GRACE): the only one removed. */
  containerId?: string;
}

/** What step 2 did for one preview, and what step 3 must record. */
interface Acted {
  outcome: Outcome;
  /** The `expire` to record (a row was read); absent: nothing to write. */
  write?: ExpireWrite;
  /** Added to the audit reason once the write is recorded. */
  suffix?: string;
  /** Its audit entry is recorded already (a removal without a row). */
  audited?: boolean;
}

/**
 * Expires `items` (see the header) under `claim` (the acting run). Outcomes in the order of
 * `items`. `rethrow`: a failure of one preview throws instead of being its outcome (a run of
 * one, retried by Inngest). `audit`: the outcomes of the rows written go to the audit log in the
 * same statement as the write (see `PreviewStore.expireMany`); `audited` says which.
 */
export async function expirePreviews(
  deps: PreviewDeps,
  sweep: SweepDeps,
  items: readonly ExpireItem[],
  claim: string,
  opts: { rethrow?: boolean; audit?: { runId: string } } = {},
): Promise<{ outcomes: Outcome[]; audited: boolean[] }> {
  if (items.length === 0) return { outcomes: [], audited: [] };
  const at = (sweep.now ?? Date.now)();
  const { retentionMs, graceMs } = sweep.settings;
  const retention = `longer than STOPPED_RETENTION ${formatAge(retentionMs)}`;
  const rows = new Map((await deps.store.getMany(items.map((i) => i.projectId))).map((r) => [r.projectId, r]));

  /**
   * Object storage: the container's last log, kept before the container goes, as
   * `projects/{id}/logs/{containerId}.log`. Only while that container is the one under the name
   * (the log is read by name): a retried step whose container is already gone must not write an
   * empty log over the one archived, nor a container created since under the name have its log
   * kept under another's id. Best effort: returns what to add to the audit reason.
   */
  async function archiveLog(projectId: ProjectId, containerId: string): Promise<string> {
    const objects = deps.objects;
    if (!objects) return "";
    try {
      const current = await sweep.inventory.inspect(projectId);
      if (current?.containerId !== containerId) return "; no log archived (the container is no longer there)";
      const { key } = await objects.archiveLog(projectId, containerId, await deps.runtime.logTail(projectId));
      return `; last log archived to ${key}`;
    } catch (err) {
      return `; last log not archived (${(err as Error).message})`;
    }
  }

  async function act({ projectId, containerId: planned }: ExpireItem, row: PreviewRecord | null): Promise<Acted> {
    const rowExpired = row?.status === "stopped" && row.stoppedAt !== null && at - row.stoppedAt.getTime() >= retentionMs;
    if (row && !rowExpired) return { outcome: skip(`row is ${row.status}${row.stoppedAt ? ` since ${row.stoppedAt.toISOString()}` : ""} now`) };
    /** Removed: the row's `expire` to write (with the reason its audit entry gets), if it has one. */
    const removedAs = (reason: string, removed: string): Acted => {
      const suffix = ` (container ${removed})`;
      const write = row ? { write: { projectId, reason, readUpdatedAt: row.updatedAt, auditReason: reason + suffix } } : {};
      return { outcome: { done: true, action: "removed", reason }, suffix, ...write };
    };
    if (row?.stoppedAt && planned) {
      const reason = `sweep: container removed, stopped since ${row.stoppedAt.toISOString()} (${retention}); site files kept${await archiveLog(projectId, planned)}`;
      // The row's own container id is ours by construction: removed by id (one engine call).
      // Any other id (from an event) is checked by name and labels first.
      const removed = await sweep.inventory.removeStopped(projectId, planned, { recorded: row.containerId === planned });
      if (removed === "running") return { outcome: skip("container runs again; left alone") };
      if (removed === "replaced") return { outcome: skip(`container ${planned.slice(0, 12)} is not the project's preview (replaced, or not ours); left alone`) };
      return removedAs(reason, removed);
    }
    const c = await sweep.inventory.inspect(projectId);
    const since = row?.stoppedAt ? `stopped since ${row.stoppedAt.toISOString()}` : `exited ${c?.finishedAt ? new Date(c.finishedAt).toISOString() : "?"}`;
    let reason = `sweep: container removed, ${since} (${retention}); site files kept`;
    let removed: string;
    if (!c) {
      // Gone already (by hand, or an earlier attempt removed it and failed to record).
      // Without a row nothing says who removed it: an earlier attempt of this step (whose audit
      // entry, recorded at once, then stands: a skip is not recorded over it) or someone else.
      if (!row || row.containerId === null) return { outcome: skip("no container any more (removed since the plan)") };
      removed = "absent";
    } else {
      if (c.running) return { outcome: skip(`container is ${c.state} again`) };
      if (at - c.createdAt < graceMs) return { outcome: skip(`container created ${new Date(c.createdAt).toISOString()}, younger than SWEEP_GRACE ${formatAge(graceMs)}`) };
      if (!row && (c.finishedAt === null || at - c.finishedAt < retentionMs)) return { outcome: skip("no row; container stopped less than STOPPED_RETENTION ago") };
      reason += await archiveLog(projectId, c.containerId);
      removed = await sweep.inventory.removeStopped(projectId, c.containerId);
      if (removed === "running" || removed === "replaced") return { outcome: skip(`container ${removed === "running" ? "runs again" : "replaced meanwhile"}; left alone`) };
      if (!row && opts.audit) {
        // No row to write the audit entry with: recorded at once, so that a retried step (which
        // finds neither row nor container) never leaves this removal out of the audit.
        const outcome: Outcome = { done: true, action: "removed", reason: `${reason} (container ${removed})` };
        await sweep.decisions.record([{ runId: opts.audit.runId, pass: "expired", action: "removed", projectId, reason: outcome.reason }]);
        return { outcome, audited: true };
      }
    }
    return removedAs(reason, removed);
  }

  const acted = await mapBounded(items, sweep.settings.concurrency, (item) =>
    act(item, rows.get(item.projectId) ?? null).catch((err: unknown): Acted => {
      if (opts.rethrow) throw err;
      return { outcome: { done: true, action: "failed", reason: `sweep expire failed: ${err instanceof Error ? err.message : String(err)}` } };
    }),
  );
  const writes = acted.flatMap((a) => (a.write ? [a.write] : []));
  const recorded = new Map((await deps.store.expireMany(writes, claim, opts.audit)).map((r) => [r.projectId, r]));
  // The same reasons the statement recorded (applied: auditReason; refused: with the status).
  const outcomes = acted.map(({ outcome, write, suffix = "" }): Outcome => {
    if (!outcome.done) return outcome;
    if (!write) return { ...outcome, reason: outcome.reason + suffix };
    const r = recorded.get(write.projectId);
    if (r?.applied) return { ...outcome, reason: outcome.reason + suffix };
    return { ...outcome, reason: `${outcome.reason}; row not recorded (now ${r?.status ?? "gone"})` };
  });
  return { outcomes, audited: acted.map((a) => a.audited === true || (opts.audit !== undefined && a.write !== undefined)) };
}

/** What an expire step did: counts, and the first NOTES_SHOWN previews left alone or failed. */
export interface ExpiryCounts {
  removed: number;
  left: number;
  failed: number;
}
export const NOTES_SHOWN = 20;
export interface ExpireBatchResult extends ExpiryCounts {
  notes: Array<{ projectId: ProjectId; outcome: string; reason: string }>;
  /** Every outcome, in the order of the items (not part of the step's output). */
  outcomes: Outcome[];
}

/**
 * One `expire-N` step's work: `expirePreviews` under the sweep run `runId` (its claim), then
 * every outcome recorded in the audit log under that run, pass `expired` (idempotent).
 */
export async function expireBatch(deps: PreviewDeps, sweep: SweepDeps, items: readonly ExpireItem[], runId: string): Promise<ExpireBatchResult> {
  const { outcomes, audited } = await expirePreviews(deps, sweep, items, runId, { audit: { runId } });
  // The rows written were audited with their write; the rest (skips, failures, containers
  // without a row) here. A skip after this run's own earlier outcome is not recorded (SweepLog).
  const rest = items.flatMap((item, k) => (audited[k] ? [] : [{ runId, pass: "expired" as const, action: actionOf(outcomes[k]!), projectId: item.projectId, reason: outcomes[k]!.reason }]));
  await sweep.decisions.record(rest);
  const result: ExpireBatchResult = { removed: 0, left: 0, failed: 0, notes: [], outcomes };
  outcomes.forEach((o, k) => {
    const outcome = actionOf(o);
    if (outcome === "removed") return void result.removed++;
    if (outcome === "failed") result.failed++;
    else result.left++;
    if (result.notes.length < NOTES_SHOWN) result.notes.push({ projectId: items[k]!.projectId, outcome, reason: o.reason });
  });
  return result;
}
