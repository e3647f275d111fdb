/**
 * launch-preview when its container vanishes between ensure-container and start-container, on a
 * real Docker engine and a real Postgres (pg driver): the case of a sweep's expiry pass, which
 * removes stopped containers without this project's concurrency key, so it can remove the
 * stopped container a launch just found and reused. The removal is made the way the sweep makes
 * it (by id, `remove({ v: true })`, no force), right after ensure-container's find-or-create
 * returned and before start-container runs.
 */
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LABELS } from "../../docker/labels.js";
import { createFunctions, type PreviewDeps } from "../../functions/index.js";
import type { PreviewRuntime, ProjectId } from "../../functions/ports.js";
import { createInngest } from "../../runtime/inngest-client.js";
import { TEST_LABEL } from "../helpers/docker.js";
import { inngestSettings } from "../helpers/inngest-server.js";
import { failureFunctions, runLifecycle } from "../helpers/lifecycle-run.js";
import { createPreviewTestEnv, type PreviewTestEnv } from "../helpers/preview-env.js";

let env: PreviewTestEnv;
beforeAll(async () => {
  env = await createPreviewTestEnv({ driver: "pg", readyTimeoutMs: 10_000 });
});
afterAll(async () => {
  await env?.cleanup();
});

/** Log records of the functions (pino, JSON), to check what a launch said. */
const logged: Array<Record<string, unknown>> = [];
const sink = new Writable({
  write(chunk: Buffer, _enc, done) {
    for (const line of chunk.toString().split("\n")) if (line.trim()) logged.push(JSON.parse(line) as Record<string, unknown>);
    done();
  },
});

/**
 * What happens right after ensure-container's find-or-create returned, once per armed project
 * (then disarmed: the find-or-create of start-container is left alone).
 */
const afterEnsure = new Map<string, (containerId: string) => Promise<void>>();

/** The real runtime, with the hook above. */
function hookedRuntime(real: PreviewRuntime): PreviewRuntime {
  return {
    async ensureContainer(projectId: ProjectId) {
      const ensured = await real.ensureContainer(projectId);
      const hook = afterEnsure.get(projectId);
      afterEnsure.delete(projectId);
      if (hook) await hook(ensured.containerId);
      return ensured;
    },
    start: (p, site) => real.start(p, site),
    probeReady: (p, ms, signal) => real.probeReady(p, ms, signal),
    logTail: (p) => real.logTail(p),
    stop: (p) => real.stop(p),
    remove: (p) => real.remove(p),
    ping: () => real.ping(),
  };
}

/** A launch through functions built on the hooked runtime (real steps, failure handler as the server runs it). */
function launch(projectId: string) {
  const deps: PreviewDeps = { ...env.deps, runtime: hookedRuntime(env.deps.runtime) };
  const inngest = createInngest(inngestSettings({ dev: env.inngestServer.url }), pino({ level: "info" }, sink));
  const [fn] = createFunctions(inngest, deps);
  return runLifecycle(fn!, failureFunctions(inngest, deps), "pipeline.step7", { projectId });
}

const byName = (id: string) => env.docker.docker.getContainer(`preview-${id}`);

/** A preview launched, then stopped: its container exists, stopped, so the next ensure-container reuses it. */
async function stoppedPreview(prefix: string): Promise<{ id: string; oldId: string }> {
  const id = env.docker.projectId(prefix);
  await env.docker.writeSite(id);
  expect((await launch(id)).error).toBeUndefined();
  expect((await env.stop(id)).error).toBeUndefined();
  const row = await env.store.get(id);
  expect(row?.status).toBe("stopped");
  const info = await byName(id).inspect();
  expect(info.State.Running).toBe(false);
  return { id, oldId: info.Id };
}

describe("launch-preview: the container vanishes between ensure-container and start-container", () => {
  it("removed as the sweep removes it (by id, v, no force): created again, started, ready with the new container's id", async () => {
    const { id, oldId } = await stoppedPreview("regone");
    let reused: string | null = null;
    afterEnsure.set(id, async (containerId) => {
      reused = containerId;
      await env.docker.docker.getContainer(containerId).remove({ v: true });
    });

    const run = await launch(id);
    expect(run.error).toBeUndefined();
    expect(reused).toBe(oldId); // ensure-container did find and reuse the stopped container
    await expect(env.docker.docker.getContainer(oldId).inspect()).rejects.toMatchObject({ statusCode: 404 });

    const info = await byName(id).inspect();
    const newId = info.Id;
    expect(newId).not.toBe(oldId);
    expect(info.State.Running).toBe(true);
    expect(info.Config.Labels).toMatchObject({
      [LABELS.MANAGED]: "true",
      [LABELS.OWNER]: env.docker.options.instanceId,
      [LABELS.PROJECT_ID]: id,
      [TEST_LABEL]: env.docker.runId,
    });
    const url = `http://${id}.preview.localhost`;
    expect(run.result).toEqual({ projectId: id, url, containerId: newId });
    expect(await env.store.get(id)).toMatchObject({ status: "running", containerId: newId, url });
    expect(env.emitted("preview.ready", id).at(-1)).toEqual({ projectId: id, url, containerId: newId });
    expect(env.emitted("preview.failed", id)).toEqual([]);
    // It serves the site it mounted.
    const ip = info.NetworkSettings.Networks[env.docker.options.network]!.IPAddress;
    expect(await (await fetch(`http://${ip}:3000/`)).text()).toContain(`preview ${id}`);
    // One container under the name: the new one.
    const all = await env.docker.docker.listContainers({ all: true, filters: { name: [`preview-${id}`] } });
    expect(all.map((c) => c.Id)).toEqual([newId]);
    expect(logged.filter((l) => l.projectId === id && typeof l.msg === "string" && l.msg.startsWith("container vanished"))).toEqual([
      expect.objectContaining({
        level: 40,
        projectId: id,
        oldContainerId: oldId,
        containerId: newId,
        msg: "container vanished since ensure-container (removed by hand or expired by a sweep); created again",
      }),
    ]);
  });

  it("a foreign container under the name in that window is refused for good: not removed, not started, the launch fails", async () => {
    const { id, oldId } = await stoppedPreview("regone-foreign");
    let foreignId: string | null = null;
    afterEnsure.set(id, async (containerId) => {
      await env.docker.docker.getContainer(containerId).remove({ v: true });
      const foreign = await env.docker.createForeign(id);
      foreignId = foreign.id;
    });
    try {
      const run = await launch(id);
      expect(run.error).toMatchObject({ name: "NonRetriableError", message: expect.stringContaining("is not managed by") });
      expect(await env.store.get(id)).toMatchObject({ status: "failed", reason: expect.stringContaining("refusing to touch it") });
      expect(env.emitted("preview.failed", id)).toHaveLength(1);
      expect(foreignId).not.toBeNull();
      // Left as it was: there, under the name, never started.
      const info = await byName(id).inspect();
      expect(info.Id).toBe(foreignId);
      expect(info.State.Running).toBe(false);
      expect(info.State.StartedAt).toBe("0001-01-01T00:00:00Z");
      await expect(env.docker.docker.getContainer(oldId).inspect()).rejects.toMatchObject({ statusCode: 404 });
    } finally {
      if (foreignId) await env.docker.docker.getContainer(foreignId).remove({ force: true }).catch(() => undefined);
    }
  });
});
