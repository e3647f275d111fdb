/** The migration runner on every driver: once per file, atomic per file, safe when concurrent. */
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { connect, openDatabase } from "../../sql/connect.js";
import type { Database } from "../../sql/database.js";
import { initInChildProcess, openPglite } from "../../sql/drivers/pglite.js";
import { PermanentDatabaseError } from "../../sql/errors.js";
import { loadMigrations, migrate } from "../../sql/migrate.js";
import { SqlPreviewStore } from "../../sql/preview-store.js";
import type { DatabaseSettings } from "../../sql/settings.js";
import { drivers, testDatabaseSettings, type Driver } from "../helpers/postgres.js";

// Each test opens fresh databases; PGlite's first open of a directory takes ~2-3 s.
const TIMEOUT = 60_000;

/** Cleanups registered by a test, run (newest first) after it even when it fails. */
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => {});
});

async function freshSettings(driver: Driver): Promise<DatabaseSettings> {
  const target = await testDatabaseSettings(driver);
  cleanups.push(target.cleanup);
  return target.settings;
}
function track<T extends Database>(db: T): T {
  cleanups.push(() => db.close());
  return db;
}
async function tempMigrations(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "previews-migrations-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  for (const [name, sql] of Object.entries(files)) await writeFile(path.join(dir, name), sql);
  return dir;
}
async function recorded(db: Database) {
  return db.query<{ version: string; name: string; applied_at: Date }>("select version, name, applied_at from schema_migrations order by version");
}

describe.each(drivers)("migrations on %s", { timeout: TIMEOUT }, (driver) => {
  it("apply every file once; a second run applies nothing", async () => {
    const db = track(await connect(await freshSettings(driver)));
    const all = (await loadMigrations()).map((m) => m.version);
    expect(await migrate(db)).toEqual(all);
    const first = await recorded(db);
    expect(first.map((r) => r.version)).toEqual(all);
    expect(first[0]!.applied_at).toBeInstanceOf(Date);
    const [tables] = await db.query<{ previews: string | null; events: string | null }>(
      "select to_regclass('previews')::text as previews, to_regclass('preview_events')::text as events",
    );
    expect(tables).toEqual({ previews: "previews", events: "preview_events" });

    expect(await migrate(db)).toEqual([]);
    expect(await recorded(db)).toEqual(first);
  });

  it("openDatabase twice: the second open applies nothing and sees the data", async () => {
    const settings = await freshSettings(driver);
    const db1 = await openDatabase(settings);
    const first = await recorded(db1);
    await new SqlPreviewStore(db1).apply("kept", "launch", { reason: "requested" });
    await db1.close();

    const db2 = track(await openDatabase(settings));
    expect(await recorded(db2)).toEqual(first);
    expect(await migrate(db2)).toEqual([]);
    expect(await new SqlPreviewStore(db2).get("kept")).toMatchObject({ status: "starting" });
  });

  it("a failing file rolls back entirely and is not recorded", async () => {
    const dir = await tempMigrations({
      "001_ok.sql": "create table mig_ok (id int primary key);",
      "002_bad.sql": "create table mig_half (id int);\nselect * from mig_missing;",
    });
    const db = track(await connect(await freshSettings(driver)));
    const err = await migrate(db, dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentDatabaseError);
    expect((err as Error).message).toMatch(/^database: apply migration 002_bad failed: .*mig_missing/);
    expect((await recorded(db)).map((r) => r.version)).toEqual(["001"]);
    const [row] = await db.query<{ ok: string | null; half: string | null }>("select to_regclass('mig_ok')::text as ok, to_regclass('mig_half')::text as half");
    expect(row).toEqual({ ok: "mig_ok", half: null });
  });

  it("two concurrent migrators apply each file exactly once", async () => {
    // Deliberately NOT idempotent: running either file twice would fail (42P07 / 42701).
    const dir = await tempMigrations({
      "001_once.sql": "create table mig_once (id int primary key); insert into mig_once values (1);",
      "002_more.sql": "alter table mig_once add column note text; insert into mig_once values (2, 'b');",
    });
    const settings = await freshSettings(driver);
    // PGlite allows one handle per directory (see the lock test): both migrators share it.
    const a = track(await connect(settings));
    const b = driver === "pglite" ? a : track(await connect(settings));
    const [doneA, doneB] = await Promise.all([migrate(a, dir), migrate(b, dir)]);
    expect([...doneA, ...doneB].sort()).toEqual(["001", "002"]);
    expect(await a.query("select id, note from mig_once order by id")).toEqual([
      { id: 1, note: null },
      { id: 2, note: "b" },
    ]);
  });

  it("two concurrent openDatabase on one database both succeed", async () => {
    const settings = await freshSettings(driver);
    if (driver === "pglite") {
      // Embedded: a second open of the same directory is refused instead of corrupting it.
      const results = await Promise.allSettled([openDatabase(settings), openDatabase(settings)]);
      const opened = results.filter((r) => r.status === "fulfilled").map((r) => track(r.value));
      const refused = results.filter((r) => r.status === "rejected").map((r) => String(r.reason));
      expect(opened).toHaveLength(1);
      expect(refused).toEqual([expect.stringMatching(/is already open in this process/)]);
      expect((await recorded(opened[0]!)).length).toBeGreaterThan(0);
      return;
    }
    const [a, b] = (await Promise.all([openDatabase(settings), openDatabase(settings)])).map(track);
    expect(await recorded(a!)).toEqual(await recorded(b!));
    expect((await recorded(a!)).map((r) => r.version)).toEqual((await loadMigrations()).map((m) => m.version));
  });
});

describe("pglite data directory lock", { timeout: TIMEOUT }, () => {
  it("is released on close and taken over when its process is gone", async () => {
    const settings = await freshSettings("pglite");
    const lockFile = path.join(settings.dataPath, "pglite.lock");
    const db = await openDatabase(settings);
    await db.close();
    await db.close(); // idempotent
    await expect(readdir(settings.dataPath)).resolves.toEqual(["pglite"]);

    // A lock left by a crashed process (its pid no longer exists) does not block start-up.
    const dead = spawnSync(process.execPath, ["-e", ""]).pid!;
    await writeFile(lockFile, String(dead));
    const reopened = track(await openDatabase(settings));
    expect(reopened.driver).toBe("pglite");

    // A live owner blocks it: this test's parent process stands in for another service.
    await reopened.close();
    await writeFile(lockFile, String(process.ppid));
    await expect(openDatabase(settings)).rejects.toThrow(`in use by process ${process.ppid}`);
    await rm(lockFile);
  });
});

// Issue 10 (memory; sql/drivers/pglite.ts "Memory", bench/memory.ts): the embedded database's
// buffer pool is 16 MB, and a new data directory is initialised in a child process.
describe("pglite memory settings", { timeout: TIMEOUT }, () => {
  it("a new data directory is initialised by a child process; the open then finds the database", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "previews-pglite-init-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await initInChildProcess(dir);
    // Only the child ran: this process has opened nothing yet.
    expect((await readdir(dir)).sort()).toEqual(expect.arrayContaining(["PG_VERSION", "base", "global", "postgresql.conf"]));
    const db = track(await openPglite(dir));
    expect(await db.query("select current_setting('shared_buffers') as sb")).toEqual([{ sb: "16MB" }]);
    // Run again on an initialised directory: nothing is done (the database is kept).
    await db.exec("create table kept (id int)");
    await db.close();
    await initInChildProcess(dir);
    const again = track(await openPglite(dir));
    expect(await again.query("select count(*) as n from kept")).toEqual([{ n: "0" }]);
  });

  it("the child initialises aside and renames onto an empty directory only: a folder with other files is left to the open, no staging left behind", async () => {
    const parent = await mkdtemp(path.join(os.tmpdir(), "previews-pglite-init-"));
    cleanups.push(() => rm(parent, { recursive: true, force: true }));
    const dir = path.join(parent, "data");
    await mkdir(dir);
    await writeFile(path.join(dir, "stray"), "not a database");
    await initInChildProcess(dir);
    expect(await readdir(dir)).toEqual(["stray"]);
    expect(await readdir(parent)).toEqual(["data"]);
  }, TIMEOUT);

  it("a start killed during its initdb leaves a staging folder: the next open removes it; no stale lock copies stay", async () => {
    const parent = await mkdtemp(path.join(os.tmpdir(), "previews-pglite-init-"));
    cleanups.push(() => rm(parent, { recursive: true, force: true }));
    const dir = path.join(parent, "data");
    await mkdir(path.join(parent, "data.init-999999", "base"), { recursive: true });
    await writeFile(`${dir}.lock`, String(spawnSync(process.execPath, ["-e", ""]).pid!)); // stale
    const db = track(await openPglite(dir));
    expect(await db.query("select 1 as one")).toEqual([{ one: 1 }]);
    expect((await readdir(parent)).sort()).toEqual(["data", "data.lock"]);
  }, TIMEOUT);

  it("a data directory that is a symbolic link is opened at its real path (and locked there)", async () => {
    const parent = await mkdtemp(path.join(os.tmpdir(), "previews-pglite-link-"));
    cleanups.push(() => rm(parent, { recursive: true, force: true }));
    await mkdir(path.join(parent, "real"));
    await symlink(path.join(parent, "real"), path.join(parent, "alias"));
    const db = track(await openPglite(path.join(parent, "alias")));
    await db.exec("create table t (id int)");
    expect((await readdir(parent)).sort()).toEqual(["alias", "real", "real.lock"]);
    await expect(openPglite(path.join(parent, "real"))).rejects.toThrow(/already open in this process/);
  }, TIMEOUT);

  it("in memory too: shared_buffers 16MB", async () => {
    const db = track(await openPglite());
    expect(await db.query("show shared_buffers")).toEqual([{ shared_buffers: "16MB" }]);
  });
});
