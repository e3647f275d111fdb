/**
 * Interleavings the server's flow control (singleton, cancelOn, the per-project concurrency key)
 * normally rules out, driven on purpose over the HTTP seam (the stand-in enforces none of it):
 * duplicates racing, a stop or launch slipping in between two steps of another run, a failure
 * handler delivered twice, a hung preview. Each must converge: the row and the container agree,
 * one event per transition. (Found by attacking the state machine; kept as regression tests.)
 */
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFunctions, type PreviewDeps } from "../../functions/index.js";
import { createApp } from "../../runtime/app.js";
import { createInngest, type InngestSettings } from "../../runtime/inngest-client.js";
import { listen } from "../helpers/http.js";
import { inngestSettings, type RecordedStep, type RunOptions, type RunResult } from "../helpers/inngest-server.js";
import { createPreviewTestEnv, type PreviewTestEnv } from "../helpers/preview-env.js";

const APP = "previews";
let env: PreviewTestEnv;
const closers: Array<() => Promise<void>> = [];
beforeAll(async () => {
  env = await createPreviewTestEnv({ readySliceMs: 250, readyTimeoutMs: 2500 });
});
afterAll(async () => {
  for (const c of closers.reverse()) await c().catch(() => undefined);
  await env?.cleanup();
});
async function serveApp(settings: Partial<InngestSettings>, deps: PreviewDeps = env.deps) {
  const inngest = createInngest(inngestSettings(settings), pino({ level: "silent" }));
  const functions = createFunctions(inngest, deps);
  const host = await listen(createApp({ inngest, functions, store: env.store, runtime: env.docker.runtime, apiToken: null }));
  closers.push(host.close);
  return { serveUrl: `${host.url}/api/inngest` };
}
const container = (id: string) => env.docker.docker.getContainer(`preview-${id}`);
const isRunning = async (id: string) => (await container(id).inspect()).State.Running;
const eventsFor = (id: string) => env.inngestServer.events.filter((e) => e.data.projectId === id).map((e) => e.name);

describe.each([{ checkpointing: false }, { checkpointing: true }])("checkpointing $checkpointing", ({ checkpointing }) => {
  let app: { serveUrl: string };
  beforeAll(async () => {
    app = await serveApp({ dev: env.inngestServer.url, checkpointing });
  });
  const run = (fn: string, event: { name: string; data: Record<string, unknown> }, more: Partial<RunOptions> = {}) =>
    env.inngestServer.run({ serveUrl: app.serveUrl, fnId: `${APP}-${fn}`, event, checkpointing, onFailure: true, ...more });
  const launchE = (id: string) => ({ name: "pipeline.step7", data: { projectId: id } });
  const stopE = (id: string) => ({ name: "preview.closed", data: { projectId: id } });
  const removeE = (id: string) => ({ name: "project.deleted", data: { projectId: id } });

  it("a duplicate project.deleted racing the first: one removed transition, one preview.removed", async () => {
    const id = env.docker.projectId("dupremove");
    await env.docker.writeSite(id);
    expect((await run("launch-preview", launchE(id))).outcome).toBe("completed");
    let second: RunResult | undefined;
    await run("remove-preview", removeE(id), {
      onStep: async (s) => {
        if (!second && s.name === "record-removing") second = await run("remove-preview", removeE(id));
      },
    });
    expect(eventsFor(id).filter((n) => n === "preview.removed")).toHaveLength(1);
  });

  it("a duplicate stop racing the first: one stopped transition, one preview.stopped", async () => {
    const id = env.docker.projectId("dupstop");
    await env.docker.writeSite(id);
    expect((await run("launch-preview", launchE(id))).outcome).toBe("completed");
    let second: RunResult | undefined;
    await run("stop-preview", stopE(id), {
      onStep: async (s) => {
        if (!second && s.name === "record-stopping") second = await run("stop-preview", { name: "preview.idle", data: { projectId: id } });
      },
    });
    expect(eventsFor(id).filter((n) => n === "preview.stopped")).toHaveLength(1);
  });

  it("a failure handler delivered twice records one transition (its event is at-least-once)", async () => {
    const id = env.docker.projectId("twicefail");
    await env.docker.writeSite(id, "exit");
    const failed = await run("launch-preview", launchE(id), { onFailure: false });
    expect(failed.outcome).toBe("failed");
    const again = () =>
      env.inngestServer.runFailureHandler({ serveUrl: app.serveUrl, fnId: `${APP}-launch-preview`, event: failed.event, error: failed.error, runId: failed.runId, checkpointing });
    const h1 = await again();
    const h2 = await again();
    expect(h1.result).toMatchObject({ recorded: true });
    expect(h2.result).toMatchObject({ recorded: true });
    expect((await env.store.events(id)).map((e) => e.type)).toEqual(["starting", "failed"]);
    expect(eventsFor(id).filter((n) => n === "preview.failed").length).toBeGreaterThanOrEqual(1);
  });

  it("a stop overtaken by a whole launch after record-stopping leaves the launch's container running", async () => {
    const id = env.docker.projectId("stopover");
    await env.docker.writeSite(id);
    expect((await run("launch-preview", launchE(id))).outcome).toBe("completed");
    let launched: RunResult | undefined;
    const stop = await run("stop-preview", stopE(id), {
      onStep: async (s) => {
        if (!launched && s.name === "record-stopping") launched = await run("launch-preview", { name: "preview.requested", data: { projectId: id } });
      },
    });
    const row = await env.store.get(id);
    const running = await isRunning(id);
    expect(stop.result).toMatchObject({ outcome: "overtaken", recorded: false });
    expect(row?.status).toBe("running");
    expect(running).toBe(true);
    expect(eventsFor(id).at(-1)).toBe("preview.ready");
  });

  it("a stop that slips in after ensure-container wins: the launch does not start the container behind its back", async () => {
    const id = env.docker.projectId("leftrun");
    await env.docker.writeSite(id, "silent");
    let stopped: RunResult | undefined;
    const launch = await run("launch-preview", launchE(id), {
      onStep: async (s) => {
        if (!stopped && s.name === "ensure-container") stopped = await run("stop-preview", stopE(id));
      },
    });
    const row = await env.store.get(id);
    const running = await isRunning(id);
    expect(launch.result).toMatchObject({ superseded: true, status: "stopped" });
    expect(row?.status).toBe("stopped");
    expect(running).toBe(false);
  });

  it("a stale launch's ready is refused once a newer launch took the preview; the newer one brings it up", async () => {
    const id = env.docker.projectId("staleready");
    await env.docker.writeSite(id);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let l2: Promise<RunResult> | undefined;
    let l2Claimed!: () => void;
    const claimed = new Promise<void>((r) => (l2Claimed = r));
    let atReady: { row?: string; running?: boolean; claim?: string | null } = {};
    const l1 = await run("launch-preview", launchE(id), {
      onStep: async (s: RecordedStep) => {
        if (!l2 && /^wait-ready-/.test(s.name) && (s.data as { state?: string })?.state === "ready") {
          await run("stop-preview", stopE(id));
          l2 = run("launch-preview", { name: "preview.requested", data: { projectId: id } }, {
            onStep: async (t) => {
              if (t.name === "ensure-container") {
                l2Claimed();
                await gate;
              }
            },
          });
          await claimed;
        }
        if (s.name === "record-running") {
          const row = await env.store.get(id);
          atReady = { row: row?.status, running: await isRunning(id), claim: row?.claim };
        }
      },
    });
    const readyEventsBeforeL2 = env.emitted("preview.ready", id).length;
    release();
    const l2r = await l2!;
    expect(l1.result).toMatchObject({ superseded: true, status: "starting" });
    expect(readyEventsBeforeL2).toBe(0); // the stale launch announced nothing
    expect(atReady.row).toBe("starting");
    expect(l2r.outcome).toBe("completed");
    expect(await env.store.get(id)).toMatchObject({ status: "running" });
    expect(await isRunning(id)).toBe(true);
  });

  it("a preview recorded running that hangs: the next launch records the failure and stops it, the one after restarts it", async () => {
    const id = env.docker.projectId("hung");
    await env.docker.writeSite(id);
    expect((await run("launch-preview", launchE(id))).outcome).toBe("completed");
    await container(id).pause();
    try {
      const results = [];
      for (let i = 0; i < 2; i++) {
        const r = await run("launch-preview", { name: "preview.requested", data: { projectId: id } });
        results.push({ outcome: r.outcome, error: (r.error as { message?: string })?.message, failure: r.failure?.result });
      }
      expect(results[0]).toMatchObject({ outcome: "failed", failure: { recorded: true } });
      expect(results[1]).toMatchObject({ outcome: "completed" });
      expect(await env.store.get(id)).toMatchObject({ status: "running" });
      expect((await container(id).inspect()).State).toMatchObject({ Running: true, Paused: false });
    } finally {
      await container(id).unpause().catch(() => undefined);
    }
  });
});
