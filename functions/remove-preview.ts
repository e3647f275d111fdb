/**
 * remove-preview: `project.deleted` -> container removed, site folder deleted, row `removed`,
 * `preview.removed`. Succeeds on a project that never had a preview (its files are still
 * deleted, and no row is created).
 */
import type { Inngest } from "inngest";
import { previewRemoved, projectDeleted } from "../inngest.config.js";
import { PER_PROJECT, RETRIES, type PreviewDeps } from "./deps.js";
import { PREVIEW_STATUSES } from "./ports.js";

/** Every status but `removed`: a removed row is left as it is (no new audit event). */
const REMOVABLE = PREVIEW_STATUSES.filter((s) => s !== "removed");

export function createRemovePreview(inngest: Inngest, deps: PreviewDeps) {
  return inngest.createFunction(
    {
      id: "remove-preview",
      name: "Remove preview",
      triggers: [projectDeleted],
      concurrency: PER_PROJECT,
      retries: RETRIES,
    },
    async ({ event, step, logger }) => {
      const { projectId } = event.data;
      const reason = `${event.name}: project deleted`;

      await step.run("record-removing", async () => {
        await deps.store.record(projectId, { status: "removing", reason }, { from: REMOVABLE });
      });
      const outcome = await step.run("remove-container", () => deps.runtime.remove(projectId));
      await step.run("delete-site-files", () => deps.site.remove(projectId));
      await step.run("record-removed", async () => {
        await deps.store.record(
          projectId,
          { status: "removed", reason: `${reason} (container ${outcome})`, url: null, containerId: null, logTail: null },
          { from: REMOVABLE },
        );
      });
      await step.sendEvent("emit-removed", previewRemoved.create({ projectId }));
      logger.info({ projectId, outcome }, "preview removed");
      return { projectId, outcome };
    },
  );
}
