/**
 * dockerd restarted in the middle of a sweep: expiries in flight fail (recorded, never stopping
 * the others), the next sweep converges, and nothing is wrongly removed. The restart happens on a PRIVATE dockerd
 * (test/helpers/private-dockerd.ts), never on the shared engine; the state is a real Postgres.
 */
import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProjectId } from "../../functions/ports.js";
import { TEST_LABEL, stubImage } from "../helpers/docker.js";
import { startPrivateDockerd, type PrivateDockerd } from "../helpers/private-dockerd.js";
import { buildStubImage } from "../helpers/stub-image.js";
import { HOUR, createSweepTestEnv, type SweepTestEnv } from "../helpers/sweep-env.js";
import { inject } from "vitest";

let dockerd: PrivateDockerd;
let env: SweepTestEnv;
/** The shared engine's default bridge (its interface index), as found before the private engine started. */
const docker0 = () => readFile("/sys/class/net/docker0/ifindex", "utf8").then((s) => s.trim(), () => null);
let docker0Before: string | null = null;
beforeAll(async () => {
  docker0Before = await docker0();
  dockerd = await startPrivateDockerd();
  const runId = inject("testRunId");
  await buildStubImage(dockerd.docker, stubImage(runId), { [TEST_LABEL]: runId });
  env = await createSweepTestEnv({ engine: dockerd.docker, settings: { graceMs: 0, concurrency: 2 } });
}, 120_000);
afterAll(async () => {
  await env?.cleanup();
  await dockerd?.destroy();
}, 120_000);

const EXPIRED = 12;
const RUNNING = 3;

/** A row as the lifecycle leaves it, written through the table (the seed's own claim). */
async function recordRunning(id: ProjectId, containerId: string) {
  await env.store.apply(id, "launch", { reason: "seed", claim: "seed" });
  await env.store.apply(id, "ready", { reason: "seed", claim: "seed", containerId, url: `http://${id}.preview.localhost` });
}

describe("a private engine", () => {
  it("leaves the shared engine's default bridge alone (a dockerd with --bridge=none deletes docker0 of its network namespace)", async () => {
    await dockerd.restart();
    expect(await docker0()).toBe(docker0Before);
  }, 120_000);
});

describe("dockerd restarted in the middle of a sweep", () => {
  it("the next run converges and nothing is wrongly removed", async () => {
    const docker = dockerd.docker;
    const runtime = env.docker.runtime;
    const expired: ProjectId[] = [];
    const running: ProjectId[] = [];
    for (let i = 0; i < EXPIRED + RUNNING; i++) {
      const id = env.docker.projectId(i < EXPIRED ? "exp" : "run");
      await env.docker.writeSite(id);
      const { containerId } = await runtime.ensureContainer(id);
      // Started directly: the seed needs a running container, not a launch.
      await docker.getContainer(containerId).start();
      await recordRunning(id, containerId);
      if (i < EXPIRED) {
        await runtime.stop(id);
        await env.store.apply(id, "stop", { reason: "seed", claim: "seed" });
        await env.store.apply(id, "stopped", { reason: "seed", claim: "seed" });
        await env.backdateStop(id, 25 * HOUR);
        expired.push(id);
      } else {
        running.push(id);
      }
    }
    // A stopped container under a preview's name without our labels, whose row says it expired.
    const foreign = env.docker.projectId("foreign");
    const foreignId = (
      await docker.createContainer({ name: `preview-${foreign}`, Image: env.docker.image, Labels: { [TEST_LABEL]: env.docker.runId }, HostConfig: { NetworkMode: env.docker.options.network } })
    ).id;
    await env.store.apply(foreign, "launch", { reason: "seed", claim: "seed" });
    await env.store.apply(foreign, "stop", { reason: "seed", claim: "seed" });
    await env.store.apply(foreign, "stopped", { reason: "seed", claim: "seed" });
    await env.backdateStop(foreign, 25 * HOUR);
    await env.addProjects(...expired, ...running, foreign);

    // Sweep 1: once a few expired containers are removed, the engine stops (SIGTERM, as a
    // service manager restarts it: its containers stop too); the next removals find it down;
    // then it starts again and the last removals find it back. (Expiries run in the sweep's
    // own expire steps, SWEEP_CONCURRENCY 2 at a time: the hook counts their removals.)
    const inventory = env.sweepDeps.inventory;
    const removeStopped = inventory.removeStopped.bind(inventory);
    let removals = 0;
    let stopped: Promise<void> | null = null;
    inventory.removeStopped = async (...args) => {
      const index = removals++;
      if (index === 4) await (stopped = dockerd.stop());
      if (index === 8) {
        await stopped; // the other worker may still be waiting for the shutdown
        await dockerd.start();
      }
      return removeStopped(...args);
    };
    const first = await env.sweep({ parallel: 2 }).finally(() => {
      inventory.removeStopped = removeStopped;
    });
    expect(first.error).toBeUndefined();
    expect(first.items).toEqual([]);
    const decided = (await env.decisions.list({ runId: first.runId, pass: "expired" })).filter((d) => d.action !== "remove");
    const failed = decided.filter((d) => d.action === "failed");
    const done = decided.filter((d) => d.action === "removed");
    // Some removals ran into the restart, some did not (the point of the test); one failure
    // never stopped the others: every expired preview has its outcome.
    expect(failed.length).toBeGreaterThan(0);
    expect(done.length).toBeGreaterThan(0);
    expect(failed.length + done.length).toBe(EXPIRED);
    for (const f of failed) expect(f.reason).toMatch(/^sweep expire failed: docker: (inspect|remove) container preview-exp-/);
    expect(first.result).toMatchObject({ expired: { remove: EXPIRED, removed: done.length, failed: failed.length, left: 0 } });
    for (const f of failed) expect(await env.store.get(f.projectId!), f.projectId!).toMatchObject({ status: "stopped", containerId: expect.stringMatching(/^[0-9a-f]{64}$/) });

    // The engine stopped the running previews on shutdown (no live-restore): their rows now lie.
    for (const id of running) expect((await docker.getContainer(`preview-${id}`).inspect()).State.Running).toBe(false);

    // Sweep 2 converges: every expired container gone, rows recorded; the running previews'
    // rows corrected to the truth, their containers kept; the foreign container untouched.
    const second = await env.sweep({ parallel: 2 });
    for (const item of second.items) expect(item.error, String(item.event.data.projectId)).toBeUndefined();
    expect(second.result).toMatchObject({ expired: { remove: failed.length }, reconcile: { correct: RUNNING }, orphans: { remove: 0, guard: null } });
    for (const id of expired) {
      await expect(docker.getContainer(`preview-${id}`).inspect(), id).rejects.toMatchObject({ statusCode: 404 });
      expect(await env.store.get(id), id).toMatchObject({ status: "stopped", containerId: null });
    }
    for (const id of running) {
      expect(await env.store.get(id), id).toMatchObject({ status: "stopped", reason: "sweep: recorded running but its container is exited" });
    }
    const left = (await docker.listContainers({ all: true })).flatMap((c) => c.Names.map((n) => n.slice(1))).sort();
    expect(left).toEqual([...running.map((id) => `preview-${id}`), `preview-${foreign}`].sort());
    expect((await docker.getContainer(foreignId).inspect()).Id).toBe(foreignId);

    // Sweep 3: nothing left to do.
    const third = await env.sweep();
    expect(third.items).toEqual([]);
  });
});
