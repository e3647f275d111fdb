/**
 * What a failure handler (`onFailure`) reads. Its trigger is Inngest's `inngest/function.failed`:
 * `data.event` is the original event (parsed again: handlers trust nothing) and `data.error` the
 * final error of the run.
 */
import type { GetStepTools, Inngest, Logger } from "inngest";
import { previewFailed } from "../inngest.config.js";
import { permanent, projectOf, type PreviewDeps } from "./deps.js";
import { countOnce } from "./metrics.js";
import { isPermanent, type Metrics, type ProjectId } from "./ports.js";

export interface FailureContext {
  event: { data: { event?: { name: string; data?: unknown }; error?: { message?: string }; run_id?: string } };
  step: GetStepTools<Inngest>;
  logger: Logger;
  /** The failure handler's own run. */
  runId?: string;
}

/**
 * What each function's failure records: the table action (each applies only while the failing
 * run still holds the preview), the reason as recorded (from the run's final error message), and
 * the log line.
 */
const FAILURES = {
  launch: { action: "fail", reason: (message: string) => message || "launch failed", log: "preview failed to launch" },
  stop: { action: "stopFailed", reason: (message: string) => `stop failed: ${message || "unknown error"}`, log: "preview stop failed" },
  remove: { action: "removeFailed", reason: (message: string) => `remove failed: ${message || "unknown error"}`, log: "preview remove failed" },
} as const;

/** Where each kind of failed run is counted. */
const FAILED: Record<keyof typeof FAILURES, (m: Metrics) => void> = {
  launch: (m) => m.launchFinished("failed", null),
  stop: (m) => m.stopFinished("failed"),
  remove: (m) => m.removeFinished("failed"),
};

/**
 * The failure handler of every lifecycle function (`<fn>-failure`): records the failure with its
 * reason and the log tail, stops the container (a failed preview must not run on unattended), and
 * emits `preview.failed`, all only when the write applied. A run overtaken by a newer launch, stop
 * or remove records nothing and leaves that run's container alone; later launches and removes then
 * make progress instead of finding the project stuck in `starting`, `stopping` or `removing`.
 */
export async function recordFailure(deps: PreviewDeps, ctx: FailureContext, kind: keyof typeof FAILURES, opts: { count?: boolean } = {}) {
  const result = await recordFailureSteps(deps, ctx, kind);
  // The run failed, whatever was recorded: counted once per failed run, where the failure
  // handler (a run of its own, replayed per step like any other) ends; see functions/metrics.ts.
  // `count: false`: a caller that counts the failure as its own (sweep-item).
  if (opts.count !== false) countOnce(deps.metrics, `${kind}-failed:${failedRunOf(ctx)}`, (m) => FAILED[kind](m));
  return result;
}

/** The run that failed (the key its failure is counted under), else the failure handler's own. */
export const failedRunOf = (ctx: FailureContext): string => ctx.event.data.run_id ?? ctx.runId ?? "unknown";

async function recordFailureSteps(deps: PreviewDeps, ctx: FailureContext, kind: keyof typeof FAILURES) {
  const { event, step, logger } = ctx;
  const projectId = projectOf(event.data.event);
  if (projectId === null) return { recorded: false as const, why: "invalid event" };
  const { action, log } = FAILURES[kind];
  const reason = FAILURES[kind].reason(event.data.error?.message ?? "");
  const failed = await step.run("record-failed", () =>
    permanent(async () => {
      // Diagnostic: a tail that cannot be read must not hide the failure.
      const logTail = await deps.runtime.logTail(projectId).catch(() => "");
      const result = await deps.store.apply(projectId, action, { reason, logTail, claim: event.data.run_id });
      // Only the run that holds the preview stops its container (never a newer run's).
      if (result.applied) await stopBestEffort(deps, projectId);
      return { applied: result.applied, logTail };
    }),
  );
  if (!failed.applied) return { recorded: false as const, why: "overtaken" };
  await step.sendEvent("emit-failed", previewFailed.create({ projectId, reason, logTail: failed.logTail }));
  logger.warn({ projectId, reason }, log);
  return { recorded: true as const, projectId, reason };
}

/**
 * A failed preview must not run on unattended: stops its container. A container this service
 * does not own (a permanent refusal) is left alone; an unreachable engine throws, so the step is
 * retried (the failure write replays as a no-op).
 */
export async function stopBestEffort(deps: PreviewDeps, projectId: ProjectId): Promise<void> {
  try {
    await deps.runtime.stop(projectId);
  } catch (err) {
    if (!isPermanent(err)) throw err;
  }
}
