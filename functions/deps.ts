/**
 * What every lifecycle function is given, and the flow control and error mapping they share.
 */
import { NonRetriableError, type EventType } from "inngest";
import * as v from "valibot";
import { ProjectEventData } from "../inngest.config.js";
import { isPermanent, type ActivityStore, type CapacityStore, type Metrics, type PreviewRuntime, type PreviewStore, type ProjectObjects, type SiteFiles } from "./ports.js";
import type { ProjectId } from "./project-id.js";

/** What every lifecycle function is given; `runtime/` builds it from the config. */
export interface PreviewDeps {
  runtime: PreviewRuntime;
  store: PreviewStore;
  site: SiteFiles;
  /** How long a launch waits, in all, for the dev server to answer HTTP. */
  readyTimeoutMs: number;
  /** The longest a single readiness step probes before the run sleeps and probes again. */
  readySliceMs?: number;
  /** Aborted at shutdown: a readiness step in flight ends at once (and the run probes again later). */
  shutdown?: AbortSignal;
  /** Last use of each preview (track-idle); without it only the ready time counts. */
  activity?: ActivityStore;
  /** IDLE_TIMEOUT: how long a running preview may go unused (default 1h). */
  idleTimeoutMs?: number;
  /** MAX_RUNNING_PREVIEWS and the store that enforces it; absent: unlimited. */
  capacity?: { store: CapacityStore; max: number };
  /** Outcomes of runs, counted once per run (functions/metrics.ts); absent: nothing counted. */
  metrics?: Metrics;
  /** Object storage (MINIO_*): the project's files in a bucket; absent: the local folder only. */
  objects?: ProjectObjects;
}

/**
 * How long one readiness step probes (capped at 30 s in launch-preview): no call request is held
 * open for minutes.
 */
export const DEFAULT_READY_SLICE_MS = 15_000;

/**
 * One concurrency key per project shared by every lifecycle function (scope `env`, same key
 * expression): no two STEPS of a launch, a stop or a remove of one project run at the same
 * time, while different projects run in parallel. Inngest limits steps, not runs: a run paused
 * between two steps holds no slot, so runs can still interleave step by step. Hence:
 *   - every write is a compare-and-set through the lifecycle table, so any interleaving converges;
 *   - a newer opposite action cancels an older run (`cancelOn`), so the last event wins;
 *   - duplicates of one trigger collapse (`singleton`, below).
 */
export const PER_PROJECT = {
  scope: "env",
  key: '"preview-lifecycle:" + event.data.projectId',
  limit: 1,
} as const;

/**
 * Duplicates collapse: while a run of a function is in flight for a project, a new event for the
 * same project and function is skipped. `skip` rather than `cancel`: the run in flight does
 * exactly the work the duplicate asks for (a launch may be minutes into a first `npm install`),
 * and opposite actions are handled by `cancelOn`, not by this.
 */
export const ONE_RUN_PER_PROJECT = { key: "event.data.projectId", mode: "skip" } as const;

/** `cancelOn` entry: a run is cancelled by a later `event` for the same project. */
export const sameProject = <N extends string>(event: EventType<N, typeof ProjectEventData>) => ({
  event,
  if: "async.data.projectId == event.data.projectId",
});

/** Retries of a step that throws a retryable error (Docker or database unreachable, ...). */
export const RETRIES = 4;

/**
 * The one place an adapter's `PermanentError` becomes Inngest's `NonRetriableError`: every step
 * body that calls an adapter runs through this, so retries happen exactly when they can help.
 */
export async function permanent<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (err) {
    if (isPermanent(err)) throw new NonRetriableError(err.message, { cause: err });
    throw err;
  }
}

/**
 * Handlers trust nothing: a call request can carry an `event` that is not in its `events` list,
 * and then the SDK's schema check never saw it. Every function parses `event.data` itself before
 * its first step, so no SQL statement, Docker call or file access sees an invalid id.
 */
export function parseProjectEvent(event: { name: string; data?: unknown }): { projectId: ProjectId } {
  return parseEventData(ProjectEventData, event.name, event.data);
}

/** `data` parsed by `schema`; a `NonRetriableError` naming the event and every problem otherwise. */
export function parseEventData<S extends v.GenericSchema>(schema: S, name: string, data: unknown): v.InferOutput<S> {
  const parsed = v.safeParse(schema, data);
  if (parsed.success) return parsed.output;
  const problems = parsed.issues.map((i) => `${v.getDotPath(i) ?? "data"}: ${i.message}`).join("; ");
  throw new NonRetriableError(`invalid ${name} event: ${problems}`);
}

/** Like `parseProjectEvent`, but null instead of throwing (failure handlers: nothing to record). */
export function projectOf(event: { data?: unknown } | undefined): ProjectId | null {
  const parsed = v.safeParse(ProjectEventData, event?.data);
  return parsed.success ? parsed.output.projectId : null;
}

/** "300ms", "90s", "5m": for messages. */
export function formatDuration(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
