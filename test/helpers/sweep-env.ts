/**
 * The sweep in the integration tier, all real: the lifecycle environment (Docker engine, site
 * files, a Postgres database on the test server, the Inngest stand-in) plus the sweep's adapters
 * (`DockerPreviewInventory`, `SqlProjectDirectory` over a `projects` table in the same database,
 * `SqlSweepLog`). `sweep()` runs `sweep-previews` as the server would, then every
 * `previews.sweep.item` it sent through `sweep-item` (and its failure handler when an item fails
 * for good), a few at a time.
 */
import { randomBytes } from "node:crypto";
import { InngestTestEngine } from "@inngest/test";
import { serializeError, type InngestFunction } from "inngest";
import type Docker from "dockerode";
import { DockerPreviewInventory } from "../../docker/inventory.js";
import type { PreviewSettings } from "../../docker/settings.js";
import type { FailureContext } from "../../functions/failure.js";
import { createSweepFunctions, type SweepDeps, type SweepSettings } from "../../functions/index.js";
import type { ProjectDirectory } from "../../functions/ports.js";
import { recordSweepItemFailure } from "../../functions/sweep-item.js";
import { mapBounded, type SweepSummary } from "../../functions/sweep-plan.js";
import { APP_ID } from "../../inngest.config.js";
import { SqlProjectDirectory } from "../../sql/projects.js";
import { SqlSweepLog } from "../../sql/sweep-log.js";
import type { SentEvent } from "./inngest-server.js";
import { oneRun } from "./lifecycle-run.js";
import { createPreviewTestEnv, type PreviewTestEnv } from "./preview-env.js";

export const HOUR = 3_600_000;

export interface ItemRun {
  event: SentEvent;
  result: unknown;
  error: unknown;
  failure?: { result: unknown; error: unknown };
}

export interface SweepRun {
  runId: string;
  /** What sweep-previews returned (the summary; for a dry run with the plan's lists). */
  result: (SweepSummary & { items?: unknown[]; skipped?: unknown[]; guards?: unknown[] }) | undefined;
  error: unknown;
  items: ItemRun[];
}

export interface SweepTestEnv extends PreviewTestEnv {
  decisions: SqlSweepLog;
  sweepDeps: SweepDeps;
  /** Added to the real clock by the sweep (so "25 hours later" needs no waiting). */
  clock: { offsetMs: number };
  /** Where the sweep reads projects: `projects` table of the test database, unless replaced. */
  useProjects(projects: ProjectDirectory | null): void;
  /** Inserts project rows (`deletedAt` marks one deleted). */
  addProjects(...ids: Array<string | { id: string; deletedAt: Date }>): Promise<void>;
  sweep(opts?: { dryRun?: boolean; parallel?: number; beforeItem?: (index: number) => Promise<void> }): Promise<SweepRun>;
  /** A preview launched for real and then stopped (row stopped, container exited). */
  stoppedPreview(prefix?: string): Promise<string>;
  /** Moves a stopped row's stop time `ms` into the past. */
  backdateStop(projectId: string, ms: number): Promise<void>;
  /** Moves a row's updated_at `ms` into the past. */
  backdateUpdate(projectId: string, ms: number): Promise<void>;
  /** Container ids of everything this env's tests created, by name. */
  containerNames(): Promise<string[]>;
}

export async function createSweepTestEnv(
  opts: { settings?: Partial<SweepSettings>; runtime?: Partial<PreviewSettings>; engine?: Docker } = {},
): Promise<SweepTestEnv> {
  // An owner of its own: the engine is shared (other test files, other checkouts' tests and
  // benches run previews owned by "previews" on it), and a sweep sees every container of its
  // owner. With this, it sees only what this env created.
  const instanceId = `sweep-test-${randomBytes(4).toString("hex")}`;
  const env = await createPreviewTestEnv({ driver: "pg", runtime: { instanceId, ...opts.runtime }, ...(opts.engine ? { engine: opts.engine } : {}) });
  const db = env.database.db;
  await db.query("create table projects (id text primary key, deleted_at timestamptz)");
  const decisions = new SqlSweepLog(db);
  const clock = { offsetMs: 0 };
  const docker = env.docker.docker;
  const sweepDeps: SweepDeps = {
    inventory: new DockerPreviewInventory(docker, env.docker.options),
    projects: new SqlProjectDirectory(db, "projects", "test database"),
    decisions,
    settings: { cron: "*/15 * * * *", retentionMs: 24 * HOUR, graceMs: 10 * 60_000, maxOrphanFraction: 0.5, concurrency: 16, ...opts.settings },
    now: () => Date.now() + clock.offsetMs,
  };
  const [sweepFn, itemFn] = createSweepFunctions(env.inngest, env.deps, sweepDeps);
  const failureFn = env.inngest.createFunction({ id: "sweep-item-failure", triggers: [{ event: "inngest/function.failed" }] }, (ctx) =>
    recordSweepItemFailure(env.deps, sweepDeps, ctx as unknown as FailureContext),
  );

  async function runItem(event: SentEvent): Promise<ItemRun> {
    const { runId, transformCtx } = oneRun();
    const original = { name: event.name, data: event.data };
    const run = await new InngestTestEngine({ function: itemFn as InngestFunction.Any, transformCtx }).execute({ events: [original] });
    if (run.error === undefined) return { event, result: run.result, error: undefined };
    const failed = { name: "inngest/function.failed", data: { function_id: `${APP_ID}-sweep-item`, run_id: runId, error: serializeError(run.error), event: original } };
    const failure = await new InngestTestEngine({ function: failureFn }).execute({ events: [failed] });
    return { event, result: run.result, error: run.error, failure: { result: failure.result, error: failure.error } };
  }

  return {
    ...env,
    decisions,
    sweepDeps,
    clock,
    useProjects(projects) {
      sweepDeps.projects = projects;
    },
    async addProjects(...ids) {
      for (const p of ids) {
        const [id, deletedAt] = typeof p === "string" ? [p, null] : [p.id, p.deletedAt];
        await db.query("insert into projects (id, deleted_at) values ($1, $2)", [id, deletedAt]);
      }
    },
    async sweep({ dryRun, parallel = 4, beforeItem } = {}) {
      const { runId, transformCtx } = oneRun(`sweep-${Math.random().toString(36).slice(2)}`);
      const event = dryRun === undefined ? { name: "inngest/scheduled.timer", data: { cron: "*/15 * * * *" } } : { name: "previews.sweep.requested", data: { dryRun } };
      const run = await new InngestTestEngine({ function: sweepFn as InngestFunction.Any, transformCtx }).execute({ events: [event] });
      const sent = env.inngestServer.eventsNamed("previews.sweep.item").filter((e) => e.data.sweepRunId === runId);
      let index = 0;
      const items = await mapBounded(sent, parallel, async (e) => {
        await beforeItem?.(index++);
        return runItem(e);
      });
      return { runId, result: run.result as SweepRun["result"], error: run.error, items };
    },
    async stoppedPreview(prefix = "s") {
      const id = env.docker.projectId(prefix);
      await env.docker.writeSite(id);
      const launched = await env.launch(id);
      if (launched.error !== undefined) throw new Error(`launch of ${id} failed: ${JSON.stringify(launched.error)}`);
      const stopped = await env.stop(id);
      if (stopped.error !== undefined) throw new Error(`stop of ${id} failed: ${JSON.stringify(stopped.error)}`);
      return id;
    },
    async backdateStop(projectId, ms) {
      await db.query("update previews set stopped_at = stopped_at - $2::bigint * interval '1 millisecond' where project_id = $1", [projectId, ms]);
    },
    async backdateUpdate(projectId, ms) {
      await db.query("update previews set updated_at = updated_at - $2::bigint * interval '1 millisecond' where project_id = $1", [projectId, ms]);
    },
    async containerNames() {
      const list = await docker.listContainers({ all: true, filters: { label: [`sitebuilder.test-run=${env.docker.runId}`], network: [env.docker.options.network] } });
      return list.flatMap((c) => c.Names.map((n) => n.slice(1))).sort();
    },
  };
}
