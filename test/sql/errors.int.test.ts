/** Real drivers against unreachable and real servers: what their failures become. */
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isPermanent } from "../../functions/ports.js";
import { connect, openDatabase } from "../../sql/connect.js";
import { databaseError, PermanentDatabaseError } from "../../sql/errors.js";
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

describe("unreachable server", () => {
  it("pg: connection refused is a retryable error naming the action", async () => {
    const port = await closedPort();
    const settings = { driver: "pg", url: `postgres://u:p@127.0.0.1:${port}/x`, dataPath: "/nonexistent", neonWsProxy: null, timeoutMs: 10_000 } as const;
    const db = await connect(settings);
    try {
      const store = new SqlPreviewStore(db);
      const err = await store.apply("abc", "launch", { reason: "requested" }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(isPermanent(err)).toBe(false);
      expect((err as Error).message).toMatch(/^database: apply "launch" to project "abc" failed: .*ECONNREFUSED/);
      expect((err as Error).cause).toMatchObject({ code: "ECONNREFUSED" });
      await expect(store.ping()).rejects.toThrow(/^database: ping failed: .*ECONNREFUSED/);
    } finally {
      await db.close();
    }
    const opening = await openDatabase(settings).catch((e: unknown) => e);
    expect(isPermanent(opening)).toBe(false);
    expect((opening as Error).message).toMatch(/^database: read applied migrations failed: .*ECONNREFUSED/);
  });

  it("neon: a proxy whose server refuses is a retryable error naming the action", async () => {
    const port = await closedPort();
    const proxy = await startWsProxy();
    const db = await connect({ driver: "neon", url: `postgres://u:p@127.0.0.1:${port}/x`, dataPath: "/nonexistent", neonWsProxy: proxy.address, timeoutMs: 10_000 });
    try {
      const err = await new SqlPreviewStore(db).get("abc").catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(isPermanent(err)).toBe(false);
      expect((err as Error).message).toMatch(/^database: get project "abc" failed: \S/);
    } finally {
      await db.close();
      await proxy.close();
    }
  });

  it("neon: an unreachable proxy is a retryable error naming the action", async () => {
    const port = await closedPort();
    const db = await connect({ driver: "neon", url: "postgres://u:p@127.0.0.1:5432/x", dataPath: "/nonexistent", neonWsProxy: `127.0.0.1:${port}`, timeoutMs: 10_000 });
    try {
      const err = await new SqlPreviewStore(db).ping().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(isPermanent(err)).toBe(false);
      expect((err as Error).message).toMatch(/^database: ping failed: .*ECONNREFUSED/);
    } finally {
      await db.close();
    }
  });

  it("pg and neon without a URL are refused before any connection", async () => {
    for (const driver of ["pg", "neon"] as const) {
      await expect(connect({ driver, url: null, dataPath: "/nonexistent", neonWsProxy: null, timeoutMs: 10_000 })).rejects.toThrow(`the ${driver} driver needs a DATABASE_URL`);
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
    ["select 1/0", "22012"],
  ])("%s -> PermanentError (%s)", async (sql, code) => {
    const cause = await t.db.query(sql).catch((e: unknown) => e);
    expect(cause).toMatchObject({ code });
    const err = databaseError("probe", cause);
    expect(err).toBeInstanceOf(PermanentDatabaseError);
    expect(err).toMatchObject({ sqlState: code, message: expect.stringMatching(new RegExp(`^database: probe failed: .*\\(SQLSTATE ${code}\\)$`)) });
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
    expect(isPermanent(databaseError("probe", cause))).toBe(false);
    await expect(new SqlPreviewStore(t.db).ping()).resolves.toBeUndefined();
  });
});
