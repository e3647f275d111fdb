/**
 * launch-preview: `pipeline.step7` / `preview.requested` -> a running preview and `preview.ready`.
 *
 * Steps (each idempotent; a replay after a crash between any two converges):
 *   check-site -> ensure-container -> [start-container (records `starting`)] -> wait-ready
 *   -> record-running -> emit-ready
 * A preview that does not come up (no site folder, process exits, no HTTP answer in time, or a
 * step that failed for good) is recorded `failed` with the reason and log tail, `preview.failed`
 * is emitted, and the run fails without further retries.
 */
import { NonRetriableError, type Inngest } from "inngest";
import { pipelineStep7, previewFailed, previewReady, previewRequested } from "../inngest.config.js";
import { PER_PROJECT, RETRIES, errorMessage, type PreviewDeps } from "./deps.js";

export function createLaunchPreview(inngest: Inngest, deps: PreviewDeps) {
  return inngest.createFunction(
    {
      id: "launch-preview",
      name: "Launch preview",
      triggers: [pipelineStep7, previewRequested],
      concurrency: PER_PROJECT,
      retries: RETRIES,
    },
    async ({ event, step, logger }) => {
      const { projectId } = event.data;

      const fail = async (reason: string, logTail: string): Promise<never> => {
        await step.run("record-failed", async () => {
          await deps.store.record(projectId, { status: "failed", reason, logTail });
        });
        await step.sendEvent("emit-failed", previewFailed.create({ projectId, reason, logTail }));
        logger.warn({ projectId, reason }, "preview failed to launch");
        throw new NonRetriableError(`preview ${projectId} failed to launch: ${reason}`);
      };

      const site = await step.run("check-site", () => deps.site.check(projectId));
      if (!site.ok) return fail(site.reason, "");

      let ready;
      try {
        const container = await step.run("ensure-container", () => deps.runtime.ensureContainer(projectId));
        if (!container.running) {
          // Both halves are idempotent, so they share a step and run side by side (start is
          // the slow part of a launch; the row says `starting` meanwhile).
          await step.run("start-container", async () => {
            const starting = { status: "starting", reason: `${event.name}: starting container`, containerId: container.containerId, logTail: null } as const;
            await Promise.all([deps.store.record(projectId, starting), deps.runtime.start(projectId)]);
          });
        }
        ready = await step.run("wait-ready", () => deps.runtime.waitUntilReady(projectId, deps.readyTimeoutMs));
      } catch (err) {
        // Only reached once a step has failed for good (non-retriable, or retries exhausted).
        return fail(errorMessage(err), "");
      }
      if (!ready.ready) return fail(ready.reason, ready.logTail);

      const { url, containerId } = ready;
      await step.run("record-running", async () => {
        await deps.store.record(projectId, { status: "running", reason: `${event.name}: answering HTTP`, url, containerId, logTail: null });
      });
      await step.sendEvent("emit-ready", previewReady.create({ projectId, url, containerId }));
      logger.info({ projectId, containerId, url }, "preview ready");
      return { projectId, url, containerId };
    },
  );
}
