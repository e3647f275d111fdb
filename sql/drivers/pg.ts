/** `pg` Pool for a Postgres server. */
import pg from "pg";
import type { Database } from "../database.js";
import { poolDatabase } from "./pool.js";

export function openPg(url: string): Database {
  const pool = new pg.Pool({
    connectionString: url,
    // pg waits forever for a connection by default; a stuck server must surface as a
    // (retryable) error instead of a hung Inngest step.
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
  });
  return poolDatabase("pg", pool);
}
