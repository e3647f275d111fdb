/**
 * What a failure handler (`onFailure`) reads. Its trigger is Inngest's `inngest/function.failed`:
 * `data.event` is the original event (parsed again: handlers trust nothing) and `data.error` the
 * final error of the run.
 */
import type { GetStepTools, Inngest, Logger } from "inngest";
import { previewFailed } from "../inngest.config.js";
import { permanent, projectOf, type PreviewDeps } from "./deps.js";
import { isPermanent, type ProjectId } from "./ports.js";

export interface FailureContext {
  event: { data: { event?: { name: string; data?: unknown }; error?: { message?: string }; run_id?: string } };
  step: GetStepTools<Inngest>;
  logger: Logger;
}

/** The failure's reason as recorded: the run's final error message. */
export const failureReason = (ctx: FailureContext, fallback: string): string => ctx.event.data.error?.message || fallback;

/**
 * The failure handler of a stop or remove: records `action` (`stopFailed` / `removeFailed`,
 * which apply only while the failing run holds the preview) with the reason, stops the
 * container, and emits `preview.failed` when it applied. Later launches and removes then make progress instead of finding the project
 * stuck in `stopping` or `removing`.
 */
export async function recordActionFailure(deps: PreviewDeps, ctx: FailureContext, action: "stopFailed" | "removeFailed", what: string) {
  const { event, step, logger } = ctx;
  const projectId = projectOf(event.data.event);
  if (projectId === null) return { recorded: false as const, why: "invalid event" };
  const reason = `${what}: ${failureReason(ctx, "unknown error")}`;
  const failed = await step.run("record-failed", () =>
    permanent(async () => {
      const logTail = await deps.runtime.logTail(projectId).catch(() => "");
      const result = await deps.store.apply(projectId, action, { reason, logTail, claim: event.data.run_id });
      if (result.applied) await stopBestEffort(deps, projectId);
      return { applied: result.applied, logTail };
    }),
  );
  if (!failed.applied) return { recorded: false as const, why: "overtaken" };
  await step.sendEvent("emit-failed", previewFailed.create({ projectId, reason, logTail: failed.logTail }));
  logger.warn({ projectId, reason }, `preview ${what}`);
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
