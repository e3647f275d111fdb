import type { Inngest } from "inngest";
import type { PreviewDeps } from "./deps.js";
import { createLaunchPreview } from "./launch-preview.js";
import { createRemovePreview } from "./remove-preview.js";
import { createStopPreview } from "./stop-preview.js";
import { createTrackIdle } from "./track-idle.js";

export type { PreviewDeps } from "./deps.js";

/** Every function this app serves, bound to its dependencies. */
export function createFunctions(inngest: Inngest, deps: PreviewDeps) {
  return [createLaunchPreview(inngest, deps), createStopPreview(inngest, deps), createRemovePreview(inngest, deps), createTrackIdle(inngest, deps)] as const;
}
