/**
 * The database seam: one tiny driver-neutral interface over `pg`, the Neon serverless driver and
 * PGlite, and the migration runner. Database objects are created by the caller and passed in;
 * nothing here is a module-level singleton.
 */
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Config } from "../runtime/config.js";
import { openNeon } from "./drivers/neon.js";
import { openPg } from "./drivers/pg.js";
import { openPglite } from "./drivers/pglite.js";
import { databaseError } from "./errors.js";

export interface Database {
  readonly driver: "pg" | "neon" | "pglite";
  /**
   * One statement, `$1`-style parameters. Rows are plain objects; timestamptz is a `Date`,
   * int8 and numeric are strings, on every driver. Errors are the driver's own (wrap them with
   * `databaseError`).
   */
  query<T extends Record<string, unknown>>(text: string, params?: unknown[]): Promise<T[]>;
  /** Several statements, no parameters, run as ONE implicit transaction (migrations). */
  exec(text: string): Promise<void>;
  close(): Promise<void>;
}

export type DatabaseConfig = Config["database"];

/** Connects without migrating. */
export async function connect(config: DatabaseConfig): Promise<Database> {
  switch (config.driver) {
    case "pglite":
      return openPglite(path.join(config.dataPath, "pglite"));
    case "pg":
    case "neon": {
      if (!config.url) throw new Error(`database: the ${config.driver} driver needs a DATABASE_URL`);
      return config.driver === "pg" ? openPg(config.url) : openNeon(config.url, config.neonWsProxy);
    }
  }
}

/** Connects and applies pending migrations. The caller owns (and closes) the result. */
export async function openDatabase(config: DatabaseConfig): Promise<Database> {
  const db = await connect(config);
  try {
    await migrate(db);
    return db;
  } catch (err) {
    await db.close().catch(() => {});
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Migrations: `sql/migrations/NNN_name.sql`, applied in order, recorded in `schema_migrations`.
//
// Each pending file runs as one exec (one implicit transaction) that
//   1. takes a transaction-scoped advisory lock, so concurrent migrators queue up;
//   2. creates `schema_migrations` if needed (under the lock: concurrent CREATE TABLE IF NOT
//      EXISTS can otherwise fail on pg_type's unique index);
//   3. inserts the file's version BEFORE running it: when another process applied it while we
//      waited, that insert fails with a unique violation, the whole transaction rolls back, and
//      the file counts as done. So a file never runs twice, even if its DDL is not idempotent.
// Rules for migration files: no BEGIN/COMMIT (they would end the implicit transaction early),
// no statements that refuse to run in a transaction (CREATE INDEX CONCURRENTLY).

export const MIGRATIONS_DIR = fileURLToPath(new URL("./migrations/", import.meta.url));

/** Arbitrary, fixed: identifies this service's migration lock among other advisory locks. */
const MIGRATION_LOCK_KEY = 7_316_402_981;
const MIGRATION_FILE = /^(\d{3})_([a-z0-9_]+)\.sql$/;

export interface Migration {
  version: string;
  name: string;
  sql: string;
}

export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith(".sql")).sort();
  const migrations: Migration[] = [];
  for (const file of files) {
    const m = MIGRATION_FILE.exec(file);
    if (!m) throw new Error(`database: migration file name ${JSON.stringify(file)} is not NNN_name.sql`);
    if (migrations.some((x) => x.version === m[1])) throw new Error(`database: two migrations numbered ${m[1]}`);
    migrations.push({ version: m[1]!, name: m[2]!, sql: await readFile(path.join(dir, file), "utf8") });
  }
  return migrations;
}

/** Applies pending migrations; returns the versions THIS call applied (empty when up to date). */
export async function migrate(db: Database, dir = MIGRATIONS_DIR): Promise<string[]> {
  const migrations = await loadMigrations(dir);
  const applied = new Set(await appliedVersions(db));
  const done: string[] = [];
  for (const m of migrations) {
    if (applied.has(m.version)) continue;
    // version and name match MIGRATION_FILE ([0-9a-z_] only), so inlining them is safe; exec
    // takes no parameters.
    const script = [
      `select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY});`,
      `create table if not exists schema_migrations (version text primary key, name text not null, applied_at timestamptz not null default now());`,
      `insert into schema_migrations (version, name) values ('${m.version}', '${m.name}');`,
      m.sql,
    ].join("\n");
    try {
      await db.exec(script);
      done.push(m.version);
    } catch (err) {
      if (isAlreadyRecorded(err)) continue; // another process applied it while we waited
      throw databaseError(`apply migration ${m.version}_${m.name}`, err);
    }
  }
  return done;
}

async function appliedVersions(db: Database): Promise<string[]> {
  try {
    const [row] = await db.query<{ present: boolean }>(`select to_regclass('schema_migrations') is not null as present`);
    if (!row?.present) return [];
    const rows = await db.query<{ version: string }>(`select version from schema_migrations order by version`);
    return rows.map((r) => r.version);
  } catch (err) {
    throw databaseError("read applied migrations", err);
  }
}

function isAlreadyRecorded(err: unknown): boolean {
  const e = err as { code?: unknown; constraint?: unknown; message?: unknown };
  return e?.code === "23505" && (e.constraint === "schema_migrations_pkey" || String(e.message).includes("schema_migrations_pkey"));
}
