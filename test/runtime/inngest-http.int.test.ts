/**
 * The `/api/inngest` seam over real HTTP, driven the way the Inngest server drives it (public SDK
 * spec, plus the SDK's checkpointing API): a sync that registers the functions and their failure
 * handlers, and runs made of call requests with memoized state. Every run-level test runs twice:
 * with checkpointing off (one step per call request) and on, as production runs (the SDK runs
 * the steps inside one request and checkpoints each to the server). Failures end the way the
 * server ends them: the failure handler (`<fn>-failure`) is called over HTTP too.
 *
 * Real Docker, PGlite and site files (test/helpers/preview-env.ts); the stand-in
 * (test/helpers/inngest-server.ts) does not enforce concurrency, singleton or cancelOn, so the
 * interleavings those reduce (but cannot rule out) are driven here on purpose.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { InngestTestEngine, mockCtx } from "@inngest/test";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFunctions, type PreviewDeps } from "../../functions/index.js";
import type { PreviewRuntime } from "../../functions/ports.js";
import { createApp } from "../../runtime/app.js";
import { createInngest, type InngestSettings } from "../../runtime/inngest-client.js";
import { listen } from "../helpers/http.js";
import {
  inngestSettings,
  signRequest,
  startInngestStandIn,
  type InngestStandIn,
  type RecordedStep,
  type RunOptions,
  type RunResult,
} from "../helpers/inngest-server.js";
import { createPreviewTestEnv, type PreviewTestEnv } from "../helpers/preview-env.js";

const APP = "previews";
const PER_PROJECT = { scope: "env", key: '"preview-lifecycle:" + event.data.projectId', limit: 1 };
const ONE_RUN_PER_PROJECT = { key: "event.data.projectId", mode: "skip" };
/** Short readiness slices, so a slow dev server makes the launch sleep between probes. */
const SLICE_MS = 250;

let env: PreviewTestEnv;
const closers: Array<() => Promise<void>> = [];
beforeAll(async () => {
  env = await createPreviewTestEnv({ readySliceMs: SLICE_MS });
});
afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  await env?.cleanup();
});

/** An app like production's (runtime/app.ts) over `deps`, served on a loopback port. */
async function serveApp(settings: Partial<InngestSettings>, deps: PreviewDeps = env.deps) {
  const inngest = createInngest(inngestSettings(settings), pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }));
  const functions = createFunctions(inngest, deps);
  const host = await listen(createApp({ inngest, functions, store: env.store, runtime: env.docker.runtime, apiToken: null }));
  closers.push(host.close);
  return { inngest, functions, url: host.url, serveUrl: `${host.url}/api/inngest` };
}

const launchEvent = (projectId: string, name = "pipeline.step7") => ({ name, data: { projectId } });
const names = (run: RunResult) => run.steps.map((s) => s.name);
const container = (id: string) => env.docker.docker.getContainer(`preview-${id}`);
const isRunning = async (id: string) => (await container(id).inspect()).State.Running;
const eventsFor = (server: InngestStandIn, id: string) => server.events.filter((e) => e.data.projectId === id).map((e) => e.name);

describe("sync (PUT /api/inngest)", () => {
  it("registers the three functions and their failure handlers, with triggers, the shared per-project key, singleton and cancel", async () => {
    const app = await serveApp({ dev: env.inngestServer.url });
    const res = await fetch(app.serveUrl, { method: "PUT" });
    expect(res.status).toBe(200);
    const sync = env.inngestServer.registrations.at(-1) as { appName: string; url: string; functions: Array<Record<string, unknown>> };
    expect(sync.appName).toBe(APP);
    expect(sync.url).toBe(app.serveUrl);
    const byId = Object.fromEntries(sync.functions.map((f) => [f.id, f]));
    expect(Object.keys(byId).sort()).toEqual([
      "previews-launch-preview",
      "previews-launch-preview-failure",
      "previews-remove-preview",
      "previews-remove-preview-failure",
      "previews-stop-preview",
      "previews-stop-preview-failure",
      "previews-track-idle",
    ]);
    const same = (event: string) => ({ event, if: "async.data.projectId == event.data.projectId" });
    const retried = { steps: { step: { retries: { attempts: 4 } } } };
    expect(byId["previews-launch-preview"]).toMatchObject({
      triggers: [{ event: "pipeline.step7" }, { event: "preview.requested" }],
      concurrency: PER_PROJECT,
      singleton: ONE_RUN_PER_PROJECT,
      cancel: [same("preview.idle"), same("preview.closed"), same("project.deleted")],
      ...retried,
    });
    expect(byId["previews-stop-preview"]).toMatchObject({
      triggers: [{ event: "preview.idle" }, { event: "preview.closed" }],
      concurrency: PER_PROJECT,
      singleton: ONE_RUN_PER_PROJECT,
      cancel: [same("pipeline.step7"), same("preview.requested"), same("project.deleted")],
      ...retried,
    });
    // Deleting a project is final: nothing cancels a remove.
    expect(byId["previews-remove-preview"]).toMatchObject({
      triggers: [{ event: "project.deleted" }],
      concurrency: PER_PROJECT,
      singleton: ONE_RUN_PER_PROJECT,
      ...retried,
    });
    expect(byId["previews-remove-preview"]!.cancel).toBeUndefined();
    for (const fn of ["launch-preview", "stop-preview", "remove-preview"]) {
      expect(byId[`previews-${fn}-failure`]).toMatchObject({
        triggers: [{ event: "inngest/function.failed", expression: `event.data.function_id == 'previews-${fn}'` }],
      });
    }
  });
});

describe.each([{ checkpointing: false }, { checkpointing: true }])("/api/inngest runs, checkpointing $checkpointing", ({ checkpointing }) => {
  const server = () => env.inngestServer;
  let app: Awaited<ReturnType<typeof serveApp>>;
  beforeAll(async () => {
    app = await serveApp({ dev: env.inngestServer.url, checkpointing });
  });

  /** A run of `fn` as the server makes it, failure handler included. */
  const run = (fn: string, event: { name: string; data: Record<string, unknown> }, more: Partial<RunOptions> = {}, serveUrl = app.serveUrl) =>
    server().run({ serveUrl, fnId: `${APP}-${fn}`, event, checkpointing, onFailure: true, ...more });

  /** Checkpointing changes how steps travel, never which: on, steps come in checkpoints. */
  function expectTransport(result: RunResult) {
    const viaCheckpoint = result.steps.filter((s) => s.via === "checkpoint");
    if (checkpointing) {
      expect(result.checkpoints).toBeGreaterThan(0);
      expect(viaCheckpoint.length).toBeGreaterThan(0);
      expect(server().checkpoints.filter((c) => c.runId === result.runId)).toHaveLength(result.checkpoints);
    } else {
      expect(result.checkpoints).toBe(0);
      expect(viaCheckpoint).toEqual([]);
    }
    expect(server().unhandled).toEqual([]);
  }

  it("runs a launch to completion, step by step", async () => {
    const id = env.docker.projectId("http");
    await env.docker.writeSite(id);
    const result = await run("launch-preview", launchEvent(id));
    expect(result.outcome).toBe("completed");
    expect(result.result).toMatchObject({ projectId: id, url: `http://${id}.preview.localhost` });
    const steps = names(result);
    expect(steps.slice(0, 2)).toEqual(["ensure-container", "start-container"]);
    expect(steps.slice(-2)).toEqual(["record-running", "emit-ready"]);
    expect(steps.slice(2, -2).every((s) => /^(wait-ready|pause)-\d+$/.test(s))).toBe(true);
    expect(steps.at(-3)).toMatch(/^wait-ready-\d+$/);
    expect(result.steps.filter((s) => s.op !== "Sleep").every((s) => s.op === "StepRun")).toBe(true);
    expectTransport(result);
    // Off: one call request per step, and a last one for the result. On: far fewer requests.
    if (checkpointing) expect(result.requests).toBeLessThan(steps.length);
    else expect(result.requests).toBe(steps.length + 1);

    const { containerId } = result.result as { containerId: string };
    expect(await isRunning(id)).toBe(true);
    expect(await env.store.get(id)).toMatchObject({ status: "running", containerId, url: `http://${id}.preview.localhost` });
    expect(env.emitted("preview.ready", id)).toEqual([{ projectId: id, containerId, url: `http://${id}.preview.localhost` }]);
  });

  it("sleeps between readiness slices until the dev server answers (Sleep ops memoized as null)", async () => {
    const id = env.docker.projectId("slow");
    const site = await env.docker.writeSite(id);
    // Listens after 2 s; slices are 250 ms.
    await writeFile(path.join(site, "start.sh"), "/bin/busybox sleep 2\nexec /bin/busybox httpd -f -p 3000 -h /app\n");
    const result = await run("launch-preview", launchEvent(id));
    expect(result.outcome).toBe("completed");
    const sleeps = result.steps.filter((s) => s.op === "Sleep");
    expect(sleeps.length).toBeGreaterThan(0);
    expect(sleeps.map((s) => s.name)).toEqual(sleeps.map((_, i) => `pause-${i + 1}`));
    // Each pause sits between two probes.
    const steps = names(result);
    for (const pause of sleeps) expect(steps[steps.indexOf(pause.name) + 1]).toMatch(/^wait-ready-\d+$/);
    // A sleep always ends a call request, checkpointing or not.
    expect(result.requests).toBeGreaterThan(sleeps.length);
    expectTransport(result);
    expect(await env.store.get(id)).toMatchObject({ status: "running" });
    expect(env.emitted("preview.ready", id)).toHaveLength(1);
  });

  it("a replay after a crash between create and start converges (ensure-container memoized)", async () => {
    const id = env.docker.projectId("replay");
    await env.docker.writeSite(id);
    // The worker claimed the preview and created the container, its result was saved, and it
    // died before starting it.
    const runId = `run-${randomBytes(6).toString("hex")}`;
    const transformCtx = (ctx: Parameters<typeof mockCtx>[0]) => ({ ...mockCtx(ctx), runId });
    const partial = await new InngestTestEngine({ function: env.functions[0], transformCtx }).executeStep("ensure-container", { events: [launchEvent(id)] });
    const claim = partial.result as { outcome: string; containerId: string; running: boolean };
    expect(claim).toMatchObject({ outcome: "claimed", running: false });
    expect(await env.store.get(id)).toMatchObject({ status: "starting" });

    // The same run, resumed with the step's saved result.
    const result = await run("launch-preview", launchEvent(id), { memoized: { "ensure-container": claim }, runId });
    expect(result.outcome).toBe("completed");
    expect(result.result).toMatchObject({ projectId: id, containerId: claim.containerId });
    expect(names(result)).not.toContain("ensure-container"); // the memoized step did not run again
    expect(names(result)[0]).toBe("start-container");
    const all = await env.docker.docker.listContainers({ all: true, filters: { name: [`preview-${id}`] } });
    expect(all.map((c) => c.Id)).toEqual([claim.containerId]);
    expect(await env.store.get(id)).toMatchObject({ status: "running", containerId: claim.containerId });
  });

  it("a replay after a crash inside ensure-container (container created, result lost) adopts the container", async () => {
    const id = env.docker.projectId("lost");
    await env.docker.writeSite(id);
    await env.store.apply(id, "launch", { reason: "pipeline.step7: starting container", logTail: null });
    const created = await env.docker.runtime.ensureContainer(id);
    const result = await run("launch-preview", launchEvent(id));
    expect(result.outcome).toBe("completed");
    expect(result.result).toMatchObject({ containerId: created.containerId });
    const all = await env.docker.docker.listContainers({ all: true, filters: { name: [`preview-${id}`] } });
    expect(all.map((c) => c.Id)).toEqual([created.containerId]);
    expect(await env.store.get(id)).toMatchObject({ status: "running", containerId: created.containerId });
  });

  it("a container removed between ensure-container and start-container (by hand, or a sweep's expiry) is created again: ready, with the new id", async () => {
    const id = env.docker.projectId("gone");
    await env.docker.writeSite(id);
    let removed: string | null = null;
    const result = await run("launch-preview", launchEvent(id), {
      onStep: async (step) => {
        if (step.name !== "ensure-container") return;
        removed = (step.data as { containerId: string }).containerId;
        await env.docker.docker.getContainer(removed).remove({ v: true });
      },
    });
    expect(result.outcome).toBe("completed");
    expectTransport(result);
    expect(names(result).slice(0, 2)).toEqual(["ensure-container", "start-container"]);
    expect(result.steps.filter((s) => s.op === "StepFailed" || s.op === "StepError")).toEqual([]);
    const info = await container(id).inspect();
    expect(removed).not.toBeNull();
    expect(info.Id).not.toBe(removed);
    expect(info.State.Running).toBe(true);
    expect(result.result).toMatchObject({ projectId: id, containerId: info.Id });
    expect(await env.store.get(id)).toMatchObject({ status: "running", containerId: info.Id });
    expect(env.emitted("preview.ready", id)).toEqual([{ projectId: id, containerId: info.Id, url: `http://${id}.preview.localhost` }]);
  });

  describe("failures end recorded by the failure handler, over HTTP", () => {
    /** The run failed for good, its handler recorded it: row failed, one preview.failed. */
    async function expectRecordedFailure(result: RunResult, id: string, reason: string | RegExp) {
      expect(result.outcome).toBe("failed");
      expect(result.status).toBe(400);
      expect(result.failure).toMatchObject({ outcome: "completed", result: { recorded: true, projectId: id } });
      expect(names(result.failure!)).toEqual(["record-failed", "emit-failed"]);
      const row = await env.store.get(id);
      expect(row).toMatchObject({ status: "failed", reason: expect.stringMatching(reason) });
      expect(env.emitted("preview.failed", id)).toEqual([{ projectId: id, reason: row!.reason, logTail: expect.any(String) }]);
      expect(env.emitted("preview.ready", id)).toEqual([]);
      expect(server().unhandled).toEqual([]);
    }

    it("site missing: refused in ensure-container, before any container exists", async () => {
      const id = env.docker.projectId("nosite");
      const result = await run("launch-preview", launchEvent(id));
      expect(names(result)).toEqual(["ensure-container"]);
      expect(result.error).toMatchObject({ name: "NonRetriableError", message: expect.stringContaining("site folder not found") });
      await expectRecordedFailure(result, id, /site folder not found/);
      await expect(container(id).inspect()).rejects.toMatchObject({ statusCode: 404 });
    });

    it("a step failed for good: start-container refused for good (a foreign container took the name behind the service's back)", async () => {
      const id = env.docker.projectId("foreign");
      await env.docker.writeSite(id);
      let foreignId: string | null = null;
      try {
        const result = await run("launch-preview", launchEvent(id), {
          onStep: async (step) => {
            if (step.name !== "ensure-container") return;
            await container(id).remove({ v: true });
            const foreign = await env.docker.createForeign(id);
            foreignId = foreign.id;
          },
        });
        const failed = result.steps.find((s) => s.name === "start-container");
        expect(failed).toMatchObject({ op: "StepFailed", error: { message: expect.stringContaining("refusing to touch it") } });
        expect(names(result)).toEqual(["ensure-container", "start-container"]);
        await expectRecordedFailure(result, id, /is not managed by .*refusing to touch it/);
        // Never replaced, never started.
        const info = await container(id).inspect();
        expect(info.Id).toBe(foreignId);
        expect(info.State.Running).toBe(false);
      } finally {
        if (foreignId) await env.docker.docker.getContainer(foreignId).remove({ force: true }).catch(() => undefined);
      }
    });

    it("a step out of retries: every attempt of start-container fails (engine unreachable)", async () => {
      const id = env.docker.projectId("retries");
      await env.docker.writeSite(id);
      const real = env.docker.runtime;
      const unreachable: PreviewRuntime = {
        ensureContainer: (p) => real.ensureContainer(p),
        start: async () => {
          throw new Error("connect ECONNREFUSED /var/run/docker.sock");
        },
        probeReady: (p, ms, signal) => real.probeReady(p, ms, signal),
        logTail: (p) => real.logTail(p),
        stop: (p) => real.stop(p),
        remove: (p) => real.remove(p),
        ping: () => real.ping(),
      };
      const flaky = await serveApp({ dev: env.inngestServer.url, checkpointing }, { ...env.deps, runtime: unreachable });
      const result = await run("launch-preview", launchEvent(id), {}, flaky.serveUrl);
      // Synced with 4 retries: 4 retriable errors, then the fifth attempt fails for good.
      const starts = result.steps.filter((s) => s.name === "start-container").map((s) => s.op);
      expect(starts).toEqual(["StepError", "StepError", "StepError", "StepError", "StepFailed"]);
      await expectRecordedFailure(result, id, /ECONNREFUSED/);
      // The handler stopped what the launch had created: nothing left running unattended.
      expect(await isRunning(id)).toBe(false);
    });

    it("the dev server exits: the run fails and the failure is recorded with the log tail", async () => {
      const id = env.docker.projectId("exits");
      await env.docker.writeSite(id, "exit");
      const result = await run("launch-preview", launchEvent(id));
      await expectRecordedFailure(result, id, /.+/);
      expect((await env.store.get(id))?.logTail).toContain("Cannot find module next");
      expect(await isRunning(id)).toBe(false);
    });
    it("a failure handler that runs late records nothing over a newer launch, and leaves its container running", async () => {
      const id = env.docker.projectId("late");
      const site = await env.docker.writeSite(id, "exit");
      const failed = await run("launch-preview", launchEvent(id), { onFailure: false });
      expect(failed.outcome).toBe("failed");
      // The user retries with a fixed site before the first run's failure handler has run.
      await writeFile(path.join(site, "start.sh"), "exec /bin/busybox httpd -f -p 3000 -h /app\n");
      const again = await run("launch-preview", { name: "preview.requested", data: { projectId: id } });
      expect(again.outcome).toBe("completed");
      const late = await server().runFailureHandler({
        serveUrl: app.serveUrl,
        fnId: `${APP}-launch-preview`,
        event: failed.event,
        error: failed.error,
        runId: failed.runId,
        checkpointing,
      });
      expect(late.outcome).toBe("completed");
      expect(late.result).toEqual({ recorded: false, why: "overtaken" });
      expect(await env.store.get(id)).toMatchObject({ status: "running" });
      expect(await isRunning(id)).toBe(true);
      expect(env.emitted("preview.failed", id)).toEqual([]);
    });
  });

  describe("interleavings the server's flow control reduces but cannot rule out", () => {
    const after = {
      "ensure-container": (s: RecordedStep) => s.name === "ensure-container",
      "start-container": (s: RecordedStep) => s.name === "start-container",
      "a readiness probe": (s: RecordedStep) => /^wait-ready-\d+$/.test(s.name) && (s.data as { state?: string })?.state === "ready",
    };

    it.each(Object.keys(after) as Array<keyof typeof after>)("a remove that slips in after %s wins: no re-create, no report", async (point) => {
      const id = env.docker.projectId("overtaken");
      await env.docker.writeSite(id);
      let removed: RunResult | undefined;
      const result = await run("launch-preview", launchEvent(id), {
        onStep: async (step) => {
          if (!removed && after[point](step)) removed = await run("remove-preview", { name: "project.deleted", data: { projectId: id } });
        },
      });
      expect(removed).toMatchObject({ outcome: "completed", result: { projectId: id, recorded: true } });
      // The launch ends overtaken: superseded, or failed with its failure recording nothing.
      if (result.outcome === "completed") expect(result.result).toMatchObject({ projectId: id, superseded: true });
      else expect(result.failure).toMatchObject({ outcome: "completed", result: { recorded: false, why: "overtaken" } });
      await expect(container(id).inspect()).rejects.toMatchObject({ statusCode: 404 });
      expect(await env.store.get(id)).toMatchObject({ status: "removed" });
      expect(eventsFor(server(), id)).toEqual(["preview.removed"]);
      expect(server().unhandled).toEqual([]);
    });

    it("a stop that slips in after a readiness probe wins: the launch ends superseded and leaves nothing running", async () => {
      const id = env.docker.projectId("stopped-under");
      await env.docker.writeSite(id);
      let stopped: RunResult | undefined;
      const result = await run("launch-preview", launchEvent(id), {
        onStep: async (step) => {
          if (!stopped && after["a readiness probe"](step)) stopped = await run("stop-preview", { name: "preview.closed", data: { projectId: id } });
        },
      });
      expect(stopped).toMatchObject({ outcome: "completed", result: { projectId: id, recorded: true } });
      expect(result.outcome).toBe("completed");
      expect(result.result).toMatchObject({ projectId: id, superseded: true });
      expect(names(result)).not.toContain("emit-ready");
      expect(await env.store.get(id)).toMatchObject({ status: "stopped" });
      expect(await isRunning(id)).toBe(false);
      expect(eventsFor(server(), id)).toEqual(["preview.stopped"]);
      expectTransport(result);
    });
  });

  describe("invalid project ids never reach a step", () => {
    it("refuses an invalid projectId in the triggering events before any step (SDK schema check)", async () => {
      const result = await run("launch-preview", launchEvent("../../etc"));
      expect(result.outcome).toBe("failed");
      expect(result.status).toBe(400);
      expect(result.steps).toEqual([]);
      expect(result.error).toMatchObject({ name: "EventValidationError", message: expect.stringContaining("projectId must be a DNS label") });
      // The failure handler parses the event again and has nothing to record.
      expect(result.failure).toMatchObject({ outcome: "completed", result: { recorded: false, why: "invalid event" } });
      expect(result.failure!.steps).toEqual([]);
      expect(server().events.filter((e) => e.data.projectId === "../../etc")).toEqual([]);
    });

    it.each([
      ["launch-preview", "pipeline.step7"],
      ["stop-preview", "preview.closed"],
      ["remove-preview", "project.deleted"],
    ])("%s refuses an `event` outside its `events` list with an invalid projectId, before any step", async (fn, name) => {
      // `projects/../victim` is `victim`: a remove that trusted the id would delete this folder.
      const victim = path.join(env.docker.storageRoot, "victim", "site");
      await mkdir(victim, { recursive: true });
      await writeFile(path.join(victim, "index.html"), "not yours\n");
      const validId = env.docker.projectId("decoy");
      const before = { files: await tree(env.docker.storageRoot), rows: (await env.store.list()).length, containers: await containersOnNetwork() };

      const result = await run(fn, { name, data: { projectId: "../victim" } }, { events: [{ name, data: { projectId: validId } }] });
      expect(result.outcome).toBe("failed");
      expect(result.status).toBe(400);
      expect(result.steps).toEqual([]);
      expect(result.error).toMatchObject({ name: "NonRetriableError", message: expect.stringContaining(`invalid ${name} event: projectId`) });
      expect(result.failure).toMatchObject({ outcome: "completed", result: { recorded: false, why: "invalid event" } });

      expect(await tree(env.docker.storageRoot)).toEqual(before.files);
      expect((await env.store.list()).length).toBe(before.rows);
      expect(await env.store.get(validId)).toBeNull();
      expect(await containersOnNetwork()).toEqual(before.containers);
      expect(server().events.filter((e) => e.data.projectId === "../victim" || e.data.projectId === validId)).toEqual([]);
    });
  });
});

describe.each([{ checkpointing: false }, { checkpointing: true }])("/api/inngest in cloud mode (signed requests), checkpointing $checkpointing", ({ checkpointing }) => {
  const signingKey = `signkey-test-${randomBytes(32).toString("hex")}`;
  let cloudServer: InngestStandIn;
  let cloud: Awaited<ReturnType<typeof serveApp>>;
  beforeAll(async () => {
    // Its own stand-in, which also checks the SDK's API calls (checkpoints) carry the hashed key.
    cloudServer = await startInngestStandIn({ signingKey });
    closers.push(() => cloudServer.close());
    cloud = await serveApp({ baseUrl: cloudServer.url, signingKey, eventKey: "test-event-key", checkpointing });
  });

  function callBody(projectId: string) {
    const event = { name: "preview.closed", data: { projectId }, id: `evt-${randomBytes(4).toString("hex")}`, ts: Date.now() };
    // No `fn_id`: a hand-made request must not make the SDK checkpoint a run the stand-in never started.
    const ctx = { run_id: `run-${randomBytes(8).toString("hex")}`, attempt: 0, disable_immediate_execution: false, use_api: false, stack: { stack: [], current: 0 } };
    return { event, events: [event], steps: {}, ctx, version: 2 };
  }
  const post = (body: unknown, signature?: string) =>
    fetch(`${cloud.serveUrl}?fnId=${APP}-stop-preview&stepId=step`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(signature ? { "x-inngest-signature": signature } : {}) },
      body: JSON.stringify(body),
    });

  it("rejects an unsigned call with 401 and runs nothing", async () => {
    const id = env.docker.projectId("unsigned");
    await env.store.apply(id, "launch", { reason: "test", logTail: null });
    const res = await post(callBody(id));
    expect(res.status).toBe(401);
    expect(await env.store.get(id)).toMatchObject({ status: "starting" }); // no `stop` applied
  });

  it("rejects a wrongly signed or stale call with 401", async () => {
    const id = env.docker.projectId("badsig");
    await env.store.apply(id, "launch", { reason: "test", logTail: null });
    const body = callBody(id);
    const wrongKey = `signkey-test-${randomBytes(32).toString("hex")}`;
    expect((await post(body, signRequest(body, wrongKey))).status).toBe(401);
    expect((await post(body, signRequest(body, signingKey, new Date(Date.now() - 10 * 60_000)))).status).toBe(401);
    // The same body correctly signed is accepted (the refusals were about the signature).
    expect((await post(body, signRequest(body, signingKey))).status).not.toBe(401);
    expect(await env.store.get(id)).toMatchObject({ status: "stopping" });
  });

  it("runs a correctly signed launch to completion", async () => {
    const id = env.docker.projectId("signed");
    await env.docker.writeSite(id);
    const result = await cloudServer.run({
      serveUrl: cloud.serveUrl,
      fnId: `${APP}-launch-preview`,
      event: launchEvent(id, "preview.requested"),
      signingKey,
      checkpointing,
      onFailure: true,
    });
    expect(result.outcome).toBe("completed");
    expect(result.result).toMatchObject({ projectId: id });
    expect(result.checkpoints > 0).toBe(checkpointing);
    expect(cloudServer.unhandled).toEqual([]); // every checkpoint carried the hashed signing key
    expect((await env.store.get(id))?.status).toBe("running");
    expect(cloudServer.eventsNamed("preview.ready").filter((e) => e.data.projectId === id)).toHaveLength(1);
  });
});

/** Every file under `root`, relative, sorted. */
async function tree(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)))
    .sort();
}

/** Ids of the containers on this env's own network (every preview it creates joins it). */
async function containersOnNetwork(): Promise<string[]> {
  const all = await env.docker.docker.listContainers({ all: true, filters: { network: [env.docker.options.network] } });
  return all.map((c) => c.Id).sort();
}
