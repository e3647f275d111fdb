/** `@neondatabase/serverless` Pool (node-postgres over a WebSocket) for Neon. */
import { Client, Pool } from "@neondatabase/serverless";
import ws from "ws";
import type { Database } from "../database.js";
import { poolDatabase, poolTimeouts } from "./pool.js";

/**
 * @param wsProxy host:port[/path] of a plain WebSocket-to-TCP proxy (local development, tests);
 *   null for Neon itself (its own secure proxy).
 * @param timeoutMs connection, statement and query timeouts, as for pg (`poolTimeouts`): the
 *   driver is node-postgres over a WebSocket and honours the same options.
 */
export function openNeon(url: string, wsProxy: string | null, timeoutMs: number): Database {
  // The settings go on each client's own `neonConfig` rather than the library's global one, so
  // two databases in one process (tests) can use different proxies.
  class ConfiguredClient extends Client {
    constructor(config?: ConstructorParameters<typeof Client>[0]) {
      super(config);
      // Node 20 has no global WebSocket.
      this.neonConfig.webSocketConstructor = ws;
      if (wsProxy !== null) {
        this.neonConfig.wsProxy = (host, port) => `${wsProxy}?address=${host}:${port}`;
        this.neonConfig.useSecureWebSocket = false;
        // Pipelining the password only works with cleartext auth; a local server uses scram.
        this.neonConfig.pipelineConnect = false;
        this.neonConfig.pipelineTLS = false;
      }
    }
  }
  // Neon's Pool overwrites the `Client` pool option with its own class in its constructor, so
  // the subclass is installed after it.
  const pool = new Pool({ connectionString: url, ...poolTimeouts(timeoutMs) });
  pool.Client = ConfiguredClient;
  return poolDatabase("neon", pool, timeoutMs);
}
