/**
 * `npm run bench:sweep` (also run by `npm run bench`): the sweep against the engine's own
 * cleanup, same engine, same container spec, same run.
 *
 *   1. a sweep of 1,000 expired stopped previews (sweep-previews plans, then removes them in its
 *      expire steps, 250 per step, SWEEP_CONCURRENCY at a time) vs `docker container prune
 *      --filter label=...` on an identical set of 1,000 stopped containers     (target <= 0.70)
 *   2. a sweep with nothing to do over 1,000 previews (rows, containers, projects)  (target < 1 s)
 * Also the floor: the same containers removed through the API, as many at once as the sweep,
 * without any check, row or audit, so the sweep's own cost can be told from the engine's.
 *
 * The functions run in-process through `@inngest/test` with real steps, PGlite state with a
 * `projects` table as the project source, and events sent over HTTP to a local Inngest stand-in:
 * the figures are this service's own work, not the Inngest server's scheduling of 1,000 runs.
 * The containers are created (not started): both sides remove exactly the same kind of
 * container. Runs alternate sweep/prune; medians are reported. Everything carries
 * `sitebuilder.bench-run=<id>` and an owner of its own, and is removed at the end.
 *
 * BENCH_SWEEP_RUNS (default 5) samples per measure; BENCH_SWEEP_PREVIEWS (default 1000) the set;
 * BENCH_SWEEP_CONCURRENCY (default 16, as SWEEP_CONCURRENCY) removals at once.
 */
import { randomBytes } from "node:crypto";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { InngestTestEngine, mockCtx } from "@inngest/test";
import Docker from "dockerode";
import type { InngestFunction } from "inngest";
import { pino } from "pino";
import { containerSpec } from "../docker/container-spec.js";
import { DockerPreviewInventory } from "../docker/inventory.js";
import { DockerPreviewRuntime } from "../docker/docker-runtime.js";
import { createSweepFunctions, type SweepDeps } from "../functions/index.js";
import { EXPIRE_CHUNK, expireBatch } from "../functions/sweep-expire.js";
import { mapBounded, planDecisions, planSweep } from "../functions/sweep-plan.js";
import { createInngest } from "../runtime/inngest-client.js";
import { openPg } from "../sql/drivers/pg.js";
import { openPglite } from "../sql/drivers/pglite.js";
import { migrate } from "../sql/migrate.js";
import { SqlPreviewStore } from "../sql/preview-store.js";
import { SqlProjectDirectory } from "../sql/projects.js";
import { SqlSweepLog } from "../sql/sweep-log.js";
import { LocalSiteFiles } from "../storage/site-files.js";
import { inngestSettings, startInngestStandIn } from "../test/helpers/inngest-server.js";
import { createTestDatabase } from "../test/helpers/postgres.js";
import { buildStubImage } from "../test/helpers/stub-image.js";
import { BENCH_LABEL, benchImage, benchSettings, median, newBenchId } from "./common.js";

const exec = promisify(execFile);
const RUNS = Number(process.env.BENCH_SWEEP_RUNS ?? 5);
const N = Number(process.env.BENCH_SWEEP_PREVIEWS ?? 1000);
const SET_LABEL = "sitebuilder.bench-set";
const benchId = newBenchId();
const image = benchImage(benchId);
const HOUR = 3_600_000;

const docker = new Docker();
const storageRoot = await mkdtemp(path.join(os.tmpdir(), "sbp-bench-sweep-"));
// An owner of its own: the sweep must never see another bench's or a test's previews.
const settings = benchSettings(benchId, { instanceId: `bench-sweep-${benchId}`, network: `sbp-bench-sweep-${benchId}`, storageRoot });

console.log(`bench-sweep ${benchId}: ${RUNS} runs per measure, ${N} previews; building stub image...`);
await buildStubImage(docker, image, { [BENCH_LABEL]: benchId });
const runtime = new DockerPreviewRuntime(docker, settings);
await runtime.ensureNetwork();
// State: a database of its own on the Postgres server (TEST_PG_URL, as the tests use), the
// deployment a fleet of 1,000+ previews runs on; BENCH_SWEEP_DB=pglite for the embedded one.
const DB = process.env.BENCH_SWEEP_DB === "pglite" ? "pglite" : "pg";
const pgDatabase = DB === "pg" ? await createTestDatabase() : null;
const db = pgDatabase ? openPg(pgDatabase.url, 10_000) : await openPglite();
await migrate(db);
await db.exec("create table projects (id text primary key, deleted_at timestamptz)");
const store = new SqlPreviewStore(db);
const standIn = await startInngestStandIn();
const inngest = createInngest(inngestSettings({ dev: standIn.url }), pino({ level: "silent" }));
const sweepDeps: SweepDeps = {
  inventory: new DockerPreviewInventory(docker, settings),
  projects: new SqlProjectDirectory(db, "projects", `bench ${DB}`),
  decisions: new SqlSweepLog(db),
  // Grace 0: the bench's containers are seconds old; the retention is the production default.
  settings: { cron: "*/15 * * * *", retentionMs: 24 * HOUR, graceMs: 0, maxOrphanFraction: 0.5, concurrency: Number(process.env.BENCH_SWEEP_CONCURRENCY ?? 16) },
};
const previewDeps = { runtime, store, site: new LocalSiteFiles(storageRoot), readyTimeoutMs: 30_000 };
const [sweepFn, itemFn] = createSweepFunctions(inngest, previewDeps, sweepDeps) as unknown as [
  InngestFunction.Any,
  InngestFunction.Any,
];

const withRunId = () => {
  const runId = `bench-${randomBytes(6).toString("hex")}`;
  return { runId, transformCtx: (ctx: Parameters<typeof mockCtx>[0]) => ({ ...mockCtx(ctx), runId }) };
};

/**
 * One sweep as the server would run it: sweep-previews (which expires in its own steps), then
 * the items it dispatched (none in this bench), `concurrency` at a time.
 */
async function sweepOnce(): Promise<{ items: number; failed: number; summary: unknown }> {
  const { runId, transformCtx } = withRunId();
  const run = await new InngestTestEngine({ function: sweepFn, transformCtx }).execute({ events: [{ name: "inngest/scheduled.timer", data: {} }] });
  if (run.error) throw new Error(`sweep-previews failed: ${JSON.stringify(run.error)}`);
  const summary = run.result as { expired: { removed?: number; failed?: number; left?: number } };
  const items = standIn.eventsNamed("previews.sweep.item").filter((e) => e.data.sweepRunId === runId);
  const outcomes = await mapBounded(items, sweepDeps.settings.concurrency, async (e) => {
    const item = withRunId();
    return new InngestTestEngine({ function: itemFn, transformCtx: item.transformCtx }).execute({ events: [{ name: e.name, data: e.data }] });
  });
  const { removed = 0, failed = 0, left = 0 } = summary.expired;
  return { items: items.length + removed + failed + left, failed: failed + left + outcomes.filter((o) => o.error !== undefined).length, summary };
}

/**
 * The same sweep without the test harness: the plan step's and the expire steps' bodies, called
 * directly (what this service does per step; `@inngest/test` adds CPU per step that neither
 * this service nor the Inngest server spends in production).
 */
async function sweepDirect(): Promise<{ items: number; failed: number; summary: unknown }> {
  const runId = `bench-${randomBytes(6).toString("hex")}`;
  const t0 = performance.now();
  const plan = await planSweep(store, sweepDeps);
  await sweepDeps.decisions.record(planDecisions(plan, runId));
  planMs.push(performance.now() - t0);
  if (plan.items.some((item) => item.action !== "expire")) throw new Error("the bench plans expiries only");
  let failed = 0;
  for (let i = 0; i < plan.items.length; i += EXPIRE_CHUNK) {
    const done = await expireBatch(previewDeps, sweepDeps, plan.items.slice(i, i + EXPIRE_CHUNK), runId);
    failed += done.failed + done.left;
  }
  return { items: plan.items.length, failed, summary: plan.items.length };
}

let setCounter = 0;
/** N stopped (created) preview containers with the production spec, labelled as one set; their ids. */
async function createSet(prefix: string): Promise<{ set: string; ids: string[]; containerIds: string[] }> {
  const set = `${benchId}-${++setCounter}`;
  const ids = Array.from({ length: N }, (_, i) => `${prefix}-${set}-${i}`);
  const containerIds = await mapBounded(ids, 8, async (id) => {
    await mkdir(path.join(storageRoot, "projects", id, "site"), { recursive: true });
    const spec = containerSpec(id, { ...settings, extraLabels: { ...settings.extraLabels, [SET_LABEL]: set } }, "bench");
    return (await docker.createContainer(spec)).id;
  });
  return { set, ids, containerIds };
}

/**
 * Rows (stopped `stoppedAgoMs` ago, each with its container's id, as launch records it) and
 * projects for a set, in two statements.
 */
async function recordSet(ids: string[], containerIds: string[], stoppedAgoMs: number): Promise<void> {
  await db.query(
    `insert into previews (project_id, status, reason, stopped_at, container_id, updated_at)
     select id, 'stopped', 'bench', now() - $3::bigint * interval '1 millisecond', cid, now() - $3::bigint * interval '1 millisecond'
     from unnest($1::text[], $2::text[]) as t(id, cid)`,
    [ids, containerIds, stoppedAgoMs],
  );
  await db.query("insert into projects (id) select unnest($1::text[]) on conflict do nothing", [ids]);
}

async function removeSet(set: string): Promise<void> {
  const list = await docker.listContainers({ all: true, filters: { label: [`${SET_LABEL}=${set}`] } });
  await mapBounded(list, 8, (c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined));
}

async function clearState(): Promise<void> {
  await db.exec("delete from previews; delete from preview_events; delete from projects; delete from sweep_decisions;");
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

const samples: Record<"sweep" | "direct" | "raw" | "prune", number[]> = { sweep: [], direct: [], raw: [], prune: [] };
/** Of "direct": the plan step's share (reads, decisions recorded). */
const planMs: number[] = [];
const noopMs: number[] = [];
try {
  // Warm-up (untimed): module loading, PGlite and the first connections.
  {
    const { set, ids, containerIds } = await createSet("warm");
    await recordSet(ids.slice(0, 10), containerIds.slice(0, 10), 25 * HOUR);
    await sweepOnce();
    await removeSet(set);
    await clearState();
  }
  const sides = ["sweep", "direct", "raw", "prune"] as const;
  for (let run = 0; run < RUNS; run++) {
    const order = run % 2 ? [...sides].reverse() : sides;
    for (const side of order) {
      const { set, ids, containerIds } = await createSet(side === "prune" ? "prn" : side === "raw" ? "raw" : "exp");
      if (side === "raw") {
        // The floor: the same containers removed through the API, as many at once, no checks.
        const { ms } = await timed(async () => {
          const list = await docker.listContainers({ all: true, filters: { label: [`${SET_LABEL}=${set}`] } });
          await mapBounded(list, sweepDeps.settings.concurrency, (c) => docker.getContainer(c.Id).remove({ v: true }));
        });
        samples.raw.push(ms);
      } else if (side !== "prune") {
        await recordSet(ids, containerIds, 25 * HOUR);
        const { ms, value } = await timed(side === "sweep" ? sweepOnce : sweepDirect);
        const left = await docker.listContainers({ all: true, filters: { label: [`${SET_LABEL}=${set}`] } });
        if (value.items !== N || value.failed > 0 || left.length > 0) {
          throw new Error(`${side}: the set was not removed: ${value.items} items, ${value.failed} failed, ${left.length} left; ${JSON.stringify(value.summary)}`);
        }
        samples[side].push(ms);
      } else {
        const { ms } = await timed(() => exec("docker", ["container", "prune", "-f", "--filter", `label=${SET_LABEL}=${set}`]));
        const left = await docker.listContainers({ all: true, filters: { label: [`${SET_LABEL}=${set}`] } });
        if (left.length > 0) throw new Error(`prune left ${left.length} containers`);
        samples.prune.push(ms);
      }
      await removeSet(set);
      await clearState();
    }
    process.stdout.write(`run ${run + 1}/${RUNS}: ${sides.map((k) => `${k} ${samples[k].at(-1)!.toFixed(0)} ms`).join(", ")}\n`);
  }

  // 2. Nothing to do: N previews stopped an hour ago, their projects exist.
  const { set, ids, containerIds } = await createSet("noop");
  await recordSet(ids, containerIds, 1 * HOUR);
  for (let run = 0; run < RUNS + 1; run++) {
    const { ms, value } = await timed(sweepOnce);
    if (value.items !== 0) throw new Error(`the no-op sweep dispatched ${value.items} items: ${JSON.stringify(value.summary)}`);
    if (run > 0) noopMs.push(ms); // the first is a warm-up
  }
  await removeSet(set);
} finally {
  process.stdout.write("cleaning up... ");
  const list = await docker.listContainers({ all: true, filters: { label: [`${BENCH_LABEL}=${benchId}`] } });
  await mapBounded(list, 8, (c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined));
  await docker.getNetwork(settings.network).remove().catch(() => undefined);
  await docker.getImage(image).remove({ force: true }).catch(() => undefined);
  await rm(storageRoot, { recursive: true, force: true });
  await standIn.close();
  await db.close();
  await pgDatabase?.drop();
  console.log("done");
}

const prune = median(samples.prune);
const noop = median(noopMs);
const line = (name: string, a: number, b: number, target: number | null) => {
  const ratio = a / b;
  const verdict = target === null ? "" : `  target <= ${target.toFixed(2)}: ${ratio <= target ? "met" : "MISSED"}`;
  console.log(`${name.padEnd(78)} ${a.toFixed(1).padStart(8)} / ${b.toFixed(1).padStart(8)}  ratio ${ratio.toFixed(3)}${verdict}`);
};
console.log(`\nmedians of ${RUNS} runs (ms), state: ${DB}`);
line(`sweep of ${N} expired stopped previews (step bodies) vs docker container prune`, median(samples.direct), prune, 0.7);
line(`sweep of ${N} expired stopped previews (through @inngest/test) vs docker container prune`, median(samples.sweep), prune, null);
line(`(floor) raw API removal of ${N}, ${sweepDeps.settings.concurrency} at once, no checks vs docker container prune`, median(samples.raw), prune, null);
line(`sweep (step bodies) vs that raw API removal: the sweep's own cost`, median(samples.direct), median(samples.raw), null);
console.log(`  of which the plan step (reads, ${N} decisions recorded): ${median(planMs).toFixed(0)} ms`);
console.log(`${`sweep with nothing to do over ${N} previews (through @inngest/test)`.padEnd(78)} ${noop.toFixed(1).padStart(8)}  target < 1000 ms: ${noop < 1000 ? "met" : "MISSED"}`);
