/**
 * A database that hangs or is down, for real: a private Postgres cluster this file creates (so
 * it can be paused with SIGSTOP and stopped without touching any other cluster on the machine),
 * the pg driver and the Neon driver (through a local WebSocket proxy), and the whole service
 * (`startService`) over HTTP. DATABASE_TIMEOUT is 1s here; the upper bounds on elapsed times are
 * loose on purpose (a noisy 2-core machine), the point being "about the timeout, not until the
 * server comes back".
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { pino, type Logger } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { isPermanent } from "../../functions/ports.js";
import { loadConfig } from "../../runtime/config.js";
import { startService, type RunningService } from "../../runtime/service.js";
import { openDatabase } from "../../sql/connect.js";
import type { Database } from "../../sql/database.js";
import { DatabaseUnavailableError } from "../../sql/errors.js";
import { loadMigrations } from "../../sql/migrate.js";
import { SqlPreviewStore } from "../../sql/preview-store.js";
import { runFunction, startInngestStandIn, type InngestStandIn } from "../helpers/inngest-server.js";
import { createPrivateCluster, startWsProxy, type PrivateCluster } from "../helpers/postgres.js";
import { removeServiceNetwork, serviceNetworkEnv } from "../helpers/service-env.js";

const TIMEOUT_MS = 1_000;
/** Loose: about DATABASE_TIMEOUT (+ the query grace), never "until the server is back". */
const UPPER_BOUND_MS = 8_000;

let cluster: PrivateCluster;
let proxy: Awaited<ReturnType<typeof startWsProxy>>;
let standIn: InngestStandIn;
let tmp: string;
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "sbp-outage-"));
  cleanups.push(() => rm(tmp, { recursive: true, force: true }));
  cluster = await createPrivateCluster();
  cleanups.push(() => cluster.drop());
  proxy = await startWsProxy();
  cleanups.push(() => proxy.close());
  standIn = await startInngestStandIn();
  cleanups.push(() => standIn.close());
});

afterAll(async () => {
  // The cluster is dropped even when a test failed half-way (paused or stopped).
  for (const cleanup of cleanups.reverse()) await cleanup().catch((err: unknown) => console.warn("outage test cleanup:", err));
});

/** Every test leaves the cluster running and answering, whatever happened in it. */
const open: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  await cluster.resume().catch(() => undefined);
  await cluster.start().catch(() => undefined); // already running: pg_ctlcluster refuses, fine
  for (const item of open.splice(0).reverse()) await item.close().catch(() => undefined);
});

/** Elapsed milliseconds and outcome of `fn`. */
async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value?: T; error?: unknown }> {
  const started = performance.now();
  try {
    const value = await fn();
    return { ms: Math.round(performance.now() - started), value };
  } catch (error) {
    return { ms: Math.round(performance.now() - started), error };
  }
}

const measured: string[] = [];
afterAll(async () => {
  await removeServiceNetwork();
  if (measured.length) console.info(`database outage timings (DATABASE_TIMEOUT ${TIMEOUT_MS}ms):\n  ${measured.join("\n  ")}`);
});

/**
 * Opens (and migrates) while the cluster answers. On a loaded machine a first WebSocket
 * connection can take longer than the short timeout under test: that is set-up, not the
 * behaviour measured, so it is tried again (the outage itself is only ever met once).
 */
async function openDriver(driver: "pg" | "neon"): Promise<Database> {
  for (let attempt = 1; ; attempt++) {
    try {
      const db = await openDatabase({
        driver,
        url: cluster.url,
        dataPath: tmp,
        neonWsProxy: driver === "neon" ? proxy.address : null,
        timeoutMs: TIMEOUT_MS,
      });
      open.push(db);
      return db;
    } catch (err) {
      if (attempt >= 5 || !(err instanceof DatabaseUnavailableError)) throw err;
    }
  }
}

describe.each(["pg", "neon"] as const)("a hung server (SIGSTOP) on %s", (driver) => {
  it("fails a store query within about DATABASE_TIMEOUT with a retryable error naming the database, then serves after SIGCONT", async () => {
    const db = await openDriver(driver);
    const store = new SqlPreviewStore(db);
    await store.apply(`${driver}-hang`, "launch", { reason: "before the hang" });
    await store.list(); // a pooled connection stays open: the next query meets the query timeout

    await cluster.pause();
    // 1. On the pooled connection: sent, never answered (client-side query_timeout).
    const pooled = await timed(() => store.get(`${driver}-hang`));
    // 2. On a new connection: the start-up packet is never answered (connection timeout).
    const fresh = await timed(() => store.apply(`${driver}-hang`, "fail", { reason: "during the hang" }));
    measured.push(`${driver}: pooled connection ${pooled.ms}ms, new connection ${fresh.ms}ms`);

    for (const [which, result, action] of [
      ["pooled", pooled, `get project "${driver}-hang"`],
      ["fresh", fresh, `apply "fail" to project "${driver}-hang"`],
    ] as const) {
      expect(result.error, which).toBeInstanceOf(DatabaseUnavailableError);
      expect(isPermanent(result.error), which).toBe(false);
      const err = result.error as DatabaseUnavailableError;
      expect(err.unavailable).toBe("database");
      expect(err.message, which).toMatch(new RegExp(`^database: ${action.replace(/[."]/g, "\\$&")} failed: no (answer|connection) within .*DATABASE_TIMEOUT`));
      // It waited for the timeout (not an instant refusal), and not until the server came back.
      expect(result.ms, which).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
      expect(result.ms, which).toBeLessThan(UPPER_BOUND_MS);
    }
    expect((pooled.error as Error).message).toMatch(/no answer within 1\.5s \(DATABASE_TIMEOUT 1s \+ 500ms grace\); the server may be hung$/);
    expect((fresh.error as Error).message).toMatch(/no connection within 1s \(DATABASE_TIMEOUT\)$/);

    await cluster.resume();
    let after = await timed(() => store.get(`${driver}-hang`));
    measured.push(`${driver}: first query after SIGCONT ${after.ms}ms`);
    // It serves again. On a loaded machine the first new WebSocket connection (neon) can take
    // longer than the short timeout under test, as in `openDriver`: a connection timeout is tried
    // again, a few times; any other error, or still none after that, fails.
    for (let attempt = 1; after.error instanceof DatabaseUnavailableError && /no connection within/.test(after.error.message) && attempt < 5; attempt++) {
      after = await timed(() => store.get(`${driver}-hang`));
      measured.push(`${driver}: query ${attempt + 1} after SIGCONT ${after.ms}ms`);
    }
    expect(after.error).toBeUndefined();
    expect(after.value).toMatchObject({ status: "starting" }); // the write during the hang did not happen
  });
});

describe("a slow statement on a live server", () => {
  it("is cancelled by the server's statement_timeout: retryable, naming the limit", async () => {
    const db = await openDriver("pg");
    const result = await timed(() => db.query("select pg_sleep(5)"));
    measured.push(`pg: pg_sleep(5) cancelled after ${result.ms}ms`);
    expect(result.error).toMatchObject({ name: "DatabaseTimeoutError", message: "statement cancelled by the server after 1s (DATABASE_TIMEOUT) (SQLSTATE 57014)" });
    expect(result.ms).toBeLessThan(UPPER_BOUND_MS);
    await expect(db.query("select 1 as one")).resolves.toEqual([{ one: 1 }]);
  });
});

/** Collects pino's JSON lines. */
function capture(): { log: Logger; lines: Array<Record<string, any>> } {
  const lines: Array<Record<string, any>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString("utf8").split("\n")) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  return { log: pino({ level: "info" }, sink), lines };
}

async function startOn(name: string, extra: Record<string, string> = {}): Promise<{ service: RunningService; base: string; lines: Array<Record<string, any>> }> {
  const { log, lines } = capture();
  const dir = path.join(tmp, name);
  const config = loadConfig({
    PORT: "0",
    HOST: "127.0.0.1",
    DATA_PATH: path.join(dir, "data"),
    STORAGE_PATH: path.join(dir, "storage"),
    INNGEST_DEV: standIn.url,
    DATABASE_URL: cluster.url,
    DATABASE_TIMEOUT: `${TIMEOUT_MS}ms`,
    ...serviceNetworkEnv(),
    ...extra,
  });
  const service = await startService(config, log);
  open.push(service);
  return { service, base: `http://127.0.0.1:${service.port}`, lines };
}

async function getJson(url: string): Promise<{ status: number; body: any; ms: number; retryAfter: string | null }> {
  const started = performance.now();
  const res = await fetch(url);
  const body = await res.json().catch(() => null);
  return { status: res.status, body, ms: Math.round(performance.now() - started), retryAfter: res.headers.get("retry-after") };
}

/** Polls `url` until it answers 200, for at most `ms`. */
async function until200(url: string, ms: number): Promise<{ waitedMs: number }> {
  const started = performance.now();
  let last: unknown;
  while (performance.now() - started < ms) {
    const res = await fetch(url).catch((err: unknown) => err);
    if (res instanceof Response) {
      if (res.status === 200) return { waitedMs: Math.round(performance.now() - started) };
      last = `${res.status} ${await res.text()}`;
    } else last = res;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${url} did not answer 200 within ${ms}ms; last: ${String(last)}`);
}

describe("the service during a hang", () => {
  it("GET /previews answers 503 naming the database while the server hangs, and 200 after SIGCONT", async () => {
    const { service, base } = await startOn("hang");
    await until200(`${base}/readyz`, 30_000);
    await new SqlPreviewStore(service.db).apply("svc-hang", "launch", { reason: "seed" });
    expect((await getJson(`${base}/previews`)).status).toBe(200);

    await cluster.pause();
    const list = await getJson(`${base}/previews`);
    const one = await getJson(`${base}/previews/svc-hang`);
    const ready = await getJson(`${base}/readyz`);
    const health = await getJson(`${base}/healthz`);
    measured.push(`service (pg): GET /previews 503 after ${list.ms}ms, GET /previews/:id 503 after ${one.ms}ms, /readyz 503 after ${ready.ms}ms`);
    for (const res of [list, one]) {
      expect(res.status).toBe(503);
      expect(res.body.error).toMatch(/^database unavailable: (list previews|get project "svc-hang") failed: no (answer|connection) within/);
      expect(res.retryAfter).not.toBeNull();
      expect(res.ms).toBeLessThan(UPPER_BOUND_MS);
    }
    expect(ready.status).toBe(503);
    expect(Object.keys(ready.body.failing)).toContain("database");
    expect(ready.ms).toBeLessThan(UPPER_BOUND_MS);
    expect(health.status).toBe(200);

    // A step call: the store's write fails within the timeout and the SDK reports it retryable.
    const steps: Array<{ name: string; op: string; at: number }> = [];
    const started = performance.now();
    await runFunction({
      serveUrl: `${base}/api/inngest`,
      fnId: "previews-stop-preview",
      event: { name: "preview.closed", data: { projectId: "svc-hang" } },
      maxAttempts: 2,
      onStep: (s) => void steps.push({ name: s.name, op: s.op, at: Math.round(performance.now() - started) }),
    });
    measured.push(`service (pg): step call ${steps.map((s) => `${s.name} ${s.op} at ${s.at}ms`).join(", ")}`);
    expect(steps[0]).toMatchObject({ name: "record-stopping", op: "StepError" });
    expect(steps[0]!.at).toBeLessThan(UPPER_BOUND_MS);

    await cluster.resume();
    const { waitedMs } = await until200(`${base}/previews`, 20_000);
    measured.push(`service (pg): GET /previews 200 again ${waitedMs}ms after SIGCONT`);
    const back = await getJson(`${base}/previews/svc-hang`);
    expect(back.status).toBe(200);
    expect(back.body).toMatchObject({ projectId: "svc-hang", status: "starting" });
  });
});

describe("the service started while the database is down", () => {
  it("serves /healthz, answers 503 on /readyz and /previews naming the database, then migrates and serves once it is back", async () => {
    const fresh = await cluster.createDatabase(); // never migrated: the migrations run once it is back
    await cluster.stop();
    const start = await timed(() => startOn("down", { DATABASE_URL: fresh }));
    measured.push(`service (pg): started with the cluster stopped in ${start.ms}ms`);
    expect(start.error).toBeUndefined();
    const { base, lines } = start.value!;

    expect((await getJson(`${base}/healthz`)).status).toBe(200);
    const ready = await getJson(`${base}/readyz`);
    expect(ready.status).toBe(503);
    expect(ready.body.failing.database).toMatch(/^database: ping failed: not ready: migrations not applied yet/);
    const list = await getJson(`${base}/previews`);
    expect(list.status).toBe(503);
    expect(list.body).toEqual({ error: "database unavailable: list previews failed: not ready yet (migrations not applied)" });
    expect((await getJson(`${base}/previews/svc-down`)).status).toBe(503);

    // Each failed attempt is logged once, with its error.
    await expect.poll(() => lines.filter((l) => l.msg === "database not ready: migrating failed, retrying").length, { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
    const failures = lines.filter((l) => l.msg === "database not ready: migrating failed, retrying");
    expect(failures.map((l) => l.attempt)).toEqual(failures.map((_, i) => i + 1));
    expect(failures[0]).toMatchObject({ level: 40, driver: "pg", err: { message: expect.stringMatching(/^database: read applied migrations failed: .*ECONNREFUSED/) } });

    await cluster.start();
    const { waitedMs } = await until200(`${base}/readyz`, 45_000);
    measured.push(`service (pg): ready ${waitedMs}ms after pg_ctlcluster start (${failures.length}+ failed attempts before)`);
    expect(lines.find((l) => l.msg === "database ready")).toMatchObject({ driver: "pg", applied: (await loadMigrations()).map((m) => m.version) });
    const served = await getJson(`${base}/previews`);
    expect(served.status).toBe(200);
    expect(Array.isArray(served.body.previews)).toBe(true);
  });

  it("starts while the server hangs (SIGSTOP), reports 503 within the bounds, and becomes ready after SIGCONT", async () => {
    await cluster.pause();
    const start = await timed(() => startOn("paused"));
    measured.push(`service (pg): started with the cluster paused in ${start.ms}ms`);
    expect(start.error).toBeUndefined();
    expect(start.ms).toBeLessThan(UPPER_BOUND_MS);
    const { base } = start.value!;
    expect((await getJson(`${base}/healthz`)).status).toBe(200);
    const ready = await getJson(`${base}/readyz`);
    expect(ready.status).toBe(503);
    expect(Object.keys(ready.body.failing)).toEqual(["database"]);
    const list = await getJson(`${base}/previews`);
    expect(list.status).toBe(503);
    expect(list.body.error).toMatch(/^database unavailable: list previews failed: /);

    await cluster.resume();
    const { waitedMs } = await until200(`${base}/readyz`, 45_000);
    measured.push(`service (pg): ready ${waitedMs}ms after SIGCONT`);
    expect((await getJson(`${base}/previews`)).status).toBe(200);
  });

  it("close() stops the background migration loop while the database is down or hung", async () => {
    await cluster.stop();
    let { service, lines } = await startOn("closing");
    await expect.poll(() => lines.filter((l) => l.msg === "database not ready: migrating failed, retrying").length, { timeout: 10_000 }).toBeGreaterThanOrEqual(1);
    let closed = await timed(() => service.close());
    measured.push(`service (pg): close() with the cluster stopped took ${closed.ms}ms`);
    expect(closed.error).toBeUndefined();
    expect(closed.ms).toBeLessThan(UPPER_BOUND_MS);

    // Hung: an attempt may be in flight (waiting for its connection timeout); close waits it out.
    await cluster.start();
    await cluster.pause();
    ({ service, lines } = await startOn("closing-hung"));
    await new Promise((r) => setTimeout(r, 300)); // the first attempt is waiting for the server
    closed = await timed(() => service.close());
    measured.push(`service (pg): close() with the cluster paused took ${closed.ms}ms`);
    expect(closed.error).toBeUndefined();
    expect(closed.ms).toBeLessThan(UPPER_BOUND_MS);
    const attempts = lines.filter((l) => l.msg === "database not ready: migrating failed, retrying").length;
    await new Promise((r) => setTimeout(r, 1_500)); // longer than the first backoff waits
    expect(lines.filter((l) => l.msg === "database not ready: migrating failed, retrying").length).toBe(attempts);
  });

  it("Neon driver: starts while the database is down and serves once it is back", async () => {
    await cluster.stop();
    const { base } = await startOn("neon-down", { DATABASE_DRIVER: "neon", NEON_WS_PROXY: proxy.address });
    expect((await getJson(`${base}/healthz`)).status).toBe(200);
    expect((await getJson(`${base}/readyz`)).status).toBe(503);
    expect((await getJson(`${base}/previews`)).body.error).toMatch(/^database unavailable: list previews failed: not ready yet/);
    await cluster.start();
    const { waitedMs } = await until200(`${base}/previews`, 45_000);
    measured.push(`service (neon): /previews 200 ${waitedMs}ms after pg_ctlcluster start`);
  });
});
