/**
 * `npm run bench` (memory): the service process's resident memory (RSS), embedded PGlite vs pg.
 *
 * For each driver, BENCH_MEMORY_RUNS times (default 3), on a fresh database each time:
 *   first start   the real entry point (`runtime/main.ts`, as `npm start` runs it, in one Node
 *                 process) on an empty data dir / database: PGlite runs initdb in-process, pg
 *                 migrates; RSS once it serves /previews and has idled SETTLE_MS
 *   idle          stopped (SIGTERM) and started again on the same database, idle
 *   1,000         stopped, 1,000 preview rows (and 3 audit events each) inserted directly,
 *                 started again; GET /previews (all 1,000 rows) and GET /metrics (counts per
 *                 status) read them; RSS after SETTLE_MS
 * RSS is VmRSS from /proc/<pid>/status (RssAnon, the process's own memory, is printed too).
 * Medians per driver; ratios PGlite / pg (target: the embedded default within 2x of pg).
 *
 * pg: a scratch database on the test server (TEST_PG_URL, the 5432 cluster; see
 * test/helpers/postgres.ts), dropped at the end. The only Docker object is the service's own
 * preview network (test/helpers/service-env.ts: a unique name), removed by name at the end.
 *
 * The process runs TypeScript through tsx's loader (`node --import tsx`), as `npm start` does:
 * the loader's own memory is in both drivers' figures.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFile, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { openDatabase } from "../sql/connect.js";
import type { DatabaseSettings } from "../sql/settings.js";
import { createTestDatabase, freeLoopbackPort } from "../test/helpers/postgres.js";
import { removeServiceNetwork, serviceBaseEnv } from "../test/helpers/service-env.js";
import { median } from "./common.js";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const RUNS = Number(process.env.BENCH_MEMORY_RUNS ?? 3);
const PREVIEWS = Number(process.env.BENCH_MEMORY_PREVIEWS ?? 1000);
/** Idle time after the service answers, before RSS is read (start-up garbage collected, timers run). */
const SETTLE_MS = Number(process.env.BENCH_MEMORY_SETTLE_MS ?? 4000);
/** BENCH_MEMORY_DRIVERS: "pglite,pg" (default) or one of them (a ratio needs both). */
const DRIVERS = (process.env.BENCH_MEMORY_DRIVERS ?? "pglite,pg").split(",").map((d) => d.trim()) as Driver[];

type Driver = "pglite" | "pg";
interface Sample {
  rssMb: number;
  anonMb: number;
}
type Phase = "first start" | "idle" | `${number} previews`;

async function memoryOf(pid: number): Promise<Sample> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { rssMb: kb("VmRSS") / 1024, anonMb: kb("RssAnon") / 1024 };
}

/** The service as `npm start` runs it, in ONE process (tsx's CLI would add a parent process). */
async function startService(env: Record<string, string>): Promise<{ child: ChildProcess; base: string; stop(): Promise<void> }> {
  const port = await freeLoopbackPort();
  const child = spawn(process.execPath, ["--import", "tsx", "runtime/main.ts"], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", ...env, PORT: String(port), HOST: "127.0.0.1" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`service exited with ${child.exitCode}: ${stderr}`);
    // /previews answers 200 once the database is open and migrated (pg migrates in the background).
    const res = await fetch(`${base}/previews`).catch(() => null);
    if (res?.status === 200) {
      await res.arrayBuffer();
      break;
    }
    if (Date.now() > deadline) throw new Error(`service did not serve /previews within 120 s: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    child,
    base,
    async stop() {
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(killer);
    },
  };
}

/** `PREVIEWS` rows (half running, half stopped) and three audit events each, in two statements. */
async function seed(settings: DatabaseSettings, count: number): Promise<void> {
  const db = await openDatabase(settings);
  try {
    await db.query(
      `insert into previews (project_id, status, url, container_id, reason, stopped_at, claim, last_activity_at)
       select 'bench-project-' || i,
              case when i % 2 = 0 then 'running' else 'stopped' end,
              'http://bench-project-' || i || '.preview.localhost',
              md5(i::text) || md5((i + 1)::text),
              'pipeline.step7: answering HTTP',
              case when i % 2 = 0 then null else now() end,
              'run-' || i,
              now()
       from generate_series(1, $1::int) as i`,
      [count],
    );
    await db.query(
      `insert into preview_events (project_id, type, reason)
       select 'bench-project-' || i, t, 'bench'
       from generate_series(1, $1::int) as i, unnest(array['starting', 'running', 'stopped']) as t`,
      [count],
    );
  } finally {
    await db.close();
  }
}

async function measure(driver: Driver): Promise<Record<Phase, Sample>> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), "sbp-bench-mem-"));
  const database = driver === "pg" ? await createTestDatabase() : null;
  const settings: DatabaseSettings =
    driver === "pg"
      ? { driver: "pg", url: database!.url, dataPath: tmp, neonWsProxy: null, timeoutMs: 10_000 }
      : { driver: "pglite", url: null, dataPath: path.join(tmp, "data"), neonWsProxy: null, timeoutMs: 10_000 };
  const env: Record<string, string> = {
    ...serviceBaseEnv(tmp, "http://127.0.0.1:9"), // Inngest dev mode; nothing is sent while idle
    LOG_LEVEL: "warn",
    ...(database ? { DATABASE_URL: database.url } : {}),
  };
  const settle = () => new Promise((r) => setTimeout(r, SETTLE_MS));
  const out = {} as Record<Phase, Sample>;
  try {
    let svc = await startService(env);
    await settle();
    out["first start"] = await memoryOf(svc.child.pid!);
    await svc.stop();

    svc = await startService(env);
    await settle();
    out.idle = await memoryOf(svc.child.pid!);
    await svc.stop();

    await seed(settings, PREVIEWS);
    svc = await startService(env);
    const list = (await (await fetch(`${svc.base}/previews`)).json()) as { previews: unknown[] };
    if (list.previews.length !== PREVIEWS) throw new Error(`expected ${PREVIEWS} previews, the service lists ${list.previews.length}`);
    const scrape = await (await fetch(`${svc.base}/metrics`)).text();
    if (!scrape.includes(`previews_by_status{status="running"} ${PREVIEWS / 2}`)) throw new Error("GET /metrics does not count the seeded previews");
    await settle();
    out[`${PREVIEWS} previews`] = await memoryOf(svc.child.pid!);
    await svc.stop();
    return out;
  } finally {
    await database?.drop().catch(() => undefined);
    await rm(tmp, { recursive: true, force: true });
  }
}

async function main() {
  const drivers = DRIVERS.filter((d): d is Driver => d === "pglite" || d === "pg");
  if (drivers.length === 0) throw new Error(`BENCH_MEMORY_DRIVERS must name pglite and/or pg (got ${JSON.stringify(process.env.BENCH_MEMORY_DRIVERS)})`);
  const samples: Record<Driver, Array<Record<Phase, Sample>>> = { pglite: [], pg: [] };
  try {
    for (let i = 0; i < RUNS; i++) {
      // Alternate the order, so that machine noise spreads over both drivers.
      for (const driver of i % 2 ? [...drivers].reverse() : drivers) {
        const s = await measure(driver);
        samples[driver].push(s);
        console.log(`  run ${i + 1} ${driver.padEnd(6)} ${Object.entries(s).map(([k, v]) => `${k}: ${v.rssMb.toFixed(0)} MB`).join(", ")}`);
      }
    }
  } finally {
    await removeServiceNetwork();
  }
  const phases: Phase[] = ["first start", "idle", `${PREVIEWS} previews`];
  const med = (driver: Driver, phase: Phase, key: keyof Sample) => (samples[driver].length ? median(samples[driver].map((s) => s[phase]![key])) : NaN);
  console.log(`\nservice RSS, median of ${RUNS} runs (MB; RssAnon in parentheses)`);
  console.log(`${"".padEnd(16)}${"PGlite".padStart(16)}${"pg".padStart(16)}${"PGlite / pg".padStart(14)}`);
  for (const phase of phases) {
    const [a, b] = [med("pglite", phase, "rssMb"), med("pg", phase, "rssMb")];
    const cell = (d: Driver) => `${med(d, phase, "rssMb").toFixed(0)} (${med(d, phase, "anonMb").toFixed(0)})`;
    console.log(`${phase.padEnd(16)}${cell("pglite").padStart(16)}${cell("pg").padStart(16)}${`${(a / b).toFixed(2)}x`.padStart(14)}`);
  }
  const idleRatio = med("pglite", "idle", "rssMb") / med("pg", "idle", "rssMb");
  const loadedRatio = med("pglite", `${PREVIEWS} previews`, "rssMb") / med("pg", `${PREVIEWS} previews`, "rssMb");
  console.log(`target: PGlite within 2x of pg at idle and with ${PREVIEWS} previews: ${idleRatio <= 2 && loadedRatio <= 2 ? "met" : "NOT met"}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
