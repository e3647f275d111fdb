/**
 * Unit tier: the HTTP host through `app.request()` over in-memory fakes of its ports. The same
 * routes over real HTTP, a real store and a real engine are in app.int.test.ts.
 */
import { describe, expect, it } from "vitest";
import { createFunctions } from "../../functions/index.js";
import type { PreviewRuntime } from "../../functions/ports.js";
import { createApp, type AppDeps } from "../../runtime/app.js";
import { createInngest } from "../../runtime/inngest-client.js";
import { FakeRuntime, FakeSiteFiles } from "../fakes/fake-runtime.js";
import { MemoryPreviewStore } from "../fakes/memory-store.js";
import { inngestSettings } from "../helpers/inngest-server.js";

const TOKEN = "unit-token-0123456789abcdef";

function app(overrides: Partial<AppDeps> = {}) {
  const store = new MemoryPreviewStore();
  const runtime = new FakeRuntime();
  const inngest = createInngest(inngestSettings({ dev: true }));
  const functions = createFunctions(inngest, { runtime, store, site: new FakeSiteFiles(), readyTimeoutMs: 1000 });
  const deps: AppDeps = { inngest, functions, store, runtime, apiToken: null, ...overrides };
  return { app: createApp(deps), store: deps.store as MemoryPreviewStore, runtime };
}

describe("probes", () => {
  it("healthz is 200 whatever Docker and the database do", async () => {
    const { app: a, store, runtime } = app();
    store.failWith = new Error("database down");
    runtime.failNext("ping", new Error("docker down"));
    const res = await a.request("/healthz");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok" });
  });

  it("readyz is 200 when both answer, 503 naming each that does not", async () => {
    const { app: a, store, runtime } = app();
    expect((await a.request("/readyz")).status).toBe(200);
    runtime.failNext("ping", new Error("docker: ping engine failed: ENOENT"));
    let res = await a.request("/readyz");
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ status: "unavailable", failing: { docker: "docker: ping engine failed: ENOENT" } });
    store.failWith = new Error("database: ping failed: ECONNREFUSED");
    res = await a.request("/readyz");
    expect(Object.keys(((await res.json()) as { failing: object }).failing).sort()).toEqual(["database", "docker"]);
  });

  it("readyz counts a probe that never answers as failed after the timeout", async () => {
    const hanging: Pick<PreviewRuntime, "ping"> = { ping: () => new Promise<void>(() => undefined) };
    const { app: a } = app({ runtime: hanging, readinessTimeoutMs: 50 });
    const res = await a.request("/readyz");
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ status: "unavailable", failing: { docker: "no answer within 50ms" } });
  });
});

describe("previews API", () => {
  it("lists and gets previews; 404 for an unknown project; 400 naming an invalid id", async () => {
    const { app: a, store } = app();
    await store.apply("u-1", "launch", { reason: "launch" });
    await store.apply("u-1", "ready", { reason: "ready", url: "http://u-1.preview.localhost", containerId: "c1" });
    const list = (await (await a.request("/previews")).json()) as { previews: Array<{ projectId: string; status: string }> };
    expect(list.previews).toEqual([expect.objectContaining({ projectId: "u-1", status: "running", url: "http://u-1.preview.localhost" })]);
    const one = await a.request("/previews/u-1");
    expect(one.status).toBe(200);
    expect(await one.json()).toMatchObject({ projectId: "u-1", containerId: "c1", stoppedAt: null });
    const missing = await a.request("/previews/u-2");
    expect(missing.status).toBe(404);
    const bad = await a.request("/previews/A_B");
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/projectId "A_B"/);
  });

  it("with API_TOKEN: 401 without or with a wrong bearer, before the id is checked; 200 with it", async () => {
    const { app: a } = app({ apiToken: TOKEN });
    expect((await a.request("/previews")).status).toBe(401);
    expect((await a.request("/previews/A", { headers: { authorization: "Bearer nope" } })).status).toBe(401);
    expect((await a.request("/previews", { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
    expect((await a.request("/healthz")).status).toBe(200);
  });

  it("a store failure is a 500 without internals", async () => {
    const { app: a, store } = app();
    store.failWith = new Error("database: list previews failed: password authentication failed for user x");
    const res = await a.request("/previews");
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ error: "internal error" });
  });
});
