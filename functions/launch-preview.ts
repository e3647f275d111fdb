/**
 * launch-preview: `pipeline.step7` / `preview.requested` -> a running preview and `preview.ready`.
 *
 * Steps (each idempotent; a replay after a crash between any two converges):
 *   check-site -> ensure-container (records `starting`) -> [start-container] -> wait-ready
 *   -> record-running -> emit-ready
 * A preview that does not come up (no site folder, process exits, no HTTP answer in time, or a
 * step that failed for good) is stopped, recorded `failed` with the reason and log tail,
 * `preview.failed` is emitted, and the run fails without further retries.
 *
 * A later stop or remove of the project cancels the run. Should one still slip in between two
 * steps, the writes below are compare-and-sets that refuse to overwrite it, and the run ends as
 * `superseded` without emitting anything.
 */
import { NonRetriableError, type Inngest } from "inngest";
import { pipelineStep7, previewFailed, previewReady, previewRequested } from "../inngest.config.js";
import { PER_PROJECT, RETRIES, errorMessage, sameProject, type PreviewDeps } from "./deps.js";
import type { PreviewStatus } from "./ports.js";

/**
 * A launch's later writes do not overwrite these: a stop or remove came after it began. (The
 * launch itself moves a stopped preview to `starting` first, so `stopped` here means a stop
 * finished while the launch was between steps.)
 */
const OVERTAKEN_BY: readonly PreviewStatus[] = ["stopping", "stopped", "removing", "removed"];
/** Before the launch has claimed the preview, only a removal stops it. */
const BEING_REMOVED: readonly PreviewStatus[] = ["removing", "removed"];

export function createLaunchPreview(inngest: Inngest, deps: PreviewDeps) {
  return inngest.createFunction(
    {
      id: "launch-preview",
      name: "Launch preview",
      triggers: [pipelineStep7, previewRequested],
      concurrency: PER_PROJECT,
      cancelOn: [sameProject("preview.idle"), sameProject("preview.closed"), sameProject("project.deleted")],
      retries: RETRIES,
    },
    async ({ event, step, logger }) => {
      const { projectId } = event.data;
      const superseded = () => {
        logger.info({ projectId }, "launch overtaken by a stop or remove");
        return { projectId, superseded: true as const };
      };

      /** `claimed`: this run recorded `starting` and started a container that may still run. */
      const fail = async (reason: string, logTail: string, claimed: boolean) => {
        const recorded = await step.run("record-failed", async () => {
          // A preview that runs but does not answer must not run on unattended.
          if (claimed) await deps.runtime.stop(projectId);
          const row = await deps.store.record(projectId, { status: "failed", reason, logTail }, { unless: claimed ? OVERTAKEN_BY : BEING_REMOVED });
          return row !== null;
        });
        if (!recorded) return superseded();
        await step.sendEvent("emit-failed", previewFailed.create({ projectId, reason, logTail }));
        logger.warn({ projectId, reason }, "preview failed to launch");
        throw new NonRetriableError(`preview ${projectId} failed to launch: ${reason}`);
      };

      const site = await step.run("check-site", () => deps.site.check(projectId));
      if (!site.ok) return fail(site.reason, "", false);

      let ready;
      let claimed = false;
      try {
        // One step, so no other step of this project runs between the check and the create.
        const container = await step.run("ensure-container", async () => {
          const row = await deps.store.get(projectId);
          if (row?.status === "removing") return null; // a remove is under way: leave it alone
          const ensured = await deps.runtime.ensureContainer(projectId);
          // A running, recorded preview: nothing to record (launch is a no-op that returns its URL).
          if (!(ensured.running && row?.status === "running")) {
            const starting = { status: "starting", reason: `${event.name}: starting container`, containerId: ensured.containerId, logTail: null } as const;
            await deps.store.record(projectId, starting);
          }
          return ensured;
        });
        if (!container) return superseded();
        claimed = true;
        if (!container.running) await step.run("start-container", () => deps.runtime.start(projectId));
        ready = await step.run("wait-ready", () => deps.runtime.waitUntilReady(projectId, deps.readyTimeoutMs));
      } catch (err) {
        // Only reached once a step has failed for good (non-retriable, or retries exhausted).
        return fail(errorMessage(err), "", claimed);
      }
      if (!ready.ready) return fail(ready.reason, ready.logTail, true);

      const { url, containerId } = ready;
      const recorded = await step.run("record-running", async () => {
        const running = { status: "running", reason: `${event.name}: answering HTTP`, url, containerId, logTail: null } as const;
        return (await deps.store.record(projectId, running, { unless: OVERTAKEN_BY })) !== null;
      });
      if (!recorded) return superseded();
      await step.sendEvent("emit-ready", previewReady.create({ projectId, url, containerId }));
      logger.info({ projectId, containerId, url }, "preview ready");
      return { projectId, url, containerId };
    },
  );
}
