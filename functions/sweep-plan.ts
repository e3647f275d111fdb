/**
 * The sweep's decisions, as a plain function of what the store, the engine and the project
 * source say (no Inngest here): `sweep-previews` runs it in one step and `POST /sweep?dryRun=1`
 * calls it directly. It reads, and never writes: acting is `sweep-item`'s job (one preview per
 * run, under the per-project concurrency key) and, for expiries, `sweep-expire.ts`'s (batched
 * in sweep-previews' steps).
 *
 * Passes (one item per preview at most; orphan > expire > correct/adopt):
 *   orphans    a preview whose project no longer exists (PROJECTS_TABLE), or, without a project
 *              source, a managed container this service has no row for. GUARDS skip the whole
 *              pass, recorded: the project query failed, it returned no project at all while
 *              previews exist, or more than SWEEP_MAX_ORPHAN_FRACTION of the managed previews
 *              would go. A failure or an empty answer is never read as "everything is an orphan".
 *   expired    a stopped container whose row says stopped for longer than STOPPED_RETENTION (by
 *              the recorded stop time; Docker's `--filter until=` is the creation time), or,
 *              without a row, whose `State.FinishedAt` is that old.
 *   reconcile  a row saying starting/running whose container is gone or exited is corrected; a
 *              managed container without a row whose project exists is adopted.
 *              Running previews unused for longer than IDLE_TIMEOUT (by their last activity or
 *              when they became ready) get `preview.idle`, in case an activity event or a
 *              debounce of `track-idle` was lost; see `idleCandidates`.
 * Nothing younger than SWEEP_GRACE is removed or corrected (a launch may be under way).
 * Strangers: containers attached to the preview network that are neither this instance's
 * previews nor trusted peers are listed in the plan and recorded as `warn` decisions; nothing
 * is ever done to them (they are not ours). A failed check is recorded too, never fatal.
 */
import type { PreviewStatus } from "./lifecycle.js";
import type {
  ManagedContainer,
  NetworkStranger,
  PreviewInventory,
  PreviewNetworkAudit,
  PreviewRecord,
  PreviewStore,
  ProjectDirectory,
  ProjectId,
  SweepDecision,
  SweepLog,
  SweepPass,
} from "./ports.js";
import { lastUse, strangerWarning } from "./ports.js";

export type SweepAction = "expire" | "orphan" | "correct" | "adopt";

/** The sweep's settings (SWEEP_CRON, STOPPED_RETENTION, SWEEP_GRACE, SWEEP_MAX_ORPHAN_FRACTION, SWEEP_CONCURRENCY). */
export interface SweepSettings {
  cron: string;
  retentionMs: number;
  graceMs: number;
  maxOrphanFraction: number;
  /** How many `sweep-item` runs act at once, and removals at once in an expire step (bounded parallelism). */
  concurrency: number;
  /** IDLE_TIMEOUT: running previews unused this long get `preview.idle`; undefined: no idle pass. */
  idleTimeoutMs?: number;
}

/** What the sweep is given besides `PreviewDeps`; `runtime/` builds it from the config. */
export interface SweepDeps {
  inventory: PreviewInventory;
  /** null: no project source configured (orphans are containers without a row). */
  projects: ProjectDirectory | null;
  decisions: SweepLog;
  settings: SweepSettings;
  /** The preview network's strangers (review F2); absent: not checked. */
  network?: PreviewNetworkAudit;
  /** The clock (tests). */
  now?: () => number;
}

export interface SweepItem {
  projectId: ProjectId;
  action: SweepAction;
  reason: string;
  /** expire with a row: the container found by the plan (the only one the item may remove). */
  containerId?: string;
}

export interface SweepSkip {
  projectId: ProjectId;
  pass: Exclude<SweepPass, "run">;
  reason: string;
}

export interface SweepGuard {
  pass: Exclude<SweepPass, "run">;
  reason: string;
}

export interface SweepPlan {
  /** When the plan was made (ms since the epoch). */
  at: number;
  /** Managed previews: containers of this instance and rows not `removed`, by project. */
  previews: number;
  containers: number;
  /** To act on, at most MAX_ITEMS_PER_RUN. */
  items: SweepItem[];
  skipped: SweepSkip[];
  guards: SweepGuard[];
  /** Running previews idle longer than IDLE_TIMEOUT (see `idleCandidates`). */
  idle: ProjectId[];
  /** Items beyond MAX_ITEMS_PER_RUN, left for the next run. */
  deferred: number;
  /** Containers on the preview network that are neither ours nor peers (reported only); absent without a network audit. */
  strangers?: { network: string; found: NetworkStranger[]; error?: string };
}

/**
 * The most items one run dispatches. Bounds the plan step's output (an item is a project id, an
 * action, a reason and a container id, ~250 bytes: ~2.5 MB at most, under Inngest's 4 MB per
 * step; the 10,000-preview unit test measures it) and the
 * dispatch steps (MAX_ITEMS_PER_RUN / DISPATCH_CHUNK = 20). The rest waits for the next run.
 */
export const MAX_ITEMS_PER_RUN = 10_000;
/** Containers inspected at once for their stop time (rowless ones only). */
const INSPECT_PARALLELISM = 8;

const LIVE_ROW = (r: PreviewRecord) => r.status !== "removed";
const ACTIVE: readonly PreviewStatus[] = ["starting", "running"];

export function formatAge(ms: number): string {
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** Reads rows, containers and projects, and decides. Throws only when the store or the engine cannot be read. */
export async function planSweep(store: PreviewStore, sweep: SweepDeps): Promise<SweepPlan> {
  const now = (sweep.now ?? Date.now)();
  const { retentionMs, graceMs, maxOrphanFraction } = sweep.settings;
  // One listing of the engine: the strangers check compares the network's endpoints with it.
  const listing = sweep.inventory.list();
  const [rowList, containerList, strangers] = await Promise.all([store.list(), listing, checkStrangers(sweep.network, listing)]);
  const rows = new Map(rowList.map((r) => [r.projectId, r]));
  const containers = new Map(containerList.map((c) => [c.projectId, c]));
  const managed = [...new Set([...containerList.map((c) => c.projectId), ...rowList.filter(LIVE_ROW).map((r) => r.projectId)])].sort();

  const items = new Map<ProjectId, SweepItem>();
  const skipped: SweepSkip[] = [];
  const guards: SweepGuard[] = [];
  const young = (c: ManagedContainer | undefined) => c !== undefined && now - c.createdAt < graceMs;
  const graceNote = (c: ManagedContainer) => `container created ${iso(c.createdAt)}, younger than SWEEP_GRACE ${formatAge(graceMs)}`;
  /** An expired container: an item (with the container the item may remove, when known), or a skip within the grace. */
  const expire = (c: ManagedContainer, reason: string, containerId?: string) => {
    if (young(c)) skipped.push({ projectId: c.projectId, pass: "expired", reason: graceNote(c) });
    else items.set(c.projectId, { projectId: c.projectId, action: "expire", reason, ...(containerId ? { containerId } : {}) });
  };

  // --- what the project source says ---------------------------------------------------------
  let existing: Set<ProjectId> | null = null;
  let projectsProblem: string | null = null;
  if (sweep.projects) {
    try {
      const answer = await sweep.projects.lookup(managed);
      if (!answer.anyProject && managed.length > 0) {
        projectsProblem = `${sweep.projects.source} returned no project at all while ${managed.length} previews exist`;
      } else {
        existing = new Set(answer.existing);
      }
    } catch (err) {
      projectsProblem = `project query failed: ${err instanceof Error ? err.message : String(err)}`;
    }
  }

  // --- orphans --------------------------------------------------------------------------------
  let orphans: ProjectId[] = [];
  if (sweep.projects) {
    if (existing) orphans = managed.filter((id) => !existing.has(id));
  } else {
    // No project source: a stopped container this service has no (live) row for. A running one
    // is never an orphan here: it may be another instance's under the same owner (a second
    // checkout, a restored database), and nothing says its project is gone.
    orphans = containerList
      .filter((c) => !c.running && (!rows.get(c.projectId) || rows.get(c.projectId)?.status === "removed"))
      .map((c) => c.projectId);
    for (const c of containerList) {
      if (c.running && !rows.has(c.projectId)) skipped.push({ projectId: c.projectId, pass: "orphans", reason: "running container without a row: never an orphan without a project source" });
    }
  }
  // Without a project source the share is of the containers: rows alone (stopped ones pile up)
  // must not dilute it.
  const population = sweep.projects ? managed.length : containerList.length;
  if (projectsProblem) {
    guards.push({ pass: "orphans", reason: `orphan pass skipped: ${projectsProblem}` });
  } else if (orphans.length > 0 && orphans.length > maxOrphanFraction * population) {
    guards.push({
      pass: "orphans",
      reason: `orphan pass skipped: it would remove ${orphans.length} of ${population} ${sweep.projects ? "managed previews" : "managed containers"}, more than SWEEP_MAX_ORPHAN_FRACTION ${maxOrphanFraction}${sweep.projects ? "" : " (no project source: stopped containers without a row)"}`,
    });
  } else {
    for (const id of orphans) {
      const c = containers.get(id);
      const row = rows.get(id);
      if (young(c)) {
        skipped.push({ projectId: id, pass: "orphans", reason: graceNote(c!) });
        continue;
      }
      if (!c && row && now - row.updatedAt.getTime() < graceMs) {
        skipped.push({ projectId: id, pass: "orphans", reason: `row updated ${row.updatedAt.toISOString()}, within SWEEP_GRACE ${formatAge(graceMs)}` });
        continue;
      }
      const why = sweep.projects ? `project ${id} not found in ${sweep.projects.source}` : `container without a row (no project source configured)`;
      items.set(id, { projectId: id, action: "orphan", reason: why });
    }
  }

  // --- expired --------------------------------------------------------------------------------
  const rowless: ManagedContainer[] = [];
  for (const c of containerList) {
    if (c.running || items.has(c.projectId)) continue;
    const row = rows.get(c.projectId);
    if (!row) {
      rowless.push(c);
      continue;
    }
    if (row.status !== "stopped" || !row.stoppedAt || now - row.stoppedAt.getTime() < retentionMs) continue;
    expire(c, `stopped since ${row.stoppedAt.toISOString()}, longer than STOPPED_RETENTION ${formatAge(retentionMs)}`, c.containerId);
  }
  // Without a row, the stop time is Docker's State.FinishedAt: one inspect each (rowless only).
  const inspected = await mapBounded(rowless, INSPECT_PARALLELISM, (c) => sweep.inventory.inspect(c.projectId));
  for (const c of inspected) {
    if (!c || c.running || c.finishedAt === null || now - c.finishedAt < retentionMs) continue;
    expire(c, `no row; container exited ${iso(c.finishedAt)}, longer than STOPPED_RETENTION ${formatAge(retentionMs)} ago`);
  }

  // --- reconcile ------------------------------------------------------------------------------
  for (const row of rowList) {
    if (!ACTIVE.includes(row.status) || items.has(row.projectId)) continue;
    const c = containers.get(row.projectId);
    if (c?.running) continue;
    const truth = c ? `its container is ${c.state}` : "its container is gone";
    if (now - row.updatedAt.getTime() < graceMs) {
      skipped.push({ projectId: row.projectId, pass: "reconcile", reason: `recorded ${row.status} but ${truth}; updated within SWEEP_GRACE ${formatAge(graceMs)} (a launch may be under way)` });
      continue;
    }
    items.set(row.projectId, { projectId: row.projectId, action: "correct", reason: `recorded ${row.status} but ${truth}` });
  }
  const unrecorded = containerList.filter((c) => !rows.has(c.projectId) && !items.has(c.projectId));
  if (unrecorded.length > 0) {
    if (!sweep.projects) {
      // Handled by the orphan pass (guarded or not): without a project source nothing says they are wanted.
    } else if (!existing) {
      guards.push({ pass: "reconcile", reason: `adoption of ${unrecorded.length} containers without a row skipped: ${projectsProblem}` });
    } else {
      for (const c of unrecorded) {
        if (!existing.has(c.projectId)) continue;
        items.set(c.projectId, { projectId: c.projectId, action: "adopt", reason: `${c.state} container ${c.containerId.slice(0, 12)} without a row; project exists` });
      }
    }
  }
  // Running previews idle longer than IDLE_TIMEOUT (a lost activity event or debounce):
  // sweep-previews sends them `preview.idle`, which stop-preview handles.
  const idle = idleCandidates(rowList, now, sweep.settings.idleTimeoutMs).filter((id) => !items.has(id));

  const all = [...items.values()];
  return {
    at: now,
    previews: managed.length,
    containers: containerList.length,
    items: all.slice(0, MAX_ITEMS_PER_RUN),
    skipped,
    guards,
    idle,
    deferred: Math.max(0, all.length - MAX_ITEMS_PER_RUN),
    ...(strangers ? { strangers } : {}),
  };
}

/**
 * Running previews unused for at least `idleMs` (the later of their last recorded activity and
 * the moment they became ready, which `updatedAt` of a running row is), as `track-idle` judges
 * them: the sweep sends them `preview.idle` in case an activity event or a debounce was lost.
 * `idleMs` undefined: no idle pass. At most MAX_ITEMS_PER_RUN, the longest idle first.
 */
function idleCandidates(rows: readonly PreviewRecord[], now: number, idleMs: number | undefined): ProjectId[] {
  if (idleMs === undefined) return [];
  return rows
    .filter((r) => r.status === "running" && now - lastUse(r) >= idleMs)
    .sort((a, b) => lastUse(a) - lastUse(b))
    .slice(0, MAX_ITEMS_PER_RUN)
    .map((r) => r.projectId);
}

/** The strangers on the preview network, or why they could not be listed (never fails the plan). */
async function checkStrangers(audit: PreviewNetworkAudit | undefined, ours: Promise<readonly ManagedContainer[]>): Promise<SweepPlan["strangers"]> {
  if (!audit) return undefined;
  try {
    return { network: audit.network, found: await audit.strangers(await ours) };
  } catch (err) {
    return { network: audit.network, found: [], error: err instanceof Error ? err.message : String(err) };
  }
}

/** Which pass an action belongs to. */
export const PASS_OF: Record<SweepAction, Exclude<SweepPass, "run">> = { expire: "expired", orphan: "orphans", correct: "reconcile", adopt: "reconcile" };
/** The audit action of a planned item. */
const PLANNED: Record<SweepAction, string> = { expire: "remove", orphan: "remove", correct: "correct", adopt: "adopt" };

export interface SweepSummary {
  dryRun: boolean;
  previews: number;
  containers: number;
  expired: { remove: number; skip: number };
  orphans: { remove: number; skip: number; guard: string | null };
  reconcile: { correct: number; adopt: number; skip: number; guard: string | null };
  /** `preview.idle` sent. */
  idle: { stop: number };
  deferred: number;
}

/** Counts per pass and action: what the run returns (and the dashboard shows). */
export function summarize(plan: SweepPlan, dryRun: boolean): SweepSummary {
  const count = (action: SweepAction) => plan.items.filter((i) => i.action === action).length;
  const skips = (pass: SweepSkip["pass"]) => plan.skipped.filter((s) => s.pass === pass).length;
  const guard = (pass: SweepGuard["pass"]) => plan.guards.find((g) => g.pass === pass)?.reason ?? null;
  return {
    dryRun,
    previews: plan.previews,
    containers: plan.containers,
    expired: { remove: count("expire"), skip: skips("expired") },
    orphans: { remove: count("orphan"), skip: skips("orphans"), guard: guard("orphans") },
    reconcile: { correct: count("correct"), adopt: count("adopt"), skip: skips("reconcile"), guard: guard("reconcile") },
    idle: { stop: plan.idle.length },
    deferred: plan.deferred,
  };
}

/** Every decision of a plan, as the audit log records it (the summary included). */
export function planDecisions(plan: SweepPlan, runId: string): SweepDecision[] {
  return [
    ...plan.guards.map((g) => ({ runId, pass: g.pass, action: "guard", projectId: null, reason: g.reason })),
    ...plan.items.map((i) => ({ runId, pass: PASS_OF[i.action], action: PLANNED[i.action], projectId: i.projectId, reason: i.reason })),
    ...plan.skipped.map((s) => ({ runId, pass: s.pass, action: "skip", projectId: s.projectId, reason: s.reason })),
    ...strangerDecisions(plan, runId),
    { runId, pass: "run" as const, action: "summary", projectId: null, reason: JSON.stringify(summarize(plan, false)) },
  ];
}

/**
 * The `warn` decision about the preview network's strangers (or the failed check): ONE per run
 * (the audit log keeps one decision per run, pass, action and project), naming every stranger.
 */
function strangerDecisions(plan: Pick<SweepPlan, "strangers">, runId: string): SweepDecision[] {
  const check = plan.strangers;
  if (!check) return [];
  const warn = (reason: string): SweepDecision[] => [{ runId, pass: "run", action: "warn", projectId: null, reason }];
  if (check.error) return warn(`could not list the containers on the preview network ${check.network}: ${check.error}`);
  if (!check.found.length) return [];
  return warn(check.found.map((s) => strangerWarning(check.network, s)).join("; "));
}

/** `fn` over `items`, at most `limit` at a time, results in order. */
export async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) results[i] = await fn(items[i]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
