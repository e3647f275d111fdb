import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NonRetriableError } from "inngest";
import { connect, openDatabase } from "../../sql/database.js";
import { databaseError, isRetryableDatabaseError } from "../../sql/errors.js";
import { SqlPreviewStore } from "../../sql/preview-store.js";
import { drivers, openTestDatabase, startWsProxy, type TestDatabase } from "../helpers/postgres.js";

/** A loopback port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe("classification", () => {
  it.each(["08006", "08001", "53300", "57P01", "57P03", "57014", "55P03", "40001", "40P01"])("SQLSTATE %s is retryable", (code) => {
    expect(isRetryableDatabaseError(Object.assign(new Error("x"), { code }))).toBe(true);
  });
  it.each(["23505", "23514", "22P02", "42P01", "42601", "42501", "28P01", "3D000"])("SQLSTATE %s is not", (code) => {
    expect(isRetryableDatabaseError(Object.assign(new Error("x"), { code }))).toBe(false);
  });
  it.each(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", undefined])("no SQLSTATE (%s) is retryable", (code) => {
    expect(isRetryableDatabaseError(Object.assign(new Error("Connection terminated unexpectedly"), { code }))).toBe(true);
  });
  it("wraps with the action and keeps the cause", () => {
    const cause = Object.assign(new Error('relation "x" does not exist'), { code: "42P01" });
    const err = databaseError('get project "abc"', cause);
    expect(err).toBeInstanceOf(NonRetriableError);
    expect(err.message).toBe('database: get project "abc" failed: relation "x" does not exist (SQLSTATE 42P01)');
    expect(err.cause).toBe(cause);
  });
});

describe("unreachable server", () => {
  it("pg: connection refused is a retryable error naming the action", async () => {
    const port = await closedPort();
    const db = await connect({ driver: "pg", url: `postgres://u:p@127.0.0.1:${port}/x`, dataPath: "/nonexistent", neonWsProxy: null });
    try {
      const store = new SqlPreviewStore(db);
      const err = await store.record("abc", { status: "running", reason: "ready" }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err).not.toBeInstanceOf(NonRetriableError);
      expect((err as Error).message).toMatch(/^database: record "running" for project "abc" failed: .*ECONNREFUSED/);
      expect((err as Error).cause).toMatchObject({ code: "ECONNREFUSED" });
      await expect(store.ping()).rejects.toThrow(/^database: ping failed: .*ECONNREFUSED/);
    } finally {
      await db.close();
    }
    const opening = await openDatabase({ driver: "pg", url: `postgres://u:p@127.0.0.1:${port}/x`, dataPath: "/nonexistent", neonWsProxy: null }).catch((e: unknown) => e);
    expect(opening).not.toBeInstanceOf(NonRetriableError);
    expect((opening as Error).message).toMatch(/^database: read applied migrations failed: .*ECONNREFUSED/);
  });

  it("neon: a proxy whose server refuses is a retryable error naming the action", async () => {
    const port = await closedPort();
    const proxy = await startWsProxy();
    const db = await connect({ driver: "neon", url: `postgres://u:p@127.0.0.1:${port}/x`, dataPath: "/nonexistent", neonWsProxy: proxy.address });
    try {
      const err = await new SqlPreviewStore(db).get("abc").catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err).not.toBeInstanceOf(NonRetriableError);
      expect((err as Error).message).toMatch(/^database: get project "abc" failed: \S/);
    } finally {
      await db.close();
      await proxy.close();
    }
  });

  it("neon: an unreachable proxy is a retryable error naming the action", async () => {
    const port = await closedPort();
    const db = await connect({ driver: "neon", url: "postgres://u:p@127.0.0.1:5432/x", dataPath: "/nonexistent", neonWsProxy: `127.0.0.1:${port}` });
    try {
      const err = await new SqlPreviewStore(db).ping().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err).not.toBeInstanceOf(NonRetriableError);
      expect((err as Error).message).toMatch(/^database: ping failed: .*ECONNREFUSED/);
    } finally {
      await db.close();
    }
  });
});

describe.each(drivers)("real server errors on %s", (driver) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await openTestDatabase(driver);
  }, 60_000);
  afterAll(async () => {
    await t?.cleanup();
  });

  it.each([
    ["select * from no_such_table", "42P01"],
    ["select 'x'::int", "22P02"],
    ["select from", "42601"],
  ])("%s -> NonRetriableError (%s)", async (sql, code) => {
    const cause = await t.db.query(sql).catch((e: unknown) => e);
    expect(cause).toMatchObject({ code });
    expect(databaseError("probe", cause)).toBeInstanceOf(NonRetriableError);
  });
});

// PGlite has one backend in-process: nothing to terminate.
describe.each(["pg", "neon"] as const)("a terminated session on %s", (driver) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await openTestDatabase(driver);
  }, 60_000);
  afterAll(async () => {
    await t?.cleanup();
  });

  it("is a retryable error (57P01) and the pool recovers", async () => {
    const cause = await t.db.query("select pg_terminate_backend(pg_backend_pid())").catch((e: unknown) => e);
    expect(cause).toMatchObject({ code: "57P01" });
    expect(databaseError("probe", cause)).not.toBeInstanceOf(NonRetriableError);
    await expect(new SqlPreviewStore(t.db).ping()).resolves.toBeUndefined();
  });
});
