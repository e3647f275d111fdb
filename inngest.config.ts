/**
 * The Inngest side of the public contract, and nothing else: the app id and every event this
 * service consumes or emits, each with its valibot schema. Event names and function ids are
 * public: never rename. (The client is built from the config in `runtime/inngest-client.ts`.)
 */
import { eventType } from "inngest";
import * as v from "valibot";
import { DIAGNOSIS_MAX_CHARS } from "./functions/diagnosis-prompt.js";
import { ProjectIdSchema } from "./functions/project-id.js";

export const APP_ID = "previews";

/** `{ projectId }`: the payload of every consumed event. */
export const ProjectEventData = v.object({ projectId: ProjectIdSchema });

// Consumed
export const pipelineStep7 = eventType("pipeline.step7", { schema: ProjectEventData });
export const previewRequested = eventType("preview.requested", { schema: ProjectEventData });
export const previewIdle = eventType("preview.idle", { schema: ProjectEventData });
export const previewClosed = eventType("preview.closed", { schema: ProjectEventData });
export const projectDeleted = eventType("project.deleted", { schema: ProjectEventData });
/** The preview was used (forward-auth request or UI heartbeat); at most once per project per ACTIVITY_EVENT_INTERVAL. */
export const previewActivity = eventType("preview.activity", { schema: ProjectEventData });

// Emitted
export const previewReady = eventType("preview.ready", {
  schema: v.object({ projectId: ProjectIdSchema, url: v.string(), containerId: v.string() }),
});
export const previewStopped = eventType("preview.stopped", { schema: ProjectEventData });
export const previewRemoved = eventType("preview.removed", { schema: ProjectEventData });
export const PreviewFailedData = v.object({ projectId: ProjectIdSchema, reason: v.string(), logTail: v.string() });
export const previewFailed = eventType("preview.failed", { schema: PreviewFailedData });
/** diagnose-preview's answer for a failed preview: plain text for a person, never an instruction. */
export const previewDiagnosed = eventType("preview.diagnosed", {
  schema: v.object({ projectId: ProjectIdSchema, diagnosis: v.pipe(v.string(), v.maxLength(DIAGNOSIS_MAX_CHARS)) }),
});

// The sweep (sweep-previews). Consumed: run a sweep now; `dryRun: true` plans and reports,
// changing nothing.
export const SweepRequestData = v.object({ dryRun: v.optional(v.boolean("dryRun must be true or false")) });
export const previewsSweepRequested = eventType("previews.sweep.requested", { schema: SweepRequestData });

/**
 * Emitted by `sweep-previews` and consumed by `sweep-item`: one preview the sweep decided to act
 * on. One event per preview, so each removal runs under the per-project concurrency key.
 *   expire   remove the container of a preview stopped longer than STOPPED_RETENTION
 *   orphan   remove the preview (container, site folder, row) of a project that no longer exists
 *   correct  a row saying starting/running whose container is gone or exited -> stopped
 *   adopt    a managed container without a row, whose project exists -> a row
 */
export const SWEEP_ACTIONS = ["expire", "orphan", "correct", "adopt"] as const;
export const SweepItemData = v.object({
  projectId: ProjectIdSchema,
  action: v.picklist(SWEEP_ACTIONS, `action must be one of ${SWEEP_ACTIONS.join(", ")}`),
  /** The sweep run that decided: the audit log groups a sweep's decisions and outcomes by it. */
  sweepRunId: v.pipe(v.string(), v.minLength(1), v.maxLength(200)),
  /** Why the sweep decided it (for the audit log and the dashboard). */
  reason: v.pipe(v.string(), v.maxLength(1_000)),
  /** expire: the container the plan found (ours, stopped, older than SWEEP_GRACE); only it is removed. */
  containerId: v.optional(v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/, "containerId must be a full container id"))),
});
export const previewsSweepItem = eventType("previews.sweep.item", { schema: SweepItemData });
