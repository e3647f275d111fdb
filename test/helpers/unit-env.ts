/**
 * The unit tier's lifecycle environment: the real functions over in-memory fakes of the ports
 * (no Docker, no database), an Inngest client in dev mode whose events go to an in-process
 * stand-in that keeps them, and the failure handlers.
 */
import { pino } from "pino";
import { createFunctions, type PreviewDeps } from "../../functions/index.js";
import { createInngest } from "../../runtime/inngest-client.js";
import { FakeRuntime, FakeSiteFiles } from "../fakes/fake-runtime.js";
import { MemoryPreviewStore } from "../fakes/memory-store.js";
import { inngestSettings, startInngestStandIn, type InngestStandIn } from "./inngest-server.js";
import { failureFunctions, runLifecycle, type LifecycleRun } from "./lifecycle-run.js";

export interface UnitEnv {
  store: MemoryPreviewStore;
  runtime: FakeRuntime;
  site: FakeSiteFiles;
  deps: PreviewDeps;
  inngestServer: InngestStandIn;
  launch(projectId: unknown, name?: string, opts?: { deferFailure?: boolean }): Promise<LifecycleRun>;
  stop(projectId: unknown, name?: string): Promise<LifecycleRun>;
  remove(projectId: unknown): Promise<LifecycleRun>;
  /** A new project with a site folder, launched (running). */
  runningPreview(prefix?: string): Promise<string>;
  /** Events this service emitted for a project, by name. */
  emitted(name: string, projectId: string): Array<Record<string, unknown>>;
  close(): Promise<void>;
}

let counter = 0;
/** A project id unique within this process. */
export const newProjectId = (prefix = "p"): string => `${prefix}-${process.pid}-${++counter}`;

export async function createUnitEnv(overrides: Partial<PreviewDeps> = {}): Promise<UnitEnv> {
  const store = new MemoryPreviewStore();
  const runtime = new FakeRuntime();
  const site = new FakeSiteFiles();
  const inngestServer = await startInngestStandIn();
  const inngest = createInngest(inngestSettings({ dev: inngestServer.url }), pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }));
  const deps: PreviewDeps = { runtime, store, site, readyTimeoutMs: 300, readySliceMs: 100, ...overrides };
  const [launch, stop, remove] = createFunctions(inngest, deps);
  const failures = failureFunctions(inngest, deps);
  return {
    store,
    runtime,
    site,
    deps,
    inngestServer,
    launch: (projectId, name = "pipeline.step7", opts = {}) => runLifecycle(launch, failures, name, { projectId }, opts),
    stop: (projectId, name = "preview.closed") => runLifecycle(stop, failures, name, { projectId }),
    remove: (projectId) => runLifecycle(remove, failures, "project.deleted", { projectId }),
    async runningPreview(prefix = "p") {
      const id = newProjectId(prefix);
      site.sites.add(id);
      const run = await runLifecycle(launch, failures, "pipeline.step7", { projectId: id });
      if (run.error !== undefined) throw new Error(`launch of ${id} failed: ${JSON.stringify(run.error)}`);
      return id;
    },
    emitted: (name, projectId) => inngestServer.eventsNamed(name).filter((e) => e.data.projectId === projectId).map((e) => e.data),
    close: () => inngestServer.close(),
  };
}
