/** `pg` Pool for a Postgres server. */
import pg from "pg";
import type { Database } from "../database.js";

export function openPg(url: string): Database {
  const pool = new pg.Pool({
    connectionString: url,
    // pg waits forever for a connection by default; a stuck server must surface as a
    // (retryable) error instead of a hung Inngest step.
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
  });
  // An idle client that loses its connection (server restart) emits "error" on the pool; with no
  // listener that would crash the process. The next query reconnects or fails on its own.
  pool.on("error", () => {});
  return {
    driver: "pg",
    async query<T extends Record<string, unknown>>(text: string, params: unknown[] = []) {
      const result = await pool.query<T>(text, params);
      return result.rows;
    },
    async exec(text: string) {
      // No parameters: pg uses the simple query protocol, which accepts several statements
      // and runs them as one implicit transaction.
      await pool.query(text);
    },
    async close() {
      await pool.end();
    },
  };
}
