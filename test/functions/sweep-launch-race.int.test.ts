/**
 * The sweep's expiry batches run without the per-project concurrency key (sweep-expire.ts), so
 * they can meet a launch of the same preview. Real engine and Postgres; hooks only order the
 * calls (found by the attack review of the batched expiry):
 *   - a launch whose start-container lands while the batch's removal of the reused stopped
 *     container is in progress (the engine answers 409 "marked for removal" or 404 "network not
 *     found", not "no such container") ends ready with a new container;
 *   - a removal already in progress elsewhere is an `absent` outcome for the expiry, not a failure.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFunctions, type PreviewDeps } from "../../functions/index.js";
import type { PreviewInventory, PreviewRuntime, ProjectId } from "../../functions/ports.js";
import { expireBatch } from "../../functions/sweep-expire.js";
import type { SweepDeps } from "../../functions/sweep-plan.js";
import { failureFunctions, runLifecycle } from "../helpers/lifecycle-run.js";
import { HOUR, createSweepTestEnv, type SweepTestEnv } from "../helpers/sweep-env.js";

let env: SweepTestEnv;
beforeAll(async () => {
  env = await createSweepTestEnv({ settings: { graceMs: 0 } });
});
afterAll(async () => {
  await env?.cleanup();
});

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
function latch() {
  let open!: () => void;
  const p = new Promise<void>((r) => (open = r));
  return { p, open };
}
const exists = (id: string) =>
  env.docker.docker
    .getContainer(id)
    .inspect()
    .then(
      () => true,
      () => false,
    );

function launchWith(runtime: PreviewRuntime, projectId: string) {
  const deps: PreviewDeps = { ...env.deps, runtime };
  const [fn] = createFunctions(env.inngest, deps);
  return runLifecycle(fn!, failureFunctions(env.inngest, deps), "pipeline.step7", { projectId });
}

/** The sweep's inventory with `removeStopped` wrapped. */
function sweepWith(removeStopped: PreviewInventory["removeStopped"]): SweepDeps {
  const inventory = env.sweepDeps.inventory;
  return { ...env.sweepDeps, inventory: { list: () => inventory.list(), inspect: (p) => inventory.inspect(p), removeStopped } };
}

describe("an expiry batch meets a launch of the same preview", () => {
  // Delays between the removal's start and the launch's start: the engine's answer differs.
  it.each([0, 1, 3])("start-container during the batch's removal of the reused container (start %i ms after): the launch ends ready with a new container", async (delay) => {
    const id = await env.stoppedPreview("race");
    await env.backdateStop(id, 25 * HOUR);
    const planned = (await env.store.get(id))!.containerId!;

    const launchAtStart = latch();
    const removalBegun = latch();
    const batchAtRemoval = latch();
    const inventory = env.sweepDeps.inventory;
    const sweep = sweepWith(async (p, c, o) => {
      batchAtRemoval.open();
      await launchAtStart.p; // the launch claimed and reused the stopped container meanwhile
      const removal = inventory.removeStopped(p, c, o);
      setImmediate(removalBegun.open);
      return removal;
    });
    const real = env.deps.runtime;
    const runtime: PreviewRuntime = {
      ensureContainer: (p: ProjectId) => real.ensureContainer(p),
      start: async (p, site) => {
        launchAtStart.open();
        await removalBegun.p;
        await sleep(delay);
        return real.start(p, site);
      },
      probeReady: (p, ms, s) => real.probeReady(p, ms, s),
      logTail: (p) => real.logTail(p),
      stop: (p) => real.stop(p),
      remove: (p) => real.remove(p),
      ping: () => real.ping(),
    };
    const runId = `race-${Math.random().toString(36).slice(2)}`;
    const batch = expireBatch(env.deps, sweep, [{ projectId: id, containerId: planned }], runId);
    await batchAtRemoval.p; // the batch has read the row (stopped)
    const launched = await launchWith(runtime, id);
    const done = await batch;

    expect(launched.error).toBeUndefined();
    const row = await env.store.get(id);
    expect(row).toMatchObject({ status: "running", containerId: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(row!.containerId).not.toBe(planned);
    expect(await exists(planned)).toBe(false);
    expect((await env.docker.docker.getContainer(`preview-${id}`).inspect()).State.Running).toBe(true);
    // The batch removed the old container and says it did not write the launched row.
    expect(done).toMatchObject({ removed: 1, failed: 0 });
    const audit = await env.decisions.list({ runId, projectId: id });
    expect(audit.map((d) => [d.action, d.reason])).toEqual([["removed", expect.stringMatching(/; row not recorded \(now (starting|running)\)$/)]]);
  }, 60_000);

  it("a removal already in progress (remove-preview, a re-create of an outdated spec) is `absent` for the expiry, not a failure", async () => {
    const id = await env.stoppedPreview("twice");
    await env.backdateStop(id, 25 * HOUR);
    const planned = (await env.store.get(id))!.containerId!;
    const inventory = env.sweepDeps.inventory;
    let other: Promise<unknown> = Promise.resolve();
    const sweep = sweepWith(async (p, c, o) => {
      other = env.docker.docker.getContainer(c).remove({ force: true, v: true }).catch((e: unknown) => e);
      await sleep(1);
      return inventory.removeStopped(p, c, o);
    });
    const runId = `twice-${Math.random().toString(36).slice(2)}`;
    const done = await expireBatch(env.deps, sweep, [{ projectId: id, containerId: planned }], runId);
    await other;
    expect(done).toMatchObject({ removed: 1, failed: 0, left: 0 });
    expect(await exists(planned)).toBe(false);
    expect(await env.store.get(id)).toMatchObject({ status: "stopped", containerId: null });
    const [decision] = await env.decisions.list({ runId, projectId: id });
    expect(decision).toMatchObject({ action: "removed", reason: expect.stringMatching(/\(container (absent|removed)\)$/) });
  }, 60_000);
});
