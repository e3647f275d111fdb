/** `Database` over a node-postgres-compatible pool (`pg`'s and the Neon driver's share the API). */
import type { Database } from "../database.js";

interface PgLikePool {
  query<T>(text: string, params?: unknown[]): Promise<{ rows: T[] }>;
  end(): Promise<void>;
  on(event: "error", listener: (err: Error) => void): unknown;
}

export function poolDatabase(driver: "pg" | "neon", pool: PgLikePool): Database {
  // An idle client that loses its connection (server restart) emits "error" on the pool; with no
  // listener that would crash the process. The next query reconnects or fails on its own.
  pool.on("error", () => {});
  return {
    driver,
    async query<T extends Record<string, unknown>>(text: string, params: unknown[] = []) {
      return (await pool.query<T>(text, params)).rows;
    },
    async exec(text: string) {
      // No parameters: the simple query protocol, which accepts several statements and runs
      // them as one implicit transaction.
      await pool.query(text);
    },
    async close() {
      await pool.end();
    },
  };
}
