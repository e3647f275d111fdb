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
 * One queue per project shared by every lifecycle function: with scope `env` and the same key
 * expression, a launch, a stop and a remove of one project never run at the same time, while
 * different projects run in parallel.
 */
export const PER_PROJECT = {
  scope: "env",
  key: '"preview-lifecycle:" + event.data.projectId',
  limit: 1,
} as const;

/** Retries of a step that throws a retryable error (Docker or database unreachable, ...). */
export const RETRIES = 4;

/** Readable message of a caught error (Inngest rethrows step errors as `StepError`). */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
