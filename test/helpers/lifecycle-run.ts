/**
 * Runs a lifecycle function through `@inngest/test` with real steps and, when the run fails, its
 * failure handler the way the Inngest server does: a run of `<fn>-failure` triggered by
 * `inngest/function.failed` carrying the original event and the final error. (`@inngest/test`
 * cannot reach `onFailure` itself, so the same handler is mounted on a function of its own.)
 */
import { randomUUID } from "node:crypto";
import { InngestTestEngine, mockCtx } from "@inngest/test";
import { serializeError, type Inngest } from "inngest";
import { APP_ID } from "../../inngest.config.js";
import type { PreviewDeps } from "../../functions/deps.js";
import type { FailureContext } from "../../functions/failure.js";
import { recordFailure } from "../../functions/failure.js";

type TestedFunction = ConstructorParameters<typeof InngestTestEngine>[0]["function"];
type Outcome = Awaited<ReturnType<InngestTestEngine["execute"]>>;

export interface LifecycleRun {
  result: unknown;
  error: unknown;
  /** The failure handler's run, when the function failed (unless deferred). */
  failure?: { result: unknown; error: unknown };
  /** With `deferFailure`: runs the failure handler now (as a late `inngest/function.failed`). */
  runFailure?: () => Promise<{ result: unknown; error: unknown }>;
}

/** The failure handlers of the three functions, each as a function of its own. */
export function failureFunctions(inngest: Inngest, deps: PreviewDeps) {
  const failed = { event: "inngest/function.failed" } as const;
  return {
    "launch-preview": inngest.createFunction({ id: "launch-preview-failure", triggers: [failed] }, (ctx) =>
      recordFailure(deps, ctx as unknown as FailureContext, "launch"),
    ),
    "stop-preview": inngest.createFunction({ id: "stop-preview-failure", triggers: [failed] }, (ctx) =>
      recordFailure(deps, ctx as unknown as FailureContext, "stop"),
    ),
    "remove-preview": inngest.createFunction({ id: "remove-preview-failure", triggers: [failed] }, (ctx) =>
      recordFailure(deps, ctx as unknown as FailureContext, "remove"),
    ),
  };
}

export type FailureFunctions = ReturnType<typeof failureFunctions>;

/**
 * `@inngest/test` never resolves a `step.sleep` on its own: the pauses between readiness slices
 * are mocked as elapsed (each slice still probes for real). A new list per run: the engine
 * appends every step it ran to the list it was given, and would replay them in the next run.
 */
const pauses = () => Array.from({ length: 200 }, (_, i) => ({ id: `pause-${i + 1}`, handler: () => undefined }));

/**
 * `@inngest/test` draws a new run id for every execution of a run; the server keeps one per run,
 * and the functions rely on it (a run's claim on a preview). Pass `transformCtx` to an engine to
 * give every execution of the run the same id.
 */
export function oneRun(runId = `test-run-${randomUUID()}`) {
  return { runId, transformCtx: (ctx: Parameters<typeof mockCtx>[0]) => ({ ...mockCtx(ctx), runId }) };
}

/** One run on one event, with a new engine (clones share a step cache), then its failure handler. */
export async function runLifecycle(
  fn: TestedFunction & { id(): string },
  failures: FailureFunctions,
  name: string,
  data: Record<string, unknown>,
  opts: { deferFailure?: boolean } = {},
): Promise<LifecycleRun> {
  const event = { name, data };
  const { runId, transformCtx } = oneRun();
  const run: Outcome = await new InngestTestEngine({ function: fn, steps: pauses(), transformCtx }).execute({ events: [event] });
  if (run.error === undefined) return { result: run.result, error: undefined };
  const fnId = fn.id() as keyof FailureFunctions;
  const handler = failures[fnId];
  const failedEvent = {
    name: "inngest/function.failed",
    data: { function_id: `${APP_ID}-${fnId}`, run_id: runId, error: serializeError(run.error), event },
  };
  const runFailure = async () => {
    const failure: Outcome = await new InngestTestEngine({ function: handler }).execute({ events: [failedEvent] });
    return { result: failure.result, error: failure.error };
  };
  if (opts.deferFailure) return { result: run.result, error: run.error, runFailure };
  return { result: run.result, error: run.error, failure: await runFailure() };
}
