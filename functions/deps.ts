import type { PreviewRuntime, PreviewStore, SiteFiles } from "./ports.js";

/** What every lifecycle function is given; `runtime/` builds it from the config. */
export interface PreviewDeps {
  runtime: PreviewRuntime;
  store: PreviewStore;
  site: SiteFiles;
  /** How long launch waits for the dev server to answer HTTP. */
  readyTimeoutMs: number;
}

/**
 * One concurrency key per project shared by every lifecycle function (scope `env`, same key
 * expression): no two STEPS of a launch, a stop or a remove of one project ever run at the same
 * time, while different projects run in parallel. Inngest limits steps, not runs: a run paused
 * between two steps holds no slot, so runs can still interleave step by step. Hence:
 *   - every step checks the state it acts on (Docker by name, the row by compare-and-set), so
 *     any interleaving converges;
 *   - a newer opposite action cancels an older run (`cancelOn`, below), so the last event wins.
 */
export const PER_PROJECT = {
  scope: "env",
  key: '"preview-lifecycle:" + event.data.projectId',
  limit: 1,
} as const;

/** `cancelOn` entry: a run is cancelled by a later `eventName` for the same project. */
export const sameProject = (event: string) => ({ event, if: "async.data.projectId == event.data.projectId" });

/** Retries of a step that throws a retryable error (Docker or database unreachable, ...). */
export const RETRIES = 4;

/** Readable message of a caught error (Inngest rethrows step errors as `StepError`). */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
