/**
 * The Inngest side of the public contract: the app id and every event this service consumes or
 * emits, each with its valibot schema. Event names and function ids are public: never rename.
 */
import { Inngest, eventType, type Logger } from "inngest";
import * as v from "valibot";
import { ProjectIdSchema } from "./functions/project-id.js";
import type { Config } from "./runtime/config.js";

export const APP_ID = "previews";

const ProjectEvent = v.object({ projectId: ProjectIdSchema });

// Consumed
export const pipelineStep7 = eventType("pipeline.step7", { schema: ProjectEvent });
export const previewRequested = eventType("preview.requested", { schema: ProjectEvent });
export const previewIdle = eventType("preview.idle", { schema: ProjectEvent });
export const previewClosed = eventType("preview.closed", { schema: ProjectEvent });
export const projectDeleted = eventType("project.deleted", { schema: ProjectEvent });

// Emitted
export const previewReady = eventType("preview.ready", {
  schema: v.object({ projectId: ProjectIdSchema, url: v.string(), containerId: v.string() }),
});
export const previewStopped = eventType("preview.stopped", { schema: ProjectEvent });
export const previewRemoved = eventType("preview.removed", { schema: ProjectEvent });
export const previewFailed = eventType("preview.failed", {
  schema: v.object({ projectId: ProjectIdSchema, reason: v.string(), logTail: v.string() }),
});

/**
 * Builds the client from the parsed config. Everything the SDK would otherwise read from
 * `INNGEST_*` variables is passed explicitly, so `runtime/config.ts` stays the one source.
 */
export function createInngest(config: Config["inngest"], logger?: Logger): Inngest {
  return new Inngest({
    id: APP_ID,
    isDev: config.dev !== false,
    ...(typeof config.dev === "string" ? { baseUrl: config.dev } : {}),
    ...(config.baseUrl ? { baseUrl: config.baseUrl } : {}),
    ...(config.eventKey ? { eventKey: config.eventKey } : {}),
    ...(config.signingKey ? { signingKey: config.signingKey } : {}),
    ...(config.signingKeyFallback ? { signingKeyFallback: config.signingKeyFallback } : {}),
    ...(config.env ? { env: config.env } : {}),
    ...(logger ? { logger } : {}),
    checkpointing: config.checkpointing,
  });
}
