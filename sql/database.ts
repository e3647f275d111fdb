/**
 * The database seam: one tiny driver-neutral interface over `pg`, the Neon serverless driver and
 * PGlite. This file is the interface only and imports no driver, so the drivers (which implement
 * it) and the code that uses it (the store, the migration runner) never import each other.
 * Choosing and opening a driver is `connect.ts`; migrations are `migrate.ts`.
 */
import type { DatabaseSettings } from "./settings.js";

/** How one statement is run. */
export interface QueryOptions {
  /**
   * Prepare it once per connection and reuse the plan (pg and Neon: a named statement, named
   * after a hash of its text; PGlite ignores it). For hot statements whose result columns are
   * listed explicitly (a prepared `select *` would break when a migration adds a column).
   */
  prepare?: boolean;
}

export interface Database {
  readonly driver: DatabaseSettings["driver"];
  /**
   * One statement, `$1`-style parameters. Rows are plain objects; timestamptz is a `Date`,
   * int8 and numeric are strings, on every driver. Errors are the driver's own (wrap them with
   * `databaseError`). A pool may run two calls on different connections: anything that must be
   * atomic has to be ONE statement.
   */
  query<T extends Record<string, unknown>>(text: string, params?: unknown[], options?: QueryOptions): Promise<T[]>;
  /** Several statements, no parameters, run as ONE implicit transaction (migrations). */
  exec(text: string): Promise<void>;
  /** Idempotent. */
  close(): Promise<void>;
}
