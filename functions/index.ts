import type { Inngest } from "inngest";
import type { PreviewDeps } from "./deps.js";
import { createLaunchPreview } from "./launch-preview.js";
import { createRemovePreview } from "./remove-preview.js";
import { createStopPreview } from "./stop-preview.js";
import { createTrackIdle } from "./track-idle.js";
import { createDiagnosePreview, type DiagnosisDeps } from "./diagnose-preview.js";
import { createSweepItem } from "./sweep-item.js";
import type { SweepDeps } from "./sweep-plan.js";
import { createSweepPreviews } from "./sweep-previews.js";

export type { PreviewDeps } from "./deps.js";
export type { SweepDeps, SweepSettings } from "./sweep-plan.js";
export type { DiagnosisDeps } from "./diagnose-preview.js";

/** Every function this app serves, bound to its dependencies. */
export function createFunctions(inngest: Inngest, deps: PreviewDeps) {
  return [createLaunchPreview(inngest, deps), createStopPreview(inngest, deps), createRemovePreview(inngest, deps), createTrackIdle(inngest, deps)] as const;
}

/** The sweep's two functions (`sweep-previews` and the per-preview `sweep-item`). */
export function createSweepFunctions(inngest: Inngest, deps: PreviewDeps, sweep: SweepDeps) {
  return [createSweepPreviews(inngest, deps, sweep), createSweepItem(inngest, deps, sweep)] as const;
}

/** `diagnose-preview` (issue 9): served only when a diagnoser (an Anthropic API key) is configured. */
export function createDiagnosisFunctions(inngest: Inngest, deps: DiagnosisDeps) {
  return [createDiagnosePreview(inngest, deps)] as const;
}
