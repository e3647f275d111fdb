/**
 * The `/api/inngest` seam over real HTTP, driven the way the Inngest server drives it (public SDK
 * spec): a sync that registers the functions with the server, and call requests that run a
 * function step by step with memoized state, in dev mode and in signed cloud mode.
 */
import { randomBytes } from "node:crypto";
import { InngestTestEngine } from "@inngest/test";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../runtime/app.js";
import { createFunctions } from "../../functions/index.js";
import { createInngest } from "../../inngest.config.js";
import { listen } from "../helpers/http.js";
import { runFunction, signRequest } from "../helpers/inngest-server.js";
import { createPreviewTestEnv, inngestConfig, runOnce, type PreviewTestEnv } from "../helpers/preview-env.js";

let env: PreviewTestEnv;
let host: Awaited<ReturnType<typeof listen>>;
beforeAll(async () => {
  env = await createPreviewTestEnv();
  host = await listen(createApp({ inngest: env.inngest, functions: env.functions, store: env.store, runtime: env.docker.runtime, apiToken: null }));
});
afterAll(async () => {
  await host?.close();
  await env?.cleanup();
});

const PER_PROJECT = { scope: "env", key: '"preview-lifecycle:" + event.data.projectId', limit: 1 };

describe("/api/inngest in dev mode", () => {
  it("syncs the three functions with their triggers and the shared per-project concurrency key", async () => {
    const res = await fetch(`${host.url}/api/inngest`, { method: "PUT" });
    expect(res.status).toBe(200);
    const sync = env.inngestServer.registrations.at(-1) as { appName: string; url: string; functions: Array<Record<string, unknown>> };
    expect(sync.appName).toBe("previews");
    expect(sync.url).toBe(`${host.url}/api/inngest`);
    const byId = Object.fromEntries(sync.functions.map((f) => [f.id, f]));
    expect(Object.keys(byId).sort()).toEqual(["previews-launch-preview", "previews-remove-preview", "previews-stop-preview"]);
    const same = (event: string) => ({ event, if: "async.data.projectId == event.data.projectId" });
    expect(byId["previews-launch-preview"]).toMatchObject({
      triggers: [{ event: "pipeline.step7" }, { event: "preview.requested" }],
      concurrency: PER_PROJECT,
      cancel: [same("preview.idle"), same("preview.closed"), same("project.deleted")],
    });
    expect(byId["previews-stop-preview"]).toMatchObject({
      triggers: [{ event: "preview.idle" }, { event: "preview.closed" }],
      concurrency: PER_PROJECT,
      cancel: [same("pipeline.step7"), same("preview.requested"), same("project.deleted")],
    });
    // Deleting a project is final: nothing cancels a remove.
    expect(byId["previews-remove-preview"]).toMatchObject({ triggers: [{ event: "project.deleted" }], concurrency: PER_PROJECT });
    expect(byId["previews-remove-preview"]!.cancel).toBeUndefined();
  });

  it("runs launch-preview to completion through call requests, one step per request", async () => {
    const id = env.docker.projectId("http");
    await env.docker.writeSite(id);
    const run = await runFunction({
      serveUrl: `${host.url}/api/inngest`,
      fnId: "previews-launch-preview",
      event: { name: "pipeline.step7", data: { projectId: id } },
    });
    expect(run.status).toBe(200);
    expect(run.body).toMatchObject({ projectId: id, url: `http://${id}.preview.localhost` });
    // check-site, ensure-container, start-container, wait-ready, record-running, emit-ready
    expect(run.ops).toEqual(Array(6).fill("StepRun"));
    expect(run.requests).toBe(7);
    expect((await env.docker.docker.getContainer(`preview-${id}`).inspect()).State.Running).toBe(true);
    expect((await env.store.get(id))?.status).toBe("running");
    expect(env.inngestServer.eventsNamed("preview.ready").some((e) => e.data.projectId === id)).toBe(true);
  });

  it("resumes from memoized state: a replay after a crash between create and start converges", async () => {
    const id = env.docker.projectId("replay");
    await env.docker.writeSite(id);
    // The worker created the container, its result was saved, then it died before starting it.
    const ensured = await env.docker.runtime.ensureContainer(id);
    const run = await runFunction({
      serveUrl: `${host.url}/api/inngest`,
      fnId: "previews-launch-preview",
      event: { name: "pipeline.step7", data: { projectId: id } },
      memoized: { "check-site": { ok: true }, "ensure-container": ensured },
    });
    expect(run.status).toBe(200);
    expect(run.body).toMatchObject({ containerId: ensured.containerId });
    expect(run.ops).toHaveLength(4); // the two memoized steps did not run again
    const all = await env.docker.docker.listContainers({ all: true, filters: { name: [`preview-${id}`] } });
    expect(all.map((c) => c.Id)).toEqual([ensured.containerId]);
  });

  it("records the failure when a step failed for good (memoized step error)", async () => {
    const id = env.docker.projectId("steperr");
    await env.docker.writeSite(id);
    const res = await fetch(`${host.url}/api/inngest?fnId=previews-launch-preview&stepId=step`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(callBody(id, {
        steps: {
          [sha1("check-site")]: { data: { ok: true } },
          [sha1("ensure-container")]: { error: { name: "NonRetriableError", message: "docker: create container failed: 400 bad spec" } },
        },
        stack: [sha1("check-site"), sha1("ensure-container")],
      })),
    });
    // The function records `failed` as its next step.
    expect(res.status).toBe(206);
    const ops = (await res.json()) as Array<{ op: string; displayName: string }>;
    expect(ops[0]).toMatchObject({ op: "StepRun", displayName: "record-failed" });
    expect(await env.store.get(id)).toMatchObject({ status: "failed", reason: expect.stringContaining("400 bad spec") });
  });

  it("a remove that slips in between launch steps wins: the launch neither re-creates nor reports", async () => {
    const id = env.docker.projectId("overtaken");
    await env.docker.writeSite(id);
    // The launch ran up to ensure-container (container created, row `starting`), then the
    // project was deleted before its next step.
    const partial = await new InngestTestEngine({ function: env.launch }).executeStep("ensure-container", { events: [launchEvent(id)] });
    expect(await env.store.get(id)).toMatchObject({ status: "starting" });
    expect((await runOnce(env.remove, "project.deleted", id)).error).toBeUndefined();
    const run = await runFunction({
      serveUrl: `${host.url}/api/inngest`,
      fnId: "previews-launch-preview",
      event: launchEvent(id),
      memoized: { "check-site": { ok: true }, "ensure-container": partial.result },
    });
    expect(run.status).toBe(200);
    expect(run.body).toEqual({ projectId: id, superseded: true });
    await expect(env.docker.docker.getContainer(`preview-${id}`).inspect()).rejects.toMatchObject({ statusCode: 404 });
    expect(await env.store.get(id)).toMatchObject({ status: "removed" });
    expect(env.inngestServer.events.filter((e) => e.data.projectId === id).map((e) => e.name)).toEqual(["preview.removed"]);
  });

  it("a stop that slips in after wait-ready wins: the launch does not record running or emit ready", async () => {
    const id = env.docker.projectId("stopped-under");
    await env.docker.writeSite(id);
    const partial = await new InngestTestEngine({ function: env.launch }).executeStep("wait-ready", { events: [launchEvent(id)] });
    const memo = async (stepId: string) => (partial.state as Record<string, Promise<unknown>>)[sha1(stepId)];
    expect((await runOnce(env.stop, "preview.closed", id)).error).toBeUndefined();
    const run = await runFunction({
      serveUrl: `${host.url}/api/inngest`,
      fnId: "previews-launch-preview",
      event: launchEvent(id),
      memoized: {
        "check-site": await memo("check-site"),
        "ensure-container": await memo("ensure-container"),
        "start-container": null,
        "wait-ready": partial.result,
      },
    });
    expect(run.body).toEqual({ projectId: id, superseded: true });
    expect(await env.store.get(id)).toMatchObject({ status: "stopped" });
    expect((await env.docker.docker.getContainer(`preview-${id}`).inspect()).State.Running).toBe(false);
    expect(env.inngestServer.eventsNamed("preview.ready").filter((e) => e.data.projectId === id)).toEqual([]);
  });

  it("refuses an invalid projectId before any step runs", async () => {
    const run = await runFunction({
      serveUrl: `${host.url}/api/inngest`,
      fnId: "previews-launch-preview",
      event: { name: "pipeline.step7", data: { projectId: "../../etc" } },
    });
    expect(run.status).toBeGreaterThanOrEqual(400);
    expect(run.ops).toEqual([]);
    expect(run.body).toMatchObject({ name: "EventValidationError", message: expect.stringContaining("projectId must be a DNS label") });
  });
});

describe("/api/inngest in cloud mode (signed requests)", () => {
  const signingKey = `signkey-test-${randomBytes(32).toString("hex")}`;
  let cloud: Awaited<ReturnType<typeof listen>>;
  beforeAll(async () => {
    const inngest = createInngest(inngestConfig({ baseUrl: env.inngestServer.url, signingKey, eventKey: "test-event-key" }));
    const functions = createFunctions(inngest, env.deps);
    cloud = await listen(createApp({ inngest, functions, store: env.store, runtime: env.docker.runtime, apiToken: null }));
  });
  afterAll(async () => {
    await cloud?.close();
  });

  const post = (id: string, signature?: string) => {
    const body = callBody(id);
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (signature !== undefined) headers["x-inngest-signature"] = signature === "sign" ? signRequest(body, signingKey) : signature;
    return fetch(`${cloud.url}/api/inngest?fnId=previews-stop-preview&stepId=step`, { method: "POST", headers, body: JSON.stringify(body) });
  };

  it("rejects an unsigned call with 401 and runs nothing", async () => {
    const id = env.docker.projectId("unsigned");
    const res = await post(id);
    expect(res.status).toBe(401);
    expect(await env.store.get(id)).toBeNull();
  });

  it("rejects a wrongly signed or stale call with 401", async () => {
    const id = env.docker.projectId("badsig");
    const wrongKey = `signkey-test-${randomBytes(32).toString("hex")}`;
    expect((await post(id, signRequest(callBody(id), wrongKey))).status).toBe(401);
    const stale = signRequest(callBody(id), signingKey, new Date(Date.now() - 10 * 60_000));
    expect((await post(id, stale)).status).toBe(401);
  });

  it("runs a correctly signed call to completion", async () => {
    const id = env.docker.projectId("signed");
    await env.docker.writeSite(id);
    const run = await runFunction({
      serveUrl: `${cloud.url}/api/inngest`,
      fnId: "previews-launch-preview",
      event: { name: "preview.requested", data: { projectId: id } },
      signingKey,
    });
    expect(run.status).toBe(200);
    expect(run.body).toMatchObject({ projectId: id });
    expect((await env.store.get(id))?.status).toBe("running");
  });
});

import { createHash, randomUUID } from "node:crypto";
const sha1 = (s: string) => createHash("sha1").update(s).digest("hex");
const launchEvent = (projectId: string) => ({ name: "pipeline.step7", data: { projectId } });

function callBody(projectId: string, state: { steps?: Record<string, unknown>; stack?: string[] } = {}) {
  const event = { name: "pipeline.step7", data: { projectId }, id: randomUUID(), ts: Date.now() };
  return {
    event,
    events: [event],
    steps: state.steps ?? {},
    ctx: {
      run_id: `run-${randomUUID()}`,
      attempt: 0,
      disable_immediate_execution: false,
      use_api: false,
      stack: { stack: state.stack ?? [], current: (state.stack ?? []).length },
    },
    version: 1,
  };
}
