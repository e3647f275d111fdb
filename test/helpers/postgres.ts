/**
 * Databases for tests, one entry point per driver:
 *
 *   for (const driver of drivers) { const { db, cleanup } = await openTestDatabase(driver); ... }
 *
 * pg and neon get a fresh, uniquely named database on the local server (so test files run in
 * parallel) that `cleanup` drops; neon reaches it through a local WebSocket-to-TCP proxy, as
 * Neon's own proxy would. pglite is in memory (nothing to clean up but the handle).
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { WebSocketServer } from "ws";
import { openDatabase } from "../../sql/connect.js";
import type { Database } from "../../sql/database.js";
import { openPglite } from "../../sql/drivers/pglite.js";
import { migrate } from "../../sql/migrate.js";
import type { DatabaseSettings } from "../../sql/settings.js";

export const TEST_PG_URL = process.env.TEST_PG_URL || "postgres://previews_test:previews_test@127.0.0.1:5432/previews_test";

/** `DatabaseSettings.timeoutMs` of the test databases: the production default. */
export const TEST_DB_TIMEOUT_MS = 10_000;

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
      settings: { driver, url: null, dataPath, neonWsProxy: null, timeoutMs: TEST_DB_TIMEOUT_MS },
      cleanup: once(() => rm(dataPath, { recursive: true, force: true })),
    };
  }
  const database = await createTestDatabase();
  if (driver === "pg") {
    return { settings: { driver, url: database.url, dataPath: os.tmpdir(), neonWsProxy: null, timeoutMs: TEST_DB_TIMEOUT_MS }, cleanup: database.drop };
  }
  const proxy = await startWsProxy();
  return {
    settings: { driver, url: database.url, dataPath: os.tmpdir(), neonWsProxy: proxy.address, timeoutMs: TEST_DB_TIMEOUT_MS },
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

// ---------------------------------------------------------------------------------------------
// A private Postgres cluster, for fault tests: a server of the test's own that it can pause
// (SIGSTOP: a hung server), stop (an absent one) and drop, without touching any other cluster on
// the machine. Debian's postgresql-common tools; needs root (scripts/provision.sh installs them).

const run = promisify(execFile);

export interface PrivateCluster {
  /** `pg_lsclusters` names it `<version> <name>`. */
  version: string;
  name: string;
  port: number;
  /** postgres:// URL of a role and database created for the test (scram on 127.0.0.1). */
  url: string;
  /** Creates another empty database owned by the same role (the cluster must be running); its URL. */
  createDatabase(): Promise<string>;
  /** SIGSTOP the postmaster and its children: connections stay open, nothing answers. */
  pause(): Promise<void>;
  /** SIGCONT what `pause` stopped. */
  resume(): Promise<void>;
  /** `pg_ctlcluster stop` (fast): the port refuses connections. */
  stop(): Promise<void>;
  /** `pg_ctlcluster start`. */
  start(): Promise<void>;
  /** Resumes if paused, then `pg_dropcluster --stop`. Safe to call twice. */
  drop(): Promise<void>;
}

/** A loopback port that was free a moment ago (for a process that must be told one). */
export async function freeLoopbackPort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** The newest server version installed (`/usr/lib/postgresql/<version>`). */
async function serverVersion(): Promise<string> {
  const versions = (await readdir("/usr/lib/postgresql").catch(() => [] as string[])).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(a) - Number(b));
  const version = versions.at(-1);
  if (!version) throw new Error("no PostgreSQL server installed (/usr/lib/postgresql): run scripts/provision.sh as root");
  return version;
}

/**
 * Creates, starts and prepares a cluster named `sbp_test_<random>` on a free port. Refuses to
 * act on anything but the cluster it created: every command names its version, name and port.
 * The caller must `drop()` it (in `afterAll`); a failure half-way drops what was created.
 */
export async function createPrivateCluster(): Promise<PrivateCluster> {
  const version = await serverVersion();
  const name = `sbp_test_${randomBytes(4).toString("hex")}`;
  let port = 0;
  for (let attempt = 1; ; attempt++) {
    port = await freeLoopbackPort();
    try {
      await run("pg_createcluster", [version, name, "--port", String(port)]);
      break;
    } catch (err) {
      // Another cluster may have claimed the port since; pg_createcluster refuses a used one.
      await run("pg_dropcluster", [version, name]).catch(() => undefined);
      if (attempt === 3) throw new Error(`pg_createcluster ${version} ${name} failed: ${(err as Error).message}`);
    }
  }

  const signal = async (sig: "STOP" | "CONT") => {
    const pids = await clusterPids(version, name);
    // The postmaster first on STOP (it forks no new backend meanwhile), last on CONT.
    for (const pid of sig === "STOP" ? pids : [...pids].reverse()) {
      try {
        process.kill(pid, `SIG${sig}`);
      } catch {
        // a backend that exited meanwhile
      }
    }
  };
  let paused = false;
  // Peer authentication on the socket: the postgres OS user is the superuser.
  const psql = (sql: string) => run("runuser", ["-u", "postgres", "--", "psql", "-X", "-q", "-h", "/var/run/postgresql", "-p", String(port), "-c", sql]);
  const cluster: PrivateCluster = {
    version,
    name,
    port,
    url: "",
    async createDatabase() {
      const db = `previews_fault_${randomBytes(4).toString("hex")}`; // [a-z0-9_]: safe to inline
      await psql(`create database ${db} owner previews_fault`);
      const url = new URL(cluster.url);
      url.pathname = `/${db}`;
      return url.toString();
    },
    async pause() {
      paused = true;
      await signal("STOP");
    },
    async resume() {
      await signal("CONT");
      paused = false;
    },
    async stop() {
      await run("pg_ctlcluster", [version, name, "stop", "-m", "fast"]);
    },
    async start() {
      await run("pg_ctlcluster", [version, name, "start"]);
    },
    drop: once(async () => {
      if (paused) await signal("CONT").catch(() => undefined);
      await run("pg_dropcluster", [version, name, "--stop"]);
    }),
  };
  try {
    await cluster.start();
    const password = randomBytes(12).toString("hex");
    await psql(`create role previews_fault login password '${password}'`);
    await psql("create database previews_fault owner previews_fault");
    cluster.url = `postgres://previews_fault:${password}@127.0.0.1:${port}/previews_fault`;
    return cluster;
  } catch (err) {
    await cluster.drop().catch(() => undefined);
    throw err;
  }
}

/** The postmaster of `<version> <name>` (from its postmaster.pid) and its children (`pgrep -P`). */
async function clusterPids(version: string, name: string): Promise<number[]> {
  const { stdout } = await run("pg_lsclusters", ["-h", version, name]);
  const dataDir = stdout.trim().split(/\s+/)[5];
  if (!dataDir) throw new Error(`pg_lsclusters ${version} ${name}: no data directory in ${JSON.stringify(stdout)}`);
  const postmaster = Number((await readFile(path.join(dataDir, "postmaster.pid"), "utf8")).split("\n")[0]);
  if (!Number.isInteger(postmaster) || postmaster <= 1) throw new Error(`cluster ${version} ${name}: no postmaster pid`);
  const children = await run("pgrep", ["-P", String(postmaster)]).then(
    ({ stdout: out }) => out.split("\n").filter(Boolean).map(Number),
    () => [] as number[], // pgrep exits 1 when there is no child
  );
  return [postmaster, ...children];
}

function once(fn: () => Promise<unknown>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn().then(() => {}));
}
