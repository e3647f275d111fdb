/**
 * The integration tier's lifecycle environment, all real: a Docker runtime on the test engine
 * (stub image, own network), local site files in a temp dir, a migrated database, and an Inngest
 * client in dev mode whose events go to an Inngest stand-in that keeps them.
 */
import type Docker from "dockerode";
import type { Inngest } from "inngest";
import { pino } from "pino";
import type { PreviewSettings } from "../../docker/settings.js";
import { createFunctions, type PreviewDeps } from "../../functions/index.js";
import { createInngest, type InngestSettings } from "../../runtime/inngest-client.js";
import { SqlPreviewStore } from "../../sql/preview-store.js";
import { createDockerTestEnv, type DockerTestEnv } from "./docker.js";
import { inngestSettings, startInngestStandIn, type InngestStandIn } from "./inngest-server.js";
import { failureFunctions, runLifecycle, type FailureFunctions, type LifecycleRun } from "./lifecycle-run.js";
import { openTestDatabase, type Driver, type TestDatabase } from "./postgres.js";

export interface PreviewTestEnv {
  docker: DockerTestEnv;
  database: TestDatabase;
  store: SqlPreviewStore;
  deps: PreviewDeps;
  inngestServer: InngestStandIn;
  inngest: Inngest;
  functions: ReturnType<typeof createFunctions>;
  failures: FailureFunctions;
  launch(projectId: unknown, name?: string): Promise<LifecycleRun>;
  stop(projectId: unknown, name?: string): Promise<LifecycleRun>;
  remove(projectId: unknown): Promise<LifecycleRun>;
  emitted(name: string, projectId: string): Array<Record<string, unknown>>;
  cleanup(): Promise<void>;
}

export async function createPreviewTestEnv(
  opts: {
    runtime?: Partial<PreviewSettings>;
    readyTimeoutMs?: number;
    readySliceMs?: number;
    driver?: Driver;
    inngest?: Partial<InngestSettings>;
    /** Another engine than the shared one (a private dockerd). */
    engine?: Docker;
  } = {},
): Promise<PreviewTestEnv> {
  const docker = await createDockerTestEnv(opts.runtime, opts.engine);
  const database = await openTestDatabase(opts.driver ?? "pglite");
  const inngestServer = await startInngestStandIn();
  const store = new SqlPreviewStore(database.db);
  // Function logs are quiet unless TEST_LOG_LEVEL asks for them (e.g. "info" when debugging).
  const inngest = createInngest(inngestSettings({ dev: inngestServer.url, ...opts.inngest }), pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }));
  const deps: PreviewDeps = {
    runtime: docker.runtime,
    store,
    site: docker.site,
    readyTimeoutMs: opts.readyTimeoutMs ?? 10_000,
    readySliceMs: opts.readySliceMs ?? 2_000,
  };
  const functions = createFunctions(inngest, deps);
  const failures = failureFunctions(inngest, deps);
  const [launch, stop, remove] = functions;
  return {
    docker,
    database,
    store,
    deps,
    inngestServer,
    inngest,
    functions,
    failures,
    launch: (projectId, name = "pipeline.step7") => runLifecycle(launch, failures, name, { projectId }),
    stop: (projectId, name = "preview.closed") => runLifecycle(stop, failures, name, { projectId }),
    remove: (projectId) => runLifecycle(remove, failures, "project.deleted", { projectId }),
    emitted: (name, projectId) => inngestServer.eventsNamed(name).filter((e) => e.data.projectId === projectId).map((e) => e.data),
    async cleanup() {
      await Promise.allSettled([docker.cleanup(), database.cleanup(), inngestServer.close()]);
    },
  };
}
