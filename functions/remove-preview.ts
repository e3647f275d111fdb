/**
 * remove-preview: `project.deleted` -> container removed, site folder deleted, row `removed`,
 * `preview.removed`.
 *
 * Steps: record-removing (`remove`) -> remove-container -> delete-site-files -> delete-objects
 * (object storage only: every object under `projects/{id}/`, its archived logs included, paging
 * past 1,000 keys) -> record-removed (`removed`) -> emit-removed. Nothing cancels a remove;
 * duplicates are skipped while one is in flight. A project that never had a preview has no row
 * and gets none, and a duplicate `project.deleted` leaves the `removed` row as it is: their
 * container and files (if any) are still removed, and nothing is recorded or emitted. A remove that fails for good (for example a
 * container this service does not own holds the name) is recorded by `remove-preview-failure`
 * (`removeFailed`: row -> failed, `preview.failed`), so the project is not left `removing`.
 */
import type { Inngest } from "inngest";
import { previewRemoved, projectDeleted } from "../inngest.config.js";
import { ONE_RUN_PER_PROJECT, PER_PROJECT, RETRIES, parseProjectEvent, permanent, type PreviewDeps } from "./deps.js";
import { recordFailure, type FailureContext } from "./failure.js";
import { countOnce } from "./metrics.js";
import type { ActionOutcome } from "./ports.js";

export function createRemovePreview(inngest: Inngest, deps: PreviewDeps) {
  return inngest.createFunction(
    {
      id: "remove-preview",
      name: "Remove preview",
      triggers: [projectDeleted],
      concurrency: PER_PROJECT,
      singleton: ONE_RUN_PER_PROJECT,
      retries: RETRIES,
      onFailure: (ctx: FailureContext) => recordFailure(deps, ctx, "remove"),
    },
    async ({ event, step, logger, runId }) => {
      const { projectId } = parseProjectEvent(event);
      // Every return ends the run: counted there (functions/metrics.ts), once, not once per step.
      const ended = <R extends object>(counted: ActionOutcome, result: R): R => {
        countOnce(deps.metrics, `remove:${runId}`, (m) => m.removeFinished(counted));
        return result;
      };
      const reason = `${event.name}: project deleted`;

      const claimed = await step.run("record-removing", () =>
        permanent(async () => (await deps.store.apply(projectId, "remove", { reason, claim: runId })).applied),
      );
      // Container and files go whatever the row says (a project without a preview may have files).
      const outcome = await step.run("remove-container", () => permanent(() => deps.runtime.remove(projectId)));
      await step.run("delete-site-files", () => permanent(() => deps.site.remove(projectId)));
      const objects = deps.objects;
      if (objects) {
        // The project is gone: so are its stored files and logs. Idempotent (none left: 0).
        const deleted = await step.run("delete-objects", () => permanent(() => objects.removeAll(projectId)));
        logger.info({ projectId, objects: deleted.removed, location: objects.location }, "project objects deleted");
      }
      if (!claimed) {
        // No preview recorded, or already removed (a duplicate project.deleted): nothing to announce.
        logger.info({ projectId, outcome }, "no preview to record as removed; container and files removed");
        return ended("noop", { projectId, outcome, recorded: false });
      }
      const removed = await step.run("record-removed", () =>
        permanent(async () => {
          const fields = { reason: `${reason} (container ${outcome})`, url: null, containerId: null, logTail: null };
          return (await deps.store.apply(projectId, "removed", { ...fields, claim: runId })).applied;
        }),
      );
      if (!removed) {
        logger.info({ projectId, outcome }, "remove overtaken; nothing recorded");
        return ended("superseded", { projectId, outcome, recorded: false });
      }
      await step.sendEvent("emit-removed", previewRemoved.create({ projectId }));
      logger.info({ projectId, outcome }, "preview removed");
      return ended("done", { projectId, outcome, recorded: true });
    },
  );
}
