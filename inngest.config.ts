/**
 * The Inngest side of the public contract, and nothing else: the app id and every event this
 * service consumes or emits, each with its valibot schema. Event names and function ids are
 * public: never rename. (The client is built from the config in `runtime/inngest-client.ts`.)
 */
import { eventType } from "inngest";
import * as v from "valibot";
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
export const previewFailed = eventType("preview.failed", {
  schema: v.object({ projectId: ProjectIdSchema, reason: v.string(), logTail: v.string() }),
});
