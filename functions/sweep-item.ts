/**
 * sweep-item: `previews.sweep.item` (sent by sweep-previews, one per preview) -> that preview
 * removed as an orphan, corrected or adopted (expiries are batched in sweep-previews' own
 * steps, see sweep-expire.ts; an `expire` item, as an earlier version sent them, is handled
 * here as a batch of one).
 *
 * Runs under the per-project concurrency key shared with launch, stop and remove (no step of
 * theirs runs for this project meanwhile) and a function-wide limit (`SWEEP_CONCURRENCY`:
 * bounded parallelism across projects). Every action checks again, in the same step as its
 * first write, what the plan decided on (the plan may be minutes old): nothing that changed
 * since is touched, and what was not touched is recorded as a skip with its reason.
 *
 * Steps per action:
 *   expire   expire: `expirePreviews` (sweep-expire.ts) for this one preview; a failure throws
 *            (retried, then recorded `failed` by the failure handler).
 *   orphan   verify-orphan (the project is still missing from the source, asked again for this
 *            one id; or without a source, still no row; nothing younger than SWEEP_GRACE), taking
 *            the preview (`remove`, as remove-preview) -> remove-container (only while this run
 *            holds it) -> delete-site-files (only with a project source: without one, nothing
 *            says the project is gone) -> record-removed (`removed`) -> emit-removed.
 *   correct  correct: the row still says starting/running, not updated within SWEEP_GRACE, and
 *            the container is gone or exited -> `reconcile` (row -> stopped); emit-stopped.
 *   adopt    adopt: still no row, the container is ours and its project exists -> `adopt`
 *            (running) or `adoptStopped`.
 * Each outcome goes to the audit log (`sweep_decisions`, grouped by the sweep run). A run that
 * fails for good is recorded there as `failed`; an orphan removal that took the preview is
 * recorded `failed` on the row too (`removeFailed`, as remove-preview's failure), so the
 * project is never left `removing`.
 */
import type { Inngest } from "inngest";
import * as v from "valibot";
import { previewRemoved, previewStopped, previewsSweepItem, SweepItemData } from "../inngest.config.js";
import { ONE_RUN_PER_PROJECT, PER_PROJECT, RETRIES, parseEventData, permanent, type PreviewDeps } from "./deps.js";
import { failedRunOf, recordFailure, type FailureContext } from "./failure.js";
import { countOnce } from "./metrics.js";
import type { ProjectId } from "./ports.js";
import { actionOf, expirePreviews, skip, type Outcome } from "./sweep-expire.js";
import { PASS_OF, formatAge, type SweepAction, type SweepDeps } from "./sweep-plan.js";

type Item = v.InferOutput<typeof SweepItemData>;

/** Handlers trust nothing: the event is parsed before any step. */
export function parseSweepItem(event: { name: string; data?: unknown }): Item {
  return parseEventData(SweepItemData, event.name, event.data);
}

/** Records an outcome of an item under its sweep run (idempotent). */
function recordOutcome(sweep: SweepDeps, item: Item, outcome: Outcome): Promise<void> {
  return sweep.decisions.record([
    {
      runId: item.sweepRunId,
      pass: PASS_OF[item.action],
      action: actionOf(outcome),
      projectId: item.projectId,
      reason: outcome.reason,
    },
  ]);
}

/**
 * `sweep-item-failure`: a sweep item that failed for good (out of retries, or refused for good)
 * is recorded in the audit log as `failed` with the error; an orphan removal that had taken the
 * preview is recorded `failed` on the row too (`removeFailed`), as remove-preview's failure is.
 */
export async function recordSweepItemFailure(deps: PreviewDeps, sweep: SweepDeps, ctx: FailureContext) {
  const parsed = v.safeParse(SweepItemData, ctx.event.data.event?.data);
  if (!parsed.success) return { recorded: false as const, why: "invalid event" };
  const item = parsed.output;
  const message = ctx.event.data.error?.message ?? "unknown error";
  await ctx.step.run("record-sweep-failure", () =>
    permanent(() => recordOutcome(sweep, item, { done: true, action: "failed", reason: `sweep ${item.action} failed: ${message}` })),
  );
  ctx.logger.warn({ projectId: item.projectId, action: item.action, sweepRunId: item.sweepRunId, reason: message }, "sweep item failed");
  // Counted as the item's outcome, not as a remove-preview failure (functions/metrics.ts).
  const result = item.action === "orphan" ? await recordFailure(deps, ctx, "remove", { count: false }) : { recorded: true as const, projectId: item.projectId };
  countOnce(deps.metrics, `sweep-item-failed:${failedRunOf(ctx)}`, (m) => m.sweepItemFinished(item.action, "failed"));
  return result;
}

/**
 * The actions of `sweep-item`, each one step's body, as plain functions: the function runs them
 * in its steps, and the benchmark measures them without the Inngest test harness.
 */
export function sweepActions(deps: PreviewDeps, sweep: SweepDeps) {
  const now = () => (sweep.now ?? Date.now)();

  const audit = (item: Item, outcome: Outcome) => recordOutcome(sweep, item, outcome);

  /**
   * One preview's expiry: the batch of `sweep-expire.ts` with one item (an `expire` item sent by
   * an earlier version; the benchmark and tests). `planned`: the container the plan found.
   * Throws what fails (the run is retried), instead of recording it as an outcome.
   */
  async function expire(projectId: ProjectId, runId: string, planned?: string): Promise<Outcome> {
    const { outcomes } = await expirePreviews(deps, sweep, [{ projectId, ...(planned ? { containerId: planned } : {}) }], runId, { rethrow: true });
    return outcomes[0]!;
  }

  async function correct(projectId: ProjectId, runId: string): Promise<Outcome> {
    const row = await deps.store.get(projectId);
    if (row?.status !== "starting" && row?.status !== "running") return skip(`row is ${row?.status ?? "gone"} now`);
    if (now() - row.updatedAt.getTime() < sweep.settings.graceMs) return skip(`row updated within SWEEP_GRACE ${formatAge(sweep.settings.graceMs)}`);
    const c = await sweep.inventory.inspect(projectId);
    if (c?.running) return skip(`container is ${c.state}`);
    const truth = c ? `its container is ${c.state}` : "its container is gone";
    const reason = `sweep: recorded ${row.status} but ${truth}`;
    const result = await deps.store.apply(projectId, "reconcile", { reason, claim: runId, containerId: c?.containerId ?? null, url: null });
    if (!result.applied) return skip(`row is ${result.row?.status ?? "gone"} now`);
    return { done: true, action: "corrected", reason: `${reason}: now stopped`, changed: result.changed };
  }

  async function adopt(projectId: ProjectId, runId: string): Promise<Outcome> {
    if (!sweep.projects) return skip("no project source: nothing says the project exists");
    const row = await deps.store.get(projectId);
    if (row) return skip(`has a row now (${row.status})`);
    const c = await sweep.inventory.inspect(projectId);
    if (!c) return skip("no container any more");
    const lookup = await sweep.projects.lookup([projectId]);
    if (!lookup.existing.includes(projectId)) return skip(`project ${projectId} not found in ${sweep.projects.source} any more`);
    const action = c.running ? "adopt" : "adoptStopped";
    const reason = `sweep: adopted ${c.state} container ${c.containerId.slice(0, 12)} that had no row`;
    const result = await deps.store.apply(projectId, action, { reason, claim: runId, containerId: c.containerId, url: c.running ? c.url : null });
    if (!result.applied) return skip(`has a row now (${result.row?.status ?? "?"})`);
    return { done: true, action: "adopted", reason };
  }

  async function verifyOrphan(projectId: ProjectId): Promise<{ ok: true } | { ok: false; reason: string }> {
    const at = now();
    if (sweep.projects) {
      // Asked again, for this one id: a failure throws (retried), never reads as "missing".
      const lookup = await sweep.projects.lookup([projectId]);
      if (!lookup.anyProject) return { ok: false, reason: `${sweep.projects.source} returned no project at all` };
      if (lookup.existing.includes(projectId)) return { ok: false, reason: `project ${projectId} exists` };
    } else {
      const row = await deps.store.get(projectId);
      if (row && row.status !== "removed") return { ok: false, reason: `has a row now (${row.status})` };
    }
    const c = await sweep.inventory.inspect(projectId);
    // Without a project source nothing says the project is gone: a running container stays.
    if (c?.running && !sweep.projects) return { ok: false, reason: `container is ${c.state}: never an orphan without a project source` };
    if (c && at - c.createdAt < sweep.settings.graceMs) return { ok: false, reason: `container created ${new Date(c.createdAt).toISOString()}, younger than SWEEP_GRACE ${formatAge(sweep.settings.graceMs)}` };
    if (!c) {
      const row = await deps.store.get(projectId);
      if (row && row.status !== "removed" && at - row.updatedAt.getTime() < sweep.settings.graceMs) return { ok: false, reason: `row updated within SWEEP_GRACE ${formatAge(sweep.settings.graceMs)}` };
    }
    return { ok: true };
  }

  const actions: Record<Exclude<SweepAction, "orphan">, (projectId: ProjectId, runId: string, planned?: string) => Promise<Outcome>> = { expire, correct, adopt };
  return { ...actions, verifyOrphan, audit };
}

export function createSweepItem(inngest: Inngest, deps: PreviewDeps, sweep: SweepDeps) {
  const { verifyOrphan, audit, ...ACTIONS } = sweepActions(deps, sweep);
  return inngest.createFunction(
    {
      id: "sweep-item",
      name: "Sweep one preview",
      triggers: [previewsSweepItem],
      // The per-project key shared with launch, stop and remove, and bounded parallelism.
      concurrency: [PER_PROJECT, { limit: sweep.settings.concurrency }],
      singleton: ONE_RUN_PER_PROJECT,
      retries: RETRIES,
      onFailure: (ctx: FailureContext) => recordSweepItemFailure(deps, sweep, ctx),
    },
    async ({ event, step, logger, runId }) => {
      const item = parseSweepItem(event);
      const { projectId, action } = item;
      const log = { projectId, action, sweepRunId: item.sweepRunId };
      // Every return ends the run: counted there (functions/metrics.ts), once, not once per step.
      const ended = <R extends object>(outcome: string, result: R): R => {
        countOnce(deps.metrics, `sweep-item:${runId}`, (m) => m.sweepItemFinished(action, outcome));
        return result;
      };

      if (action !== "orphan") {
        const outcome = await step.run(action, () =>
          permanent(async () => {
            const result = await ACTIONS[action](projectId, runId, item.containerId);
            await audit(item, result);
            return result;
          }),
        );
        if (outcome.done && action === "correct" && outcome.changed) await step.sendEvent("emit-stopped", previewStopped.create({ projectId }));
        logger.info({ ...log, outcome }, outcome.done ? `sweep: ${outcome.action}` : "sweep: skipped");
        return ended(actionOf(outcome), { projectId, action, ...outcome });
      }

      // orphan: as remove-preview, after checking again that the project is gone.
      const verified = await step.run("verify-orphan", () =>
        permanent(async () => {
          const check = await verifyOrphan(projectId);
          if (!check.ok) {
            const result = skip(check.reason);
            await audit(item, result);
            return { go: false as const, reason: check.reason };
          }
          const row = await deps.store.get(projectId);
          const claimed = row ? (await deps.store.apply(projectId, "remove", { reason: `sweep: ${item.reason}`, claim: runId })).applied : false;
          return { go: true as const, claimed };
        }),
      );
      if (!verified.go) {
        logger.info({ ...log, reason: verified.reason }, "sweep: orphan kept");
        return ended("skip", { projectId, action, done: false, reason: verified.reason });
      }
      const container = await step.run("remove-container", () =>
        permanent(async () => {
          // Only while this run holds the preview (or, without a row, while there still is none):
          // a launch that took the project over since owns its container now.
          const row = await deps.store.get(projectId);
          const overtaken = verified.claimed ? row?.status !== "removing" || row.claim !== runId : row !== null && row.status !== "removed";
          if (overtaken) return "overtaken" as const;
          return deps.runtime.remove(projectId);
        }),
      );
      if (container === "overtaken") {
        const result = skip("taken over by a launch meanwhile; left alone");
        await step.run("record-overtaken", () => audit(item, result));
        return ended("skip", { projectId, action, ...result });
      }
      const filesToo = sweep.projects !== null;
      if (filesToo) await step.run("delete-site-files", () => permanent(() => deps.site.remove(projectId)));
      const reason = `sweep: orphan removed (${item.reason}); container ${container}${filesToo ? ", site files deleted" : ", site files kept (no project source)"}`;
      const recorded = verified.claimed
        ? await step.run("record-removed", () =>
            permanent(async () => {
              const fields = { reason, url: null, containerId: null, logTail: null, claim: runId };
              return (await deps.store.apply(projectId, "removed", fields)).applied;
            }),
          )
        : false;
      await step.run("record-outcome", () => permanent(() => audit(item, { done: true, action: "removed", reason })));
      if (recorded) await step.sendEvent("emit-removed", previewRemoved.create({ projectId }));
      logger.info({ ...log, container, recorded }, "sweep: orphan removed");
      return ended("removed", { projectId, action, done: true, container, recorded });
    },
  );

}
