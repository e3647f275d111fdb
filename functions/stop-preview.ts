/**
 * stop-preview: `preview.idle` / `preview.closed` -> container stopped, row `stopped` with the
 * time, `preview.stopped`.
 *
 * Steps: record-stopping (`stop`: takes the preview) -> stop-container (only while this run still
 * holds it) -> record-stopped (`stopped`) -> emit-stopped. A stopped or missing container is an
 * outcome, not an error: the function succeeds on a project that never had a preview, on one
 * already stopped (keeping its stop time), on one that failed (it keeps its failure; its
 * container is stopped all the same) and on one being removed; then it records and emits
 * nothing. `preview.stopped` is emitted only when `stopped` applied for this run: never over a
 * remove under way or a launch that came after it, and once per stop even if a duplicate raced.
 *
 * A later launch or remove cancels the run; duplicates are skipped while a stop is in flight. A
 * stop that fails for good is recorded by `stop-preview-failure` (`stopFailed`: row -> failed,
 * `preview.failed`), so the project is not left `stopping` and later launches make progress.
 */
import type { Inngest } from "inngest";
import { pipelineStep7, previewClosed, previewIdle, previewRequested, previewStopped, projectDeleted } from "../inngest.config.js";
import { ONE_RUN_PER_PROJECT, PER_PROJECT, RETRIES, parseProjectEvent, permanent, sameProject, type PreviewDeps } from "./deps.js";
import { recordFailure, type FailureContext } from "./failure.js";
import { countOnce } from "./metrics.js";
import type { ActionOutcome } from "./ports.js";

export function createStopPreview(inngest: Inngest, deps: PreviewDeps) {
  return inngest.createFunction(
    {
      id: "stop-preview",
      name: "Stop preview",
      triggers: [previewIdle, previewClosed],
      concurrency: PER_PROJECT,
      singleton: ONE_RUN_PER_PROJECT,
      // A later launch (the user came back) or remove wins over a stop still in flight.
      cancelOn: [sameProject(pipelineStep7), sameProject(previewRequested), sameProject(projectDeleted)],
      retries: RETRIES,
      onFailure: (ctx: FailureContext) => recordFailure(deps, ctx, "stop"),
    },
    async ({ event, step, logger, runId }) => {
      const { projectId } = parseProjectEvent(event);
      // Every return ends the run: counted there (functions/metrics.ts), once, not once per step.
      const ended = <R extends object>(counted: ActionOutcome, result: R): R => {
        countOnce(deps.metrics, `stop:${runId}`, (m) => m.stopFinished(counted));
        return result;
      };
      const why = `${event.name}: ${event.name === previewIdle.name ? "idle" : "closed by user"}`;

      const stopping = await step.run("record-stopping", () =>
        permanent(async () => (await deps.store.apply(projectId, "stop", { reason: why, claim: runId })).applied),
      );
      const outcome = await step.run("stop-container", () =>
        permanent(async () => {
          // Re-read: a launch (or a duplicate stop) that took the preview since record-stopping
          // owns the container now, and must not find it stopped behind its back.
          const row = await deps.store.get(projectId);
          const overtaken = stopping ? row?.status !== "stopping" || row.claim !== runId : row?.status === "starting" || row?.status === "running";
          if (overtaken) return "overtaken" as const;
          return deps.runtime.stop(projectId);
        }),
      );
      if (outcome === "overtaken") {
        logger.info({ projectId }, "stop overtaken by a launch or another stop; nothing done");
        return ended("superseded", { projectId, outcome, recorded: false });
      }
      if (!stopping) {
        logger.info({ projectId, outcome }, "no preview to record as stopped");
        return ended("noop", { projectId, outcome, recorded: false });
      }
      const stopped = await step.run("record-stopped", () =>
        permanent(async () => (await deps.store.apply(projectId, "stopped", { reason: `${why} (container ${outcome})`, claim: runId })).applied),
      );
      if (!stopped) {
        logger.info({ projectId, outcome }, "stop overtaken by a launch or remove; nothing recorded");
        return ended("superseded", { projectId, outcome, recorded: false });
      }
      await step.sendEvent("emit-stopped", previewStopped.create({ projectId }));
      logger.info({ projectId, outcome }, "preview stopped");
      return ended("done", { projectId, outcome, recorded: true });
    },
  );
}
