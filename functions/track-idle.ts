/**
 * track-idle: `preview.activity` / `preview.ready` -> `preview.idle` once a preview has not been
 * used for IDLE_TIMEOUT.
 *
 * Debounced per project for IDLE_TIMEOUT (`debounce: { key: "event.data.projectId", period }`):
 * every `preview.activity` (forward-auth requests and UI heartbeats, coalesced by the host to at
 * most one per project per ACTIVITY_EVENT_INTERVAL, the last one sent after the last use) pushes
 * the run back, so it runs only after a whole IDLE_TIMEOUT without any. `preview.ready` is a
 * trigger too: the clock starts when a preview becomes ready, so a preview that nobody ever opens
 * also stops after IDLE_TIMEOUT (and in `port` routing, without forward-auth, the heartbeat and
 * this clock are what stop idle previews).
 *
 * Steps:
 *   check-idle   re-read the preview: only one that is still `running` and whose last use (its
 *                `last_activity_at`, or when it became ready, whichever is later) is at least
 *                IDLE_TIMEOUT ago counts as idle. Anything else (stopped, removed, used since:
 *                an event was lost or the flush came late) ends the run with nothing sent.
 *   emit-idle    `preview.idle`; stop-preview does the rest (idempotent, duplicates skipped).
 *
 * Writes nothing, so it needs no per-project concurrency slot; a late or duplicated run re-reads
 * and converges. Lost events (a crash between a use and its flush) are the sweep's backstop.
 */
import type { Inngest } from "inngest";
import { previewActivity, previewIdle, previewReady } from "../inngest.config.js";
import { RETRIES, formatDuration, parseProjectEvent, permanent, type PreviewDeps } from "./deps.js";
import { lastUse } from "./ports.js";

/** Default IDLE_TIMEOUT. */
const DEFAULT_IDLE_TIMEOUT_MS = 3_600_000;

/**
 * Slack for the clocks of the host that flushed the activity and of the database: a use that
 * happened this close to the end of the window still counts as inside it... but not more.
 */
const CLOCK_SKEW_MS = 1_000;

/** Inngest's debounce period: whole seconds (the SDK takes a time string). */
const debouncePeriod = (ms: number): `${number}s` => `${Math.max(1, Math.ceil(ms / 1000))}s`;

export function createTrackIdle(inngest: Inngest, deps: PreviewDeps) {
  const idleMs = deps.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  return inngest.createFunction(
    {
      id: "track-idle",
      name: "Track idle preview",
      triggers: [previewActivity, previewReady],
      debounce: { key: "event.data.projectId", period: debouncePeriod(idleMs) },
      retries: RETRIES,
    },
    async ({ event, step, logger }) => {
      const { projectId } = parseProjectEvent(event);
      const verdict = await step.run("check-idle", () =>
        permanent(async () => {
          const row = await deps.store.get(projectId);
          if (row?.status !== "running") return { idle: false as const, why: `status ${row?.status ?? "none"}` };
          // The row carries its last activity; `updatedAt` of a running row is when it became ready.
          const quietMs = Date.now() - lastUse(row);
          if (quietMs + CLOCK_SKEW_MS < idleMs) return { idle: false as const, why: `used ${formatDuration(Math.max(0, quietMs))} ago` };
          return { idle: true as const, quietMs };
        }),
      );
      if (!verdict.idle) {
        logger.info({ projectId, why: verdict.why }, "preview not idle; nothing to do");
        return { projectId, idle: false, why: verdict.why };
      }
      await step.sendEvent("emit-idle", previewIdle.create({ projectId }));
      logger.info({ projectId, quietMs: verdict.quietMs }, "preview idle");
      return { projectId, idle: true };
    },
  );
}
