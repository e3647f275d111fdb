/**
 * What the SQL adapter is configured with. `runtime/` maps the parsed environment onto it;
 * nothing in `sql/` reads the environment or imports `runtime/`.
 */
export interface DatabaseSettings {
  driver: "pg" | "neon" | "pglite";
  /** postgres:// URL for pg and neon; null for pglite. */
  url: string | null;
  /** Embedded PGlite lives under `{dataPath}/pglite`. Absolute. */
  dataPath: string;
  /** host:port[/path] of a WebSocket-to-TCP proxy for the Neon driver (local development). */
  neonWsProxy: string | null;
  /**
   * The longest the pg and Neon drivers wait for the server, in milliseconds: to connect
   * (`connectionTimeoutMillis`), for a statement to run (`statement_timeout`, enforced by the
   * server) and for an answer at all (`query_timeout`, enforced here: a hung server never answers,
   * so the server-side limit alone cannot end the wait). PGlite runs in-process and ignores it.
   */
  timeoutMs: number;
}
