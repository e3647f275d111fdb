/**
 * stop-preview: `preview.idle` / `preview.closed` -> container stopped, row `stopped` with the
 * time, `preview.stopped`. A stopped or missing container is an outcome, not an error: the
 * function succeeds on a project that never had a preview, on one already stopped (keeping its
 * stop time) and on one removed (which stays removed); then it records and emits nothing.
 */
import type { Inngest } from "inngest";
import { previewClosed, previewIdle, previewStopped } from "../inngest.config.js";
import { PER_PROJECT, RETRIES, sameProject, type PreviewDeps } from "./deps.js";
import type { PreviewStatus } from "./ports.js";

/** Statuses a stop moves to `stopping`: a preview that is (or may be) up. */
const STOPPABLE: readonly PreviewStatus[] = ["starting", "running", "stopping", "failed"];

export function createStopPreview(inngest: Inngest, deps: PreviewDeps) {
  return inngest.createFunction(
    {
      id: "stop-preview",
      name: "Stop preview",
      triggers: [previewIdle, previewClosed],
      concurrency: PER_PROJECT,
      // A later launch (the user came back) or remove wins over a stop still in flight.
      cancelOn: [sameProject("pipeline.step7"), sameProject("preview.requested"), sameProject("project.deleted")],
      retries: RETRIES,
    },
    async ({ event, step, logger }) => {
      const { projectId } = event.data;
      const why = `${event.name}: ${event.name === previewIdle.name ? "idle" : "closed by user"}`;

      const stopping = await step.run("record-stopping", async () => {
        const row = await deps.store.record(projectId, { status: "stopping", reason: why }, { from: STOPPABLE });
        return row !== null;
      });
      const outcome = await step.run("stop-container", () => deps.runtime.stop(projectId));
      if (!stopping && outcome !== "stopped") {
        logger.info({ projectId, outcome }, "nothing to stop");
        return { projectId, outcome };
      }
      await step.run("record-stopped", async () => {
        // `stopped` too: a row that said stopped while its container ran keeps its stop time.
        await deps.store.record(projectId, { status: "stopped", reason: `${why} (container ${outcome})` }, { from: [...STOPPABLE, "stopped"] });
      });
      await step.sendEvent("emit-stopped", previewStopped.create({ projectId }));
      logger.info({ projectId, outcome }, "preview stopped");
      return { projectId, outcome };
    },
  );
}
