/**
 * Capacity in launch-preview over in-memory ports (real Inngest steps): admission before the
 * start, eviction of the least recently active running preview through the table, and a launch
 * that waits for a slot held by a preview still starting. Real Docker and Postgres, concurrent
 * launches: capacity.int.test.ts.
 */
import { afterEach, describe, expect, it } from "vitest";
import { MemoryActivityStore } from "../fakes/memory-activity.js";
import { createUnitEnv, newProjectId, type UnitEnv } from "../helpers/unit-env.js";

let env: UnitEnv | null = null;
afterEach(async () => {
  await env?.close();
  env = null;
});

/** MAX_RUNNING_PREVIEWS = `max` for `env`: the functions read their deps when they run, so it applies from here on. */
function withCapacity(env: UnitEnv, max: number): MemoryActivityStore {
  const activity = new MemoryActivityStore(env.store);
  env.deps.capacity = { store: activity, max };
  env.deps.activity = activity;
  return activity;
}

async function setup(max: number) {
  env = await createUnitEnv({ readyTimeoutMs: 2_000 });
  return { env, activity: withCapacity(env, max) };
}

describe("launch-preview with MAX_RUNNING_PREVIEWS", () => {
  it("takes a slot before starting; over the cap it evicts the least recently active running preview", async () => {
    const { env, activity } = await setup(2);
    const a = await env.runningPreview("a");
    const b = await env.runningPreview("b");
    expect([...activity.slots.values()].sort()).toEqual([1, 2]);
    await activity.recordActivity([{ projectId: a, at: new Date(Date.now() + 1_000) }]);

    const c = newProjectId("c");
    env.site.sites.add(c);
    const run = await env.launch(c);
    expect(run.error).toBeUndefined();
    expect((await env.store.get(b))?.status).toBe("stopped");
    expect((await env.store.get(b))?.reason).toMatch(/^evicted: MAX_RUNNING_PREVIEWS=2 reached, making room for c-/);
    expect(env.store.events(b)).toEqual(["starting", "running", "stopping", "stopped"]);
    expect(env.runtime.containers.get(b)?.running).toBe(false);
    expect(env.runtime.containers.get(a)?.running).toBe(true);
    expect(env.runtime.containers.get(c)?.running).toBe(true);
    expect(env.emitted("preview.stopped", b)).toHaveLength(1);
    expect(activity.slots.has(b)).toBe(false);
    expect(activity.slots.get(c)).toBeDefined();
  });

  it("previews running from before the cap (no slot) count against it: a launch over it evicts until it fits", async () => {
    env = await createUnitEnv({ readyTimeoutMs: 2_000 });
    // Two previews launched while the cap was off: running, without a slot.
    const a = await env.runningPreview("a");
    const b = await env.runningPreview("b");
    const activity = withCapacity(env, 1);
    await activity.recordActivity([{ projectId: b, at: new Date(Date.now() + 1_000) }]);
    const c = newProjectId("c");
    env.site.sites.add(c);
    expect((await env.launch(c)).error).toBeUndefined();
    // Both went (a, the least recently active, first): one preview runs, as the cap says.
    expect(env.store.applied.filter((x) => x.action === "evict" && x.applied).map((x) => x.projectId)).toEqual([a, b]);
    expect([a, b, c].map((id) => env!.runtime.containers.get(id)?.running)).toEqual([false, false, true]);
  });

  it("a relaunch of a running preview takes nothing and evicts nobody", async () => {
    const { env } = await setup(1);
    const a = await env.runningPreview("a");
    expect((await env.launch(a)).error).toBeUndefined();
    expect((await env.store.get(a))?.status).toBe("running");
    expect(env.store.applied.filter((x) => x.action === "evict")).toEqual([]);
  });

  it("every slot held by a preview still starting: the launch waits, then fails naming the cap", async () => {
    const { env, activity } = await setup(1);
    // A launch of another project in progress holds the only slot.
    env.store.seed("holder", "starting", { claim: "other-run" });
    activity.slots.set("holder", 1);
    const p = newProjectId("late");
    env.site.sites.add(p);
    const run = await env.launch(p);
    expect(String((run.error as { message?: string })?.message)).toMatch(/no capacity for preview late-.*: all 1 slots \(MAX_RUNNING_PREVIEWS\)/);
    expect(env.runtime.calls.filter((x) => x.method === "start" && x.projectId === p)).toEqual([]);
    expect((await env.store.get("holder"))?.status).toBe("starting");
    expect((await env.store.get(p))?.status).toBe("failed");
  }, 30_000);
});
