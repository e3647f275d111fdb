/**
 * Databases for tests, one entry point per driver:
 *
 *   for (const driver of drivers) { const { db, cleanup } = await openTestDatabase(driver); ... }
 *
 * pg and neon get a fresh, uniquely named database on the local server (so test files run in
 * parallel) that `cleanup` drops; neon reaches it through a local WebSocket-to-TCP proxy, as
 * Neon's own proxy would. pglite is in memory (nothing to clean up but the handle).
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { WebSocketServer } from "ws";
import { openDatabase } from "../../sql/connect.js";
import type { Database } from "../../sql/database.js";
import { openPglite } from "../../sql/drivers/pglite.js";
import { migrate } from "../../sql/migrate.js";
import type { DatabaseSettings } from "../../sql/settings.js";

export const TEST_PG_URL = process.env.TEST_PG_URL || "postgres://previews_test:previews_test@127.0.0.1:5432/previews_test";

export const drivers = ["pglite", "pg", "neon"] as const;
export type Driver = (typeof drivers)[number];

export interface TestDatabase {
  db: Database;
  /** The database's postgres:// URL (pg, neon: for a second, raw connection); null for pglite. */
  url: string | null;
  /** Closes `db` and drops whatever was created for it. Safe to call twice. */
  cleanup(): Promise<void>;
}

/** A migrated database of the given driver, for one test file (or one test). */
export async function openTestDatabase(driver: Driver): Promise<TestDatabase> {
  if (driver === "pglite") {
    const db = await openPglite();
    await migrate(db).catch(async (err: unknown) => {
      await db.close();
      throw err;
    });
    return { db, url: null, cleanup: once(() => db.close()) };
  }
  const target = await testDatabaseSettings(driver);
  try {
    const db = await openDatabase(target.settings);
    return {
      db,
      url: target.settings.url,
      cleanup: once(async () => {
        await db.close().catch(() => {});
        await target.cleanup();
      }),
    };
  } catch (err) {
    await target.cleanup();
    throw err;
  }
}

/**
 * `DatabaseSettings` pointing at something fresh and empty (not migrated): a new database
 * (pg, neon through a proxy) or a new temporary directory (pglite, file-backed). For tests that
 * open, reopen or migrate themselves. `cleanup` drops it; close your handles first.
 */
export async function testDatabaseSettings(driver: Driver): Promise<{ settings: DatabaseSettings; cleanup(): Promise<void> }> {
  if (driver === "pglite") {
    const dataPath = await mkdtemp(path.join(os.tmpdir(), "previews-pglite-"));
    return {
      settings: { driver, url: null, dataPath, neonWsProxy: null },
      cleanup: once(() => rm(dataPath, { recursive: true, force: true })),
    };
  }
  const database = await createTestDatabase();
  if (driver === "pg") {
    return { settings: { driver, url: database.url, dataPath: os.tmpdir(), neonWsProxy: null }, cleanup: database.drop };
  }
  const proxy = await startWsProxy();
  return {
    settings: { driver, url: database.url, dataPath: os.tmpdir(), neonWsProxy: proxy.address },
    cleanup: once(async () => {
      await proxy.close();
      await database.drop();
    }),
  };
}

/** Creates `previews_t_<random>` on the TEST_PG_URL server; `drop` removes it (even if in use). */
export async function createTestDatabase(): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  // Generated here, [a-z0-9_] only: safe to inline (CREATE DATABASE takes no parameters).
  const name = `previews_t_${randomBytes(6).toString("hex")}`;
  await admin(`create database ${name}`);
  const url = new URL(TEST_PG_URL);
  url.pathname = `/${name}`;
  return { name, url: url.toString(), drop: once(() => admin(`drop database if exists ${name} with (force)`)) };
}

async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: TEST_PG_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/**
 * A WebSocket-to-TCP proxy on a random loopback port, speaking what the Neon driver expects
 * from `wsProxy`: `ws://<address>?address=<host>:<port>`, then raw Postgres protocol bytes both
 * ways. `address` is the value for `DatabaseSettings.neonWsProxy`.
 */
export async function startWsProxy(): Promise<{ address: string; close(): Promise<void> }> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  const sockets = new Set<net.Socket>();
  wss.on("connection", (ws, req) => {
    const target = new URL(req.url ?? "/", "ws://proxy").searchParams.get("address") ?? "";
    const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
    const socket = net.connect(port, host); // writes before "connect" are buffered by Node
    sockets.add(socket);
    ws.on("message", (data: Buffer) => socket.write(data));
    socket.on("data", (data) => ws.send(data));
    ws.on("close", () => socket.destroy());
    ws.on("error", () => socket.destroy());
    socket.on("close", () => {
      sockets.delete(socket);
      ws.close();
    });
    socket.on("error", () => ws.terminate());
  });
  await new Promise<void>((resolve, reject) => wss.once("listening", resolve).once("error", reject));
  const { port } = wss.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    close: once(async () => {
      for (const client of wss.clients) client.terminate();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    }),
  };
}

function once(fn: () => Promise<unknown>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn().then(() => {}));
}
