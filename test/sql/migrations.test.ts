import { spawnSync } from "node:child_process";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { NonRetriableError } from "inngest";
import { connect, type Database, type DatabaseConfig, loadMigrations, migrate, MIGRATIONS_DIR, openDatabase } from "../../sql/database.js";
import { SqlPreviewStore } from "../../sql/preview-store.js";
import { drivers, testDatabaseConfig, type Driver } from "../helpers/postgres.js";

// Each test opens fresh databases; PGlite's first open of a directory takes ~2-3 s.
const TIMEOUT = 60_000;

/** Cleanups registered by a test, run (newest first) after it even when it fails. */
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => {});
});

async function freshConfig(driver: Driver): Promise<DatabaseConfig> {
  const target = await testDatabaseConfig(driver);
  cleanups.push(target.cleanup);
  return target.config;
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

describe("migration files", () => {
  it("are found next to the module and named NNN_name.sql", async () => {
    expect(MIGRATIONS_DIR).toBe(path.resolve(import.meta.dirname, "../../sql/migrations") + path.sep);
    const migrations = await loadMigrations();
    expect(migrations.map((m) => `${m.version}_${m.name}.sql`)).toEqual((await readdir(MIGRATIONS_DIR)).filter((f) => f.endsWith(".sql")).sort());
    expect(migrations[0]).toMatchObject({ version: "001", name: "init" });
  });

  it("refuse a badly named file", async () => {
    const dir = await tempMigrations({ "001_ok.sql": "select 1;", "2-oops.sql": "select 1;" });
    await expect(loadMigrations(dir)).rejects.toThrow(/"2-oops.sql" is not NNN_name.sql/);
  });
});

describe.each(drivers)("migrations on %s", { timeout: TIMEOUT }, (driver) => {
  it("apply every file once; a second run applies nothing", async () => {
    const db = track(await connect(await freshConfig(driver)));
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
    const config = await freshConfig(driver);
    const db1 = await openDatabase(config);
    const first = await recorded(db1);
    await new SqlPreviewStore(db1).record("kept", { status: "running", reason: "ready" });
    await db1.close();

    const db2 = track(await openDatabase(config));
    expect(await recorded(db2)).toEqual(first);
    expect(await migrate(db2)).toEqual([]);
    expect(await new SqlPreviewStore(db2).get("kept")).toMatchObject({ status: "running" });
  });

  it("a failing file rolls back entirely and is not recorded", async () => {
    const dir = await tempMigrations({
      "001_ok.sql": "create table mig_ok (id int primary key);",
      "002_bad.sql": "create table mig_half (id int);\nselect * from mig_missing;",
    });
    const db = track(await connect(await freshConfig(driver)));
    const err = await migrate(db, dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonRetriableError);
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
    const config = await freshConfig(driver);
    // PGlite allows one handle per directory (see the lock test): both migrators share it.
    const a = track(await connect(config));
    const b = driver === "pglite" ? a : track(await connect(config));
    const [doneA, doneB] = await Promise.all([migrate(a, dir), migrate(b, dir)]);
    expect([...doneA, ...doneB].sort()).toEqual(["001", "002"]);
    expect(await a.query("select id, note from mig_once order by id")).toEqual([
      { id: 1, note: null },
      { id: 2, note: "b" },
    ]);
  });

  it("two concurrent openDatabase on one database both succeed", async () => {
    const config = await freshConfig(driver);
    if (driver === "pglite") {
      // Embedded: a second open of the same directory is refused instead of corrupting it.
      const results = await Promise.allSettled([openDatabase(config), openDatabase(config)]);
      const opened = results.filter((r) => r.status === "fulfilled").map((r) => track(r.value));
      const refused = results.filter((r) => r.status === "rejected").map((r) => String(r.reason));
      expect(opened).toHaveLength(1);
      expect(refused).toEqual([expect.stringMatching(/is already open in this process/)]);
      expect((await recorded(opened[0]!)).length).toBeGreaterThan(0);
      return;
    }
    const [a, b] = (await Promise.all([openDatabase(config), openDatabase(config)])).map(track);
    expect(await recorded(a!)).toEqual(await recorded(b!));
    expect((await recorded(a!)).map((r) => r.version)).toEqual((await loadMigrations()).map((m) => m.version));
  });
});

describe("pglite data directory lock", { timeout: TIMEOUT }, () => {
  it("is released on close and taken over when its process is gone", async () => {
    const config = await freshConfig("pglite");
    const lockFile = path.join(config.dataPath, "pglite.lock");
    const db = await openDatabase(config);
    await db.close();
    await db.close(); // idempotent
    await expect(readdir(config.dataPath)).resolves.toEqual(["pglite"]);

    // A lock left by a crashed process (its pid no longer exists) does not block start-up.
    const dead = spawnSync(process.execPath, ["-e", ""]).pid!;
    await writeFile(lockFile, String(dead));
    const reopened = track(await openDatabase(config));
    expect(reopened.driver).toBe("pglite");

    // A live owner blocks it: this test's parent process stands in for another service.
    await reopened.close();
    await writeFile(lockFile, String(process.ppid));
    await expect(openDatabase(config)).rejects.toThrow(`in use by process ${process.ppid}`);
    await rm(lockFile);
  });
});
