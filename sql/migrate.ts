/**
 * Migrations: `sql/migrations/NNN_name.sql`, applied in order, recorded in `schema_migrations`.
 * Works on any `Database`; imports no driver.
 *
 * Each pending file runs as one exec (one implicit transaction) that
 *   1. takes a transaction-scoped advisory lock, so concurrent migrators queue up;
 *   2. creates `schema_migrations` if needed (under the lock: concurrent CREATE TABLE IF NOT
 *      EXISTS can otherwise fail on pg_type's unique index);
 *   3. inserts the file's version BEFORE running it: when another process applied it while we
 *      waited, that insert fails with a unique violation, the whole transaction rolls back, and
 *      the file counts as done. So a file never runs twice, even if its DDL is not idempotent.
 * Rules for migration files: no BEGIN/COMMIT (they would end the implicit transaction early),
 * no statements that refuse to run in a transaction (CREATE INDEX CONCURRENTLY).
 */
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Database } from "./database.js";
import { databaseError } from "./errors.js";

export const MIGRATIONS_DIR = fileURLToPath(new URL("./migrations/", import.meta.url));

/** Arbitrary, fixed: identifies this service's migration lock among other advisory locks. */
const MIGRATION_LOCK_KEY = 7_316_402_981;
const MIGRATION_FILE = /^(\d{3})_([a-z0-9_]+)\.sql$/;

export interface Migration {
  version: string;
  name: string;
  sql: string;
}

/**
 * The `.sql` files of `dir`, ordered by version. Throws on a file not named NNN_name.sql or two
 * files with one number: a misnamed file would otherwise be skipped or applied out of order.
 */
export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith(".sql")).sort();
  const migrations: Migration[] = [];
  for (const file of files) {
    const m = MIGRATION_FILE.exec(file);
    if (!m) throw new Error(`database: migration file name ${JSON.stringify(file)} is not NNN_name.sql`);
    const version = m[1]!;
    if (migrations.some((x) => x.version === version)) throw new Error(`database: two migrations numbered ${version}`);
    migrations.push({ version, name: m[2]!, sql: await readFile(path.join(dir, file), "utf8") });
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
