/**
 * Everything a lifecycle function needs, all real: a Docker runtime on the test engine (stub
 * image, own network), local site files in a temp dir, a migrated database, and an Inngest client
 * in dev mode whose events go to an Inngest stand-in that keeps them.
 */
import { InngestTestEngine } from "@inngest/test";
import type { Inngest } from "inngest";
import { pino } from "pino";
import { createFunctions, type PreviewDeps } from "../../functions/index.js";
import { createInngest } from "../../inngest.config.js";
import type { Config } from "../../runtime/config.js";
import { SqlPreviewStore } from "../../sql/preview-store.js";
import type { DockerRuntimeOptions } from "../../docker/docker-runtime.js";
import { createDockerTestEnv, type DockerTestEnv } from "./docker.js";
import { startInngestStandIn, type InngestStandIn } from "./inngest-server.js";
import { openTestDatabase, type Driver, type TestDatabase } from "./postgres.js";

export function inngestConfig(overrides: Partial<Config["inngest"]> = {}): Config["inngest"] {
  return {
    dev: false,
    baseUrl: null,
    signingKey: null,
    signingKeyFallback: null,
    eventKey: null,
    env: null,
    serveOrigin: null,
    checkpointing: false,
    ...overrides,
  };
}

type TestedFunction = ConstructorParameters<typeof InngestTestEngine>[0]["function"];

/** Runs a function on one event with real steps; a new engine each time (clones share a step cache). */
export const runOnce = (fn: TestedFunction, name: string, projectId: unknown) =>
  new InngestTestEngine({ function: fn }).execute({ events: [{ name, data: { projectId } }] });

export interface PreviewTestEnv {
  docker: DockerTestEnv;
  database: TestDatabase;
  store: SqlPreviewStore;
  deps: PreviewDeps;
  inngestServer: InngestStandIn;
  inngest: Inngest;
  functions: ReturnType<typeof createFunctions>;
  launch: ReturnType<typeof createFunctions>[0];
  stop: ReturnType<typeof createFunctions>[1];
  remove: ReturnType<typeof createFunctions>[2];
  cleanup(): Promise<void>;
}

export async function createPreviewTestEnv(
  opts: { runtime?: Partial<DockerRuntimeOptions>; readyTimeoutMs?: number; driver?: Driver; inngest?: Partial<Config["inngest"]> } = {},
): Promise<PreviewTestEnv> {
  const docker = await createDockerTestEnv(opts.runtime);
  const database = await openTestDatabase(opts.driver ?? "pglite");
  const inngestServer = await startInngestStandIn();
  const store = new SqlPreviewStore(database.db);
  // Function logs are quiet unless TEST_LOG_LEVEL asks for them (e.g. "info" when debugging).
  const inngest = createInngest(inngestConfig({ dev: inngestServer.url, ...opts.inngest }), pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }));
  const deps: PreviewDeps = { runtime: docker.runtime, store, site: docker.site, readyTimeoutMs: opts.readyTimeoutMs ?? 10_000 };
  const functions = createFunctions(inngest, deps);
  const [launch, stop, remove] = functions;
  return {
    docker,
    database,
    store,
    deps,
    inngestServer,
    inngest,
    functions,
    launch,
    stop,
    remove,
    async cleanup() {
      await Promise.allSettled([docker.cleanup(), database.cleanup(), inngestServer.close()]);
    },
  };
}
