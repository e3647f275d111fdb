/**
 * stop-preview: `preview.idle` / `preview.closed` -> container stopped, row `stopped` with the
 * time, `preview.stopped`. A stopped or missing container is an outcome, not an error, so the
 * function succeeds on a project that never had a preview (and then records and emits nothing).
 */
import type { Inngest } from "inngest";
import { previewClosed, previewIdle, previewStopped } from "../inngest.config.js";
import { PER_PROJECT, RETRIES, type PreviewDeps } from "./deps.js";

export function createStopPreview(inngest: Inngest, deps: PreviewDeps) {
  return inngest.createFunction(
    {
      id: "stop-preview",
      name: "Stop preview",
      triggers: [previewIdle, previewClosed],
      concurrency: PER_PROJECT,
      retries: RETRIES,
    },
    async ({ event, step, logger }) => {
      const { projectId } = event.data;
      const why = event.name === previewIdle.name ? "idle" : "closed by user";

      const tracked = await step.run("record-stopping", async () => {
        const row = await deps.store.record(projectId, { status: "stopping", reason: `${event.name}: ${why}` }, { ifExists: true });
        return row !== null;
      });
      const outcome = await step.run("stop-container", () => deps.runtime.stop(projectId));
      if (!tracked && outcome === "absent") {
        logger.info({ projectId }, "nothing to stop: no preview");
        return { projectId, outcome };
      }
      await step.run("record-stopped", async () => {
        await deps.store.record(projectId, { status: "stopped", reason: `${event.name}: ${why} (container ${outcome})` }, { ifExists: true });
      });
      await step.sendEvent("emit-stopped", previewStopped.create({ projectId }));
      logger.info({ projectId, outcome }, "preview stopped");
      return { projectId, outcome };
    },
  );
}
