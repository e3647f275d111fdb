/**
 * Unit tier: the HTTP host through `app.request()` over in-memory fakes of its ports. The same
 * routes over real HTTP, a real store and a real engine are in app.int.test.ts.
 */
import { describe, expect, it } from "vitest";
import { createFunctions } from "../../functions/index.js";
import type { PreviewRuntime } from "../../functions/ports.js";
import { createApp, outage, OUTAGE_RETRY_AFTER_S, type AppDeps } from "../../runtime/app.js";
import { asTimeout, databaseError, DatabaseNotReadyError } from "../../sql/errors.js";
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

describe("readyz and the preview image (issue 10)", () => {
  it("answers 503 naming the missing image, 200 once it is there", async () => {
    let missing = true;
    const previewImage = async () => {
      if (missing) throw new Error("preview image preview-base:latest not found: docker build -t preview-base:latest docker/preview-base");
    };
    const { app: a } = app({ previewImage });
    let res = await a.request("/readyz");
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ status: "unavailable", failing: { image: expect.stringContaining("preview-base:latest not found") } });
    missing = false;
    res = await a.request("/readyz");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ready" });
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

describe("database outage", () => {
  /** What the SQL store throws when the server is hung (pg's client-side query timeout). */
  const hung = (action: string) => databaseError(action, asTimeout(new Error("Query read timeout"), { timeoutMs: 10_000, queryTimeoutMs: 10_500 }));

  it("a retryable store error answers 503 naming the database, with Retry-After and without the driver's text", async () => {
    const { app: a, store } = app();
    store.failWith = databaseError("list previews", Object.assign(new Error("connect ECONNREFUSED 10.1.2.3:5432"), { code: "ECONNREFUSED" }));
    const res = await a.request("/previews");
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe(String(OUTAGE_RETRY_AFTER_S));
    const body = (await res.json()) as { error: string };
    expect(body).toEqual({ error: "database unavailable: list previews failed: cannot reach the server" });
    expect(JSON.stringify(body)).not.toContain("10.1.2.3");
  });

  it("a hung database (query timeout) answers 503 on list and get, naming the database and the limit", async () => {
    const { app: a, store } = app();
    store.failWith = hung("list previews");
    let res = await a.request("/previews");
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({
      error: "database unavailable: list previews failed: no answer within 10.5s (DATABASE_TIMEOUT 10s + 500ms grace); the server may be hung",
    });
    store.failWith = hung('get project "u-1"');
    res = await a.request("/previews/u-1");
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: string }).error).toMatch(/^database unavailable: get project "u-1" failed: no answer within/);
  });

  it("a database not migrated yet (started while it was down) answers 503", async () => {
    const { app: a, store } = app();
    store.failWith = databaseError("list previews", new DatabaseNotReadyError("not ready: migrations not applied yet (first attempt under way)"));
    const res = await a.request("/previews");
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ error: "database unavailable: list previews failed: not ready yet (migrations not applied)" });
    // Liveness does not depend on the database; readiness names it.
    expect((await a.request("/healthz")).status).toBe(200);
    const ready = await a.request("/readyz");
    expect(ready.status).toBe(503);
    expect(Object.keys(((await ready.json()) as { failing: object }).failing)).toEqual(["database"]);
  });

  it("a permanent store error stays a 500 without internals", async () => {
    const { app: a, store } = app();
    store.failWith = databaseError("list previews", Object.assign(new Error('relation "previews" does not exist'), { code: "42P01", severity: "ERROR" }));
    const res = await a.request("/previews");
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ error: "internal error" });
  });

  it("recognises the marker structurally, whoever sets it", () => {
    expect(outage(Object.assign(new Error("x"), { unavailable: "docker", publicReason: "ping failed" }))).toEqual({ dependency: "docker", reason: "ping failed" });
    expect(outage(Object.assign(new Error("x"), { unavailable: "database" }))).toEqual({ dependency: "database", reason: "try again later" });
    expect(outage(new Error("x"))).toBeNull();
    expect(outage(Object.assign(new Error("x"), { unavailable: "" }))).toBeNull();
    expect(outage(Object.assign(new Error("x"), { unavailable: true }))).toBeNull();
    expect(outage(null)).toBeNull();
    expect(outage("database")).toBeNull();
  });
});
