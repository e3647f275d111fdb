/**
 * The HTTP host over real HTTP, wired to real parts: a migrated PGlite store, a Docker runtime on
 * the local engine (ping only), and an Inngest client in dev mode pointing at a stand-in server.
 */
import net from "node:net";
import type { AddressInfo } from "node:net";
import type { Hono } from "hono";
import type { Inngest } from "inngest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDockerClient } from "../../docker/client.js";
import { DockerPreviewRuntime } from "../../docker/docker-runtime.js";
import { createFunctions } from "../../functions/index.js";
import { createInngest } from "../../runtime/inngest-client.js";
import { createApp, previewJson, type AppDeps } from "../../runtime/app.js";
import { openPglite } from "../../sql/drivers/pglite.js";
import { SqlPreviewStore } from "../../sql/preview-store.js";
import { createDockerTestEnv, type DockerTestEnv } from "../helpers/docker.js";
import { inngestSettings, startInngestStandIn, type InngestStandIn } from "../helpers/inngest-server.js";
import { openTestDatabase, type TestDatabase } from "../helpers/postgres.js";
import { listen as listenHttp } from "../helpers/http.js";


const TOKEN = "test-token-0123456789abcdef";

let standIn: InngestStandIn;
let dockerEnv: DockerTestEnv;
let database: TestDatabase;
let store: SqlPreviewStore;
let inngest: Inngest;
const cleanups: Array<() => Promise<unknown>> = [];

/** Walks a project through the lifecycle table to a status, as the functions would. */
async function seed(projectId: string, to: "running" | "stopped" | "failed", fields: { url?: string; containerId?: string; logTail?: string; reason?: string } = {}) {
  const reason = fields.reason ?? "seeded";
  await store.apply(projectId, "launch", { reason: "launch", containerId: fields.containerId ?? null });
  if (to === "running") return done(await store.apply(projectId, "ready", { reason, url: fields.url ?? null, containerId: fields.containerId ?? null }));
  if (to === "failed") return done(await store.apply(projectId, "fail", { reason, logTail: fields.logTail ?? null }));
  await store.apply(projectId, "stop", { reason: "stop" });
  return done(await store.apply(projectId, "stopped", { reason }));
}
function done(result: Awaited<ReturnType<SqlPreviewStore["apply"]>>) {
  if (!result.applied) throw new Error(`seed refused at ${result.row?.status}`);
  return result.row;
}

function deps(overrides: Partial<AppDeps> = {}): AppDeps {
  const functions = createFunctions(inngest, { runtime: dockerEnv.runtime, store, site: dockerEnv.site, readyTimeoutMs: 5_000 });
  return { inngest, functions, store, runtime: dockerEnv.runtime, apiToken: null, ...overrides };
}

/** Serves the app on a random loopback port; closed in afterAll. */
async function listen(app: Hono): Promise<string> {
  const server = await listenHttp(app);
  cleanups.push(server.close);
  return server.url;
}

async function getJson(url: string, init?: RequestInit): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(url, init);
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body, headers: res.headers };
}

beforeAll(async () => {
  standIn = await startInngestStandIn();
  cleanups.push(() => standIn.close());
  dockerEnv = await createDockerTestEnv();
  cleanups.push(() => dockerEnv.cleanup());
  database = await openTestDatabase("pglite");
  cleanups.push(() => database.cleanup());
  store = new SqlPreviewStore(database.db);
  inngest = createInngest(inngestSettings({ dev: standIn.url, checkpointing: true }));
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
});

describe("probes (open app)", () => {
  let base: string;
  beforeAll(async () => {
    base = await listen(createApp(deps()));
  });

  it("GET /healthz answers 200 ok", async () => {
    const res = await getJson(`${base}/healthz`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: "ok" });
    expect(res.headers.get("content-type")).toMatch(/application\/json/);
  });

  it("GET /readyz answers 200 ready when Docker and the database answer", async () => {
    const res = await getJson(`${base}/readyz`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: "ready" });
  });

  it("serves the Inngest endpoint with every function", async () => {
    const res = await getJson(`${base}/api/inngest`);
    expect(res.status).toBe(200);
    // The three lifecycle functions, their failure handlers and track-idle.
    expect(res.body).toMatchObject({ function_count: 7 });
  });

  it("answers 404 for an unknown route", async () => {
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });
});

describe("readiness failures", () => {
  it("answers 503 naming docker when the engine is unreachable", async () => {
    const runtime = new DockerPreviewRuntime(createDockerClient({ protocol: "unix", socketPath: "/nonexistent.sock" }), dockerEnv.options);
    const base = await listen(createApp(deps({ runtime })));
    const res = await getJson(`${base}/readyz`);
    expect(res.status).toBe(503);
    expect(res.body.status).toBe("unavailable");
    expect(Object.keys(res.body.failing)).toEqual(["docker"]);
    expect(res.body.failing.docker).toMatch(/docker: ping engine failed/);
    // Liveness does not depend on Docker.
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  });

  it("answers 503 naming database when the database is closed", async () => {
    const closed = await openTestDatabase("pglite");
    await closed.cleanup();
    const closedStore = new SqlPreviewStore(closed.db);
    const base = await listen(createApp(deps({ store: closedStore })));
    const res = await getJson(`${base}/readyz`);
    expect(res.status).toBe(503);
    expect(res.body.status).toBe("unavailable");
    expect(Object.keys(res.body.failing)).toEqual(["database"]);
    expect(typeof res.body.failing.database).toBe("string");
  });

  it("names both when both are down", async () => {
    const closed = await openTestDatabase("pglite");
    await closed.cleanup();
    const runtime = new DockerPreviewRuntime(createDockerClient({ protocol: "unix", socketPath: "/nonexistent.sock" }), dockerEnv.options);
    const base = await listen(createApp(deps({ runtime, store: new SqlPreviewStore(closed.db) })));
    const res = await getJson(`${base}/readyz`);
    expect(res.status).toBe(503);
    expect(Object.keys(res.body.failing).sort()).toEqual(["database", "docker"]);
  });

  it("counts an engine that never answers as failed after the readiness timeout", async () => {
    // A TCP server that accepts and stays silent: the ping hangs.
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((s) => {
      sockets.add(s);
      s.on("error", () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          for (const s of sockets) s.destroy();
          silent.close(() => resolve());
        }),
    );
    const port = (silent.address() as AddressInfo).port;
    const runtime = new DockerPreviewRuntime(createDockerClient({ protocol: "tcp", host: "127.0.0.1", port, tlsVerify: false, certPath: null }), dockerEnv.options);
    const base = await listen(createApp(deps({ runtime, readinessTimeoutMs: 300 })));
    const started = Date.now();
    const res = await getJson(`${base}/readyz`);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(res.status).toBe(503);
    expect(res.body.failing).toEqual({ docker: "no answer within 300ms" });
  });

  it("answers 503 naming the database, without internals, when the store cannot reach it on an API call", async () => {
    const closed = await openTestDatabase("pglite");
    await closed.cleanup();
    const base = await listen(createApp(deps({ store: new SqlPreviewStore(closed.db) })));
    const res = await getJson(`${base}/previews`);
    expect(res.status).toBe(503);
    expect(res.body).toEqual({ error: "database unavailable: list previews failed: cannot reach the server" });
    expect(res.headers.get("retry-after")).not.toBeNull();
  });

  it("answers 500 without internals when the store fails for good on an API call (the statement is refused)", async () => {
    // Never migrated: "relation previews does not exist" (42P01), which no retry changes.
    const unmigrated = await openPglite();
    cleanups.push(() => unmigrated.close());
    const base = await listen(createApp(deps({ store: new SqlPreviewStore(unmigrated) })));
    const res = await getJson(`${base}/previews`);
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: "internal error" });
  });
});

describe("previews API (open app)", () => {
  let base: string;
  beforeAll(async () => {
    base = await listen(createApp(deps()));
  });

  it("lists recorded previews with the documented JSON fields", async () => {
    const running = await seed("app-run-1", "running", { reason: "ready", url: "http://app-run-1.preview.localhost", containerId: "c0ffee" });
    const stopped = await seed("app-stop-1", "stopped", { reason: "idle", containerId: "deadbeef" });
    expect(running && stopped).toBeTruthy();

    const res = await getJson(`${base}/previews`);
    expect(res.status).toBe(200);
    const byId = new Map<string, any>(res.body.previews.map((p: any) => [p.projectId, p]));
    expect(byId.get("app-run-1")).toEqual({
      projectId: "app-run-1",
      status: "running",
      url: "http://app-run-1.preview.localhost",
      containerId: "c0ffee",
      reason: "ready",
      logTail: null,
      stoppedAt: null,
      createdAt: running!.createdAt.toISOString(),
      updatedAt: running!.updatedAt.toISOString(),
      diagnosis: null,
    });
    const s = byId.get("app-stop-1");
    expect(s).toMatchObject({ projectId: "app-stop-1", status: "stopped", url: null, containerId: "deadbeef", reason: "idle" });
    expect(s.stoppedAt).toBe(stopped!.stoppedAt!.toISOString());
    expect(new Date(s.updatedAt).toISOString()).toBe(s.updatedAt);
    // Sorted by project id, as the store returns them.
    const ids = res.body.previews.map((p: any) => p.projectId);
    expect(ids).toEqual([...ids].sort());
  });

  it("returns one preview by id", async () => {
    const failed = await seed("app-fail-1", "failed", { reason: "exited with code 3", containerId: "abc123", logTail: "Error: Cannot find module next\n" });
    const res = await getJson(`${base}/previews/app-fail-1`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual(previewJson(failed!));
    expect(res.body).toMatchObject({
      projectId: "app-fail-1",
      status: "failed",
      url: null,
      containerId: "abc123",
      reason: "exited with code 3",
      logTail: "Error: Cannot find module next\n",
      stoppedAt: null,
    });
    expect(res.body.updatedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(res.body.createdAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it("reflects a later transition", async () => {
    await seed("app-move-1", "running", { reason: "ready", url: "http://app-move-1.preview.localhost", containerId: "c1" });
    await store.apply("app-move-1", "stop", { reason: "stop" });
    await store.apply("app-move-1", "stopped", { reason: "closed" });
    const res = await getJson(`${base}/previews/app-move-1`);
    expect(res.body).toMatchObject({ status: "stopped", reason: "closed", url: "http://app-move-1.preview.localhost", containerId: "c1" });
    expect(res.body.stoppedAt).not.toBeNull();
  });

  it("answers 404 for an unknown project", async () => {
    const res = await getJson(`${base}/previews/no-such-project`);
    expect(res.status).toBe(404);
    expect(res.body.error).toContain("no-such-project");
  });

  it.each([
    ["A", "A"],
    ["a_b", "a_b"],
    ["..%2Fx", "../x"],
    ["a.b", "a.b"],
    ["-a", "-a"],
    ["%60evil%60", "`evil`"],
    ["a".repeat(64), "a".repeat(64)],
  ])("answers 400 naming projectId for %s", async (raw, decoded) => {
    const res = await getJson(`${base}/previews/${raw}`);
    expect(res.status).toBe(400);
    expect(res.body.error).toContain("projectId");
    expect(res.body.error).toContain(JSON.stringify(decoded));
  });

  it("works with app.request() too (pure routing)", async () => {
    const app = createApp(deps());
    const res = await app.request("/previews/app-run-1");
    expect(res.status).toBe(200);
    expect(((await res.json()) as { status: string }).status).toBe("running");
  });
});

describe("previews API with an API token", () => {
  let base: string;
  beforeAll(async () => {
    base = await listen(createApp(deps({ apiToken: TOKEN })));
    await seed("app-auth-1", "running", { reason: "ready", url: "http://app-auth-1.preview.localhost", containerId: "c2" });
  });

  it("answers 401 without an Authorization header", async () => {
    const list = await fetch(`${base}/previews`);
    expect(list.status).toBe(401);
    expect(list.headers.get("www-authenticate")).toMatch(/Bearer/);
    expect((await fetch(`${base}/previews/app-auth-1`)).status).toBe(401);
  });

  it("answers 401 with a wrong token and does not leak data", async () => {
    const res = await fetch(`${base}/previews/app-auth-1`, { headers: { authorization: "Bearer wrong-token-0123456789" } });
    expect(res.status).toBe(401);
    expect(await res.text()).not.toContain("app-auth-1");
    const prefix = await fetch(`${base}/previews`, { headers: { authorization: `Bearer ${TOKEN.slice(0, -1)}` } });
    expect(prefix.status).toBe(401);
  });

  it("refuses other schemes", async () => {
    const res = await fetch(`${base}/previews`, { headers: { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString("base64")}` } });
    expect(res.status).toBe(401);
    // A token with characters outside the bearer charset still works (no 400 from a parser).
    const odd = await listen(createApp(deps({ apiToken: "s3cret!#$:token-with-odd-chars" })));
    expect((await fetch(`${odd}/previews`, { headers: { authorization: "Bearer s3cret!#$:token-with-odd-chars" } })).status).toBe(200);
    expect((await fetch(`${odd}/previews`, { headers: { authorization: "Bearer nope" } })).status).toBe(401);
  });

  it("answers 200 with the right bearer token", async () => {
    const list = await getJson(`${base}/previews`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(list.status).toBe(200);
    expect(list.body.previews.map((p: any) => p.projectId)).toContain("app-auth-1");
    const one = await getJson(`${base}/previews/app-auth-1`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({ projectId: "app-auth-1", status: "running", containerId: "c2" });
  });

  it("checks the token before validating the id", async () => {
    expect((await fetch(`${base}/previews/A`)).status).toBe(401);
  });

  it("keeps /healthz, /readyz and the Inngest endpoint open without a token", async () => {
    const health = await getJson(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(health.body).toEqual({ status: "ok" });
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    expect((await fetch(`${base}/api/inngest`)).status).toBe(200);
  });
});
