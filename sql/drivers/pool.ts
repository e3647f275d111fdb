/** `Database` over a node-postgres-compatible pool (`pg`'s and the Neon driver's share the API). */
import { createHash } from "node:crypto";
import type { Database, QueryOptions } from "../database.js";
import { asTimeout } from "../errors.js";

interface PgLikePool {
  query<T>(text: string, params?: unknown[]): Promise<{ rows: T[] }>;
  query<T>(config: { text: string; values: unknown[]; name: string }): Promise<{ rows: T[] }>;
  end(): Promise<void>;
  on(event: "error", listener: (err: Error) => void): unknown;
}

/** A prepared statement's name: the same text gets the same name on every connection. */
const statementName = (text: string): string => `sbp_${createHash("sha1").update(text).digest("hex").slice(0, 20)}`;

/**
 * The limits both pool drivers put on every connection, from `DatabaseSettings.timeoutMs`:
 * - `connectionTimeoutMillis`: a new connection (or a free pooled one) within `timeoutMs`;
 *   node-postgres waits forever by default.
 * - `statement_timeout` (sent in the start-up packet): the server cancels a statement that runs
 *   longer than `timeoutMs` (SQLSTATE 57014) and stops working on it.
 * - `query_timeout`: the client gives up on a query that got no answer `QUERY_TIMEOUT_GRACE_MS`
 *   after that. A hung server (stopped, partitioned) never sends the 57014, so without it a
 *   query would wait until the server came back. The grace lets a live server's own, cleaner,
 *   verdict arrive first.
 * A store call can meet both limits: connect, then query (at most ~2 x timeoutMs in all).
 */
export function poolTimeouts(timeoutMs: number) {
  return {
    connectionTimeoutMillis: timeoutMs,
    statement_timeout: timeoutMs,
    query_timeout: timeoutMs + QUERY_TIMEOUT_GRACE_MS,
  };
}

export const QUERY_TIMEOUT_GRACE_MS = 500;

export function poolDatabase(driver: "pg" | "neon", pool: PgLikePool, timeoutMs: number): Database {
  // An idle client that loses its connection (server restart) emits "error" on the pool; with no
  // listener that would crash the process. The next query reconnects or fails on its own.
  pool.on("error", () => {});
  // The drivers' timeouts say "Query read timeout" and the like; say which limit it was.
  const limits = { timeoutMs, queryTimeoutMs: poolTimeouts(timeoutMs).query_timeout };
  const rethrow = (err: unknown): never => {
    throw asTimeout(err, limits) ?? err;
  };
  return {
    driver,
    async query<T extends Record<string, unknown>>(text: string, params: unknown[] = [], options: QueryOptions = {}) {
      // A named statement is parsed and planned once per connection: for the big compare-and-set
      // of the store that is ~3x less work for the server (measured, 1,000 applies at 8 at once).
      const run = options.prepare ? pool.query<T>({ text, values: params, name: statementName(text) }) : pool.query<T>(text, params);
      return (await run.catch(rethrow)).rows;
    },
    async exec(text: string) {
      // No parameters: the simple query protocol, which accepts several statements and runs
      // them as one implicit transaction.
      await pool.query(text).catch(rethrow);
    },
    async close() {
      await pool.end();
    },
  };
}
