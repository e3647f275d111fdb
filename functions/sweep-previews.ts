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
 *   dispatch-N   one `previews.sweep.item` event per orphan, correction and adoption, in chunks
 *                of DISPATCH_CHUNK per step; each event's id is derived from this run, the action
 *                and the project, so a replayed step's events are deduplicated by Inngest.
 *   stop-idle-N  `preview.idle` for running previews unused for longer than IDLE_TIMEOUT (a lost
 *                activity event or debounce), DISPATCH_CHUNK per step; stop-preview does the rest.
 *   expire-N     the expired previews, EXPIRE_CHUNK per step (sweep-expire.ts): rows read again
 *                in one statement, containers removed SWEEP_CONCURRENCY at a time, the rows
 *                recorded in one statement, every outcome in the audit log (`expireBatch`).
 *                Returns its counts and the first NOTES_SHOWN previews it left or failed on.
 * A dry run records and sends nothing and returns the plan: nothing changes.
 * Returns the summary: counts per pass and action (for `expired`, also what the expire steps
 * did: `removed`, `left`, `failed`), the guards that tripped, what was deferred.
 *
 * Two ways to act, chosen per pass:
 *   - Orphans, corrections and adoptions fan out by events, one `sweep-item` run per preview:
 *     each must run under the per-project concurrency key shared with launch, stop and remove
 *     (so it never interleaves with a step of theirs), and that key is read from the triggering
 *     event's `projectId`. It also isolates failures (one that fails is retried on its own).
 *   - Expiries, the bulk of any sweep (every preview stopped a day), are batched in this run's
 *     own steps: the per-project run cost three statements per preview, which on a busy
 *     engine host made the sweep 1.2-1.4x the raw removals where batches cost ~1.0x
 *     (`npm run bench:sweep`). Why a batch is safe without the per-project key is in
 *     sweep-expire.ts (in short: rows read again, no forced removal, a launch that loses its
 *     stopped container re-creates it, and rows changed since the read are not written).
 * Limits at 10,000 previews: this run has at most 1 + 20 + 20 + 40 = 81 steps (Inngest allows
 * 1,000); its largest step output is the plan (at most MAX_ITEMS_PER_RUN items of ~250 bytes:
 * 2.3 MB measured at 10,000, of the 4 MB allowed); each dispatch request carries 500 events
 * (~220 KB), and each `sweep-item` run has at most 6 steps. `SWEEP_CONCURRENCY` bounds how many
 * items act at once (a function-level concurrency limit next to the per-project key, and the
 * parallelism inside an expire step).
 *
 * Only one sweep runs at a time (`singleton`, skip): a cron tick or request during a sweep is
 * dropped; the next one catches up.
 */
import { cron, type Inngest } from "inngest";
import { previewIdle, previewsSweepItem, previewsSweepRequested, SweepRequestData } from "../inngest.config.js";
import { RETRIES, parseEventData, permanent, type PreviewDeps } from "./deps.js";
import { countOnce } from "./metrics.js";
import { strangerWarning, type SweepRunCounts } from "./ports.js";
import { EXPIRE_CHUNK, actionOf, expireBatch, type ExpiryCounts } from "./sweep-expire.js";
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

      const expiring = plan.items.filter((item) => item.action === "expire");
      const dispatched = plan.items.filter((item) => item.action !== "expire");
      for (let i = 0; i < dispatched.length; i += DISPATCH_CHUNK) {
        const chunk = dispatched.slice(i, i + DISPATCH_CHUNK);
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
      const expiry: ExpiryCounts = { removed: 0, left: 0, failed: 0 };
      for (let i = 0; i < expiring.length; i += EXPIRE_CHUNK) {
        const n = i / EXPIRE_CHUNK + 1;
        const done = await step.run(`expire-${n}`, () =>
          permanent(async () => {
            const chunk = expiring.slice(i, i + EXPIRE_CHUNK);
            const { outcomes, ...counts } = await expireBatch(deps, sweep, chunk, runId);
            outcomes.forEach((o, k) => {
              if (actionOf(o) === "failed") logger.warn({ projectId: chunk[k]!.projectId, sweepRunId: runId, reason: o.reason }, "sweep: expiry failed");
            });
            // Counted where the step's work ends: once per preview (a replayed step is memoized).
            countOnce(deps.metrics, `sweep-expire:${runId}:${n}`, (m) => outcomes.forEach((o) => m.sweepItemFinished("expire", actionOf(o))));
            return counts;
          }),
        );
        expiry.removed += done.removed;
        expiry.left += done.left;
        expiry.failed += done.failed;
      }
      const result = { ...summary, expired: { ...summary.expired, ...expiry } };
      logger.info({ summary: result, sweepRunId: runId }, "sweep done: expired previews removed, other items dispatched");
      // Where the run ends (functions/metrics.ts): once, not once per step.
      countOnce(deps.metrics, `sweep:${runId}`, (m) => m.sweepFinished(sweepCounts(summary)));
      return result;
    },
  );
}
