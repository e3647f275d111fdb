/** `pg` Pool for a Postgres server. */
import pg from "pg";
import type { Database } from "../database.js";
import { poolDatabase, poolTimeouts } from "./pool.js";

export function openPg(url: string, timeoutMs: number): Database {
  const pool = new pg.Pool({
    connectionString: url,
    // pg waits forever by default (for a connection, for an answer); a stuck server must
    // surface as a (retryable) error instead of a hung Inngest step or HTTP request.
    ...poolTimeouts(timeoutMs),
    idleTimeoutMillis: 30_000,
  });
  return poolDatabase("pg", pool, timeoutMs);
}
