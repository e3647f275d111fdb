/**
 * sweep-previews: cron (`SWEEP_CRON`, default every 15 minutes) or `previews.sweep.requested`
 * (`{ dryRun?: boolean }`) -> expired and orphaned previews removed, rows reconciled with Docker.
 *
 * Steps:
 *   plan         read every row, list this instance's managed containers (one labelled listing),
 *                ask the project source about those projects, decide (`sweep-plan.ts`: passes,
 *                guards, grace), and record every decision in the audit log (`sweep_decisions`):
 *                each planned removal, correction and adoption, each skip and guard trip with its
 *                reason, and the run's summary (idempotent: a retried step records nothing twice).
 *                Its output is the items to dispatch, the guards, the counts and the first
 *                SKIPS_SHOWN skips: bounded whatever the number of skips. Containers on the
 *                preview network that are neither ours nor trusted peers are logged and recorded
 *                as `warn` decisions (review F2), never touched.
 *   dispatch-N   one `previews.sweep.item` event per preview, in chunks of DISPATCH_CHUNK per
 *                step; each event's id is derived from this run, the action and the project, so
 *                a replayed step's events are deduplicated by Inngest.
 *   stop-idle-N  `preview.idle` for running previews unused for longer than IDLE_TIMEOUT (a lost
 *                activity event or debounce), DISPATCH_CHUNK per step; stop-preview does the rest.
 * A dry run records and sends nothing and returns the plan: nothing changes.
 * Returns the summary: counts per pass and action, the guards that tripped, what was deferred.
 *
 * Fan-out by events, not by batched steps: every removal must run under the per-project
 * concurrency key shared with launch, stop and remove (so it never interleaves with a step of
 * theirs), and that key is read from the triggering event's `projectId`: one event per preview
 * is what gives each removal its key. It also isolates failures (one container that cannot be
 * removed fails its own run, retried on its own, never the sweep) and bounds every run at 10,000
 * previews: this run has 1 + ceil(items / 500) <= 21 steps (Inngest allows 1,000), its largest
 * step output is the plan (at most MAX_ITEMS_PER_RUN items of ~250 bytes: 2.3 MB measured at
 * 10,000, of the 4 MB allowed), each dispatch request carries 500 events (~220 KB), and each
 * `sweep-item` run has at most 6 steps. `SWEEP_CONCURRENCY` bounds how many items act at once
 * (a function-level concurrency limit next to the per-project key).
 *
 * Only one sweep runs at a time (`singleton`, skip): a cron tick or request during a sweep is
 * dropped; the next one catches up.
 */
import { cron, type Inngest } from "inngest";
import { previewIdle, previewsSweepItem, previewsSweepRequested, SweepRequestData } from "../inngest.config.js";
import { RETRIES, parseEventData, permanent, type PreviewDeps } from "./deps.js";
import { countOnce } from "./metrics.js";
import { strangerWarning, type SweepRunCounts } from "./ports.js";
import { planDecisions, planSweep, summarize, type SweepDeps, type SweepPlan, type SweepSummary } from "./sweep-plan.js";

/** Events per dispatch step (one send request). */
export const DISPATCH_CHUNK = 500;
/** Skips listed in the plan step's output and a dry run's answer (all are in the audit log). */
export const SKIPS_SHOWN = 100;

/** The request's `dryRun`; a cron tick is never a dry run. Invalid data fails before any step. */
export function parseSweepRequest(event: { name: string; data?: unknown }): { dryRun: boolean } {
  if (event.name !== previewsSweepRequested.name) return { dryRun: false };
  return { dryRun: parseEventData(SweepRequestData, event.name, event.data ?? {}).dryRun === true };
}

/** A run's summary as metrics count it: decisions per pass and action, and the guards that tripped. */
export function sweepCounts(summary: SweepSummary): SweepRunCounts {
  const { expired, orphans, reconcile, idle } = summary;
  return {
    dryRun: summary.dryRun,
    decisions: [
      { pass: "expired", action: "remove", count: expired.remove },
      { pass: "expired", action: "skip", count: expired.skip },
      { pass: "orphans", action: "remove", count: orphans.remove },
      { pass: "orphans", action: "skip", count: orphans.skip },
      { pass: "reconcile", action: "correct", count: reconcile.correct },
      { pass: "reconcile", action: "adopt", count: reconcile.adopt },
      { pass: "reconcile", action: "skip", count: reconcile.skip },
      { pass: "idle", action: "stop", count: idle.stop },
    ],
    guards: [...(orphans.guard !== null ? ["orphans"] : []), ...(reconcile.guard !== null ? ["reconcile"] : [])],
  };
}

/** The id of the item event a run sends for a project: the same on every replay of the run. */
export const itemEventId = (sweepRunId: string, action: string, projectId: string) => `sweep-${sweepRunId}-${action}-${projectId}`;

export function createSweepPreviews(inngest: Inngest, deps: PreviewDeps, sweep: SweepDeps) {
  return inngest.createFunction(
    {
      id: "sweep-previews",
      name: "Sweep previews",
      triggers: [cron(sweep.settings.cron), previewsSweepRequested],
      singleton: { mode: "skip" },
      retries: RETRIES,
    },
    async ({ event, step, logger, runId }) => {
      const { dryRun } = parseSweepRequest(event);
      const plan = await step.run("plan", () =>
        permanent(async () => {
          const full: SweepPlan = await planSweep(deps.store, sweep);
          if (!dryRun) await sweep.decisions.record(planDecisions(full, runId));
          const { skipped, ...rest } = full;
          return { ...rest, summary: summarize(full, dryRun), skipped: skipped.slice(0, SKIPS_SHOWN) };
        }),
      );
      const { summary } = plan;
      if (dryRun) {
        logger.info({ summary }, "sweep dry run: nothing changed");
        countOnce(deps.metrics, `sweep:${runId}`, (m) => m.sweepFinished(sweepCounts(summary)));
        return { ...summary, items: plan.items, skipped: plan.skipped, guards: plan.guards };
      }
      // Strangers on the preview network (review F2): reported, never touched.
      for (const s of plan.strangers?.found ?? []) logger.warn({ network: plan.strangers!.network, containerId: s.containerId, name: s.name, address: s.address, sweepRunId: runId }, strangerWarning(plan.strangers!.network, s));
      if (plan.strangers?.error) logger.warn({ network: plan.strangers.network, err: plan.strangers.error, sweepRunId: runId }, "could not list the containers on the preview network");
      for (const guard of plan.guards) logger.error({ pass: guard.pass, reason: guard.reason, sweepRunId: runId }, "sweep guard tripped: pass skipped");

      for (let i = 0; i < plan.items.length; i += DISPATCH_CHUNK) {
        const chunk = plan.items.slice(i, i + DISPATCH_CHUNK);
        await step.sendEvent(
          `dispatch-${i / DISPATCH_CHUNK + 1}`,
          chunk.map((item) => previewsSweepItem.create({ ...item, sweepRunId: runId }, { id: itemEventId(runId, item.action, item.projectId) })),
        );
      }
      for (let i = 0; i < plan.idle.length; i += DISPATCH_CHUNK) {
        await step.sendEvent(
          `stop-idle-${i / DISPATCH_CHUNK + 1}`,
          plan.idle.slice(i, i + DISPATCH_CHUNK).map((projectId) => previewIdle.create({ projectId }, { id: itemEventId(runId, "idle", projectId) })),
        );
      }
      logger.info({ summary, sweepRunId: runId }, "sweep planned and dispatched");
      // Where the run ends (functions/metrics.ts): once, not once per dispatch step.
      countOnce(deps.metrics, `sweep:${runId}`, (m) => m.sweepFinished(sweepCounts(summary)));
      return summary;
    },
  );
}
