/**
 * `npm run bench`: launch-preview against raw Docker on the same engine, same image, same run.
 *
 *   1. launch-to-ready of a new stub preview through launch-preview (real steps, PGlite state,
 *      events to a local Inngest stand-in) vs `docker run -d` + HTTP poll   (target <= 1.10)
 *      (also vs the Docker API create+start + poll, a stricter baseline without CLI start-up)
 *   2. the same launch with 1,000 other preview containers present vs none    (target <= 1.05)
 *   3. resume of a stopped preview vs `docker start` + HTTP poll              (target <= 1.10)
 *
 * Baselines get the same hardening flags as the previews, so the ratio is the orchestration's
 * own cost. Runs alternate A/B to spread machine noise; medians are reported. Everything created
 * carries `sitebuilder.bench-run=<id>` and is removed at the end.
 *
 * BENCH_RUNS (default 12) sets the samples per measure; BENCH_OTHERS (default 1000) the crowd.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import http from "node:http";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { InngestTestEngine, mockCtx } from "@inngest/test";
import Docker from "dockerode";
import { pino } from "pino";
import { DockerPreviewRuntime } from "../docker/docker-runtime.js";
import { LABELS } from "../docker/labels.js";
import { createFunctions } from "../functions/index.js";
import { createInngest } from "../runtime/inngest-client.js";
import { openPglite } from "../sql/drivers/pglite.js";
import { migrate } from "../sql/migrate.js";
import { SqlPreviewStore } from "../sql/preview-store.js";
import { LocalSiteFiles } from "../storage/site-files.js";
import { buildStubImage } from "../test/helpers/stub-image.js";
import { BENCH_LABEL, benchImage, benchSettings, median, newBenchId } from "./common.js";
import { inngestSettings, startInngestStandIn } from "../test/helpers/inngest-server.js";

const run = promisify(execFile);
const RUNS = Number(process.env.BENCH_RUNS ?? 12);
const OTHERS = Number(process.env.BENCH_OTHERS ?? 1000);
const benchId = newBenchId();
const image = benchImage(benchId);
const network = `sbp-bench-${benchId}`;

const docker = new Docker();
const storageRoot = await mkdtemp(path.join(os.tmpdir(), "sbp-bench-"));
const options = benchSettings(benchId, { instanceId: "previews", network, storageRoot });
const HARDENING = [
  "--init",
  "--cap-drop",
  "ALL",
  "--security-opt",
  "no-new-privileges:true",
  "--memory",
  "256m",
  "--memory-swap",
  "256m",
  "--cpus",
  "1",
  "--pids-limit",
  "128",
  // Unprivileged, read-only root, /tmp as the preview spec has it.
  "--user",
  "1000:1000",
  "--read-only",
  "--tmpfs",
  "/tmp:rw,nosuid,nodev,size=536870912,mode=1777",
  "-e",
  "HOME=/tmp",
];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The same readiness poll for the baselines as the runtime uses: GET / until < 500. */
async function pollHttp(host: string): Promise<void> {
  let delay = 5;
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
    const ok = await new Promise<boolean>((resolve) => {
      const req = http.get({ host, port: 3000, path: "/", agent: false, timeout: 2_000 }, (res) => {
        res.resume();
        resolve((res.statusCode ?? 500) < 500);
      });
      req.on("timeout", () => req.destroy());
      req.on("error", () => resolve(false));
    });
    if (ok) return;
    await sleep(delay);
    delay = Math.min(delay * 2, 100);
  }
  throw new Error(`no HTTP answer from ${host}`);
}

async function ipOf(nameOrId: string): Promise<string> {
  const info = await docker.getContainer(nameOrId).inspect();
  return info.NetworkSettings.Networks[network]!.IPAddress;
}

async function writeSite(id: string) {
  const dir = path.join(storageRoot, "projects", id, "site");
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, "start.sh"), "exec /bin/busybox httpd -f -p 3000 -h /app\n");
  await writeFile(path.join(dir, "index.html"), `<h1>${id}</h1>\n`);
  return dir;
}

let counter = 0;
const nextId = (prefix: string) => `${prefix}-${benchId}-${++counter}`;

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

// ------------------------------------------------------------------------------------------
console.log(`bench ${benchId}: ${RUNS} runs per measure, ${OTHERS} other containers; building stub image...`);
await buildStubImage(docker, image, { [BENCH_LABEL]: benchId });
const db = await openPglite();
await migrate(db);
const standIn = await startInngestStandIn();
const runtime = new DockerPreviewRuntime(docker, options);
await runtime.ensureNetwork();
const inngest = createInngest(inngestSettings({ dev: standIn.url }), pino({ level: "silent" }));
// As production: the site is handed to the unprivileged preview user before a start.
const files = new LocalSiteFiles(storageRoot, { uid: 1000, gid: 1000 });
const [launchFn] = createFunctions(inngest, {
  runtime,
  store: new SqlPreviewStore(db),
  site: files,
  readyTimeoutMs: 30_000,
});

async function launchThroughFunction(id: string): Promise<void> {
  // One run id per run, as the server keeps it (`@inngest/test` would draw one per execution,
  // and a launch only acts while its run holds the preview).
  const runId = `bench-run-${randomBytes(6).toString("hex")}`;
  const transformCtx = (ctx: Parameters<typeof mockCtx>[0]) => ({ ...mockCtx(ctx), runId });
  const { result, error } = await new InngestTestEngine({ function: launchFn, transformCtx }).execute({
    events: [{ name: "pipeline.step7", data: { projectId: id } }],
  });
  if (error) throw new Error(`launch-preview failed: ${JSON.stringify(error)}`);
  // A launch that did not bring the preview up must not count as a fast one.
  if (!(result as { url?: string } | undefined)?.url) throw new Error(`launch-preview did not launch: ${JSON.stringify(result)}`);
}

async function dockerRunCli(id: string): Promise<void> {
  const dir = path.join(storageRoot, "projects", id, "site");
  const name = `raw-${id}`;
  await run("docker", ["run", "-d", "--name", name, "--network", network, "--label", `${BENCH_LABEL}=${benchId}`, ...HARDENING, "--mount", `type=bind,source=${dir},target=/app`, image]);
  await pollHttp(await ipOf(name));
}

async function dockerApiCreateStart(id: string): Promise<void> {
  const dir = path.join(storageRoot, "projects", id, "site");
  const c = await docker.createContainer({
    name: `api-${id}`,
    Image: image,
    User: "1000:1000",
    Env: ["HOME=/tmp"],
    Labels: { [BENCH_LABEL]: benchId },
    HostConfig: {
      NetworkMode: network,
      Mounts: [{ Type: "bind", Source: dir, Target: "/app" }],
      Init: true,
      CapDrop: ["ALL"],
      SecurityOpt: ["no-new-privileges:true"],
      ReadonlyRootfs: true,
      Tmpfs: { "/tmp": "rw,nosuid,nodev,size=536870912,mode=1777" },
      Memory: options.memoryBytes,
      MemorySwap: options.memoryBytes,
      NanoCpus: options.nanoCpus,
      PidsLimit: options.pidsLimit,
    },
  });
  await c.start();
  await pollHttp(await ipOf(c.id));
}

async function removeBenchContainers(filter: (labels: Record<string, string>) => boolean = () => true): Promise<void> {
  const list = await docker.listContainers({ all: true, filters: { label: [`${BENCH_LABEL}=${benchId}`] } });
  const queue = list.filter((c) => filter(c.Labels));
  const worker = async () => {
    for (let c = queue.pop(); c; c = queue.pop()) await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
  };
  await Promise.all(Array.from({ length: 8 }, worker));
}
const isCrowd = (labels: Record<string, string>) => labels["sitebuilder.bench-crowd"] === "true";

/** Alternates measures run by run; cleans up (untimed) after each round. */
async function compare(measures: Record<string, (id: string) => Promise<void>>, prepare: (id: string) => Promise<void> = writeSite as never) {
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(measures).map((k) => [k, []]));
  // One untimed warm-up round (module loading, first connections).
  for (const [name, fn] of Object.entries(measures)) {
    const id = nextId("warm");
    await prepare(id);
    await fn(id);
    void name;
  }
  await removeBenchContainers((l) => !isCrowd(l));
  for (let i = 0; i < RUNS; i++) {
    const entries = Object.entries(measures);
    if (i % 2) entries.reverse();
    for (const [name, fn] of entries) {
      const id = nextId(name.slice(0, 3));
      await prepare(id);
      samples[name]!.push(await time(() => fn(id)));
    }
    await removeBenchContainers((l) => !isCrowd(l));
  }
  return Object.fromEntries(Object.entries(samples).map(([k, xs]) => [k, median(xs)]));
}

const results: Array<{ name: string; a: number; b: number; target: number | null }> = [];
try {
  // 1. new preview
  const fresh = await compare({ launch: launchThroughFunction, cli: dockerRunCli, api: dockerApiCreateStart });
  results.push({ name: "launch-preview vs docker run -d + poll", a: fresh.launch!, b: fresh.cli!, target: 1.1 });
  results.push({ name: "launch-preview vs API create+start + poll", a: fresh.launch!, b: fresh.api!, target: null });

  // 3. resume of a stopped preview (before the crowd, so 2 stays last)
  const resume = await compare(
    {
      launch: async (id) => {
        await launchThroughFunction(id);
      },
      // The Docker runtime alone, without Inngest steps, state or events: where the cost sits.
      runtime: async (id) => {
        await runtime.ensureContainer(id);
        const site = await files.check(id);
        if (!site.ok) throw new Error(site.reason);
        await runtime.start(id, site.folder);
        const probe = await runtime.probeReady(id, 30_000);
        if (probe.state !== "ready") throw new Error(`runtime probe: ${probe.state}`);
      },
      cli: async (id) => {
        await run("docker", ["start", `raw-${id}`]);
        await pollHttp(await ipOf(`raw-${id}`));
      },
      api: async (id) => {
        await docker.getContainer(`api-${id}`).start();
        await pollHttp(await ipOf(`api-${id}`));
      },
    },
    async (id) => {
      // Untimed: a stopped preview (launched then stopped) and a stopped raw container.
      await writeSite(id);
      await launchThroughFunction(id);
      await runtime.stop(id);
      await dockerRunCli(id);
      await dockerApiCreateStart(id);
      await Promise.all([docker.getContainer(`raw-${id}`).stop({ t: 5 }), docker.getContainer(`api-${id}`).stop({ t: 5 })]);
    },
  );
  results.push({ name: "resume: launch-preview vs docker start + poll", a: resume.launch!, b: resume.cli!, target: 1.1 });
  results.push({ name: "resume: launch-preview vs API start + poll", a: resume.launch!, b: resume.api!, target: null });
  results.push({ name: "resume: DockerPreviewRuntime alone vs API start + poll", a: resume.runtime!, b: resume.api!, target: null });

  // 2. crowd of other previews
  // Docker itself may slow down with many containers: the raw API launch is measured in both
  // conditions too, and "none" is measured before AND after the crowd to cancel drift.
  const crowdMeasures = { launch: launchThroughFunction, api: dockerApiCreateStart };
  const aloneBefore = await compare(crowdMeasures);
  process.stdout.write(`creating ${OTHERS} other preview containers... `);
  let made = 0;
  const makeOne = async () => {
    while (made < OTHERS) {
      const n = made++;
      await docker.createContainer({
        name: `preview-crowd-${benchId}-${n}`,
        Image: image,
        Labels: { [BENCH_LABEL]: benchId, "sitebuilder.bench-crowd": "true", [LABELS.MANAGED]: "true", [LABELS.OWNER]: "previews", [LABELS.PROJECT_ID]: `crowd-${n}` },
        HostConfig: { NetworkMode: network },
      });
    }
  };
  await Promise.all(Array.from({ length: 8 }, makeOne));
  console.log("done");
  const crowded = await compare(crowdMeasures);
  await removeBenchContainers(isCrowd);
  const aloneAfter = await compare(crowdMeasures);
  const alone = { launch: (aloneBefore.launch! + aloneAfter.launch!) / 2, api: (aloneBefore.api! + aloneAfter.api!) / 2 };
  results.push({ name: `launch-preview with ${OTHERS} others vs none`, a: crowded.launch!, b: alone.launch, target: 1.05 });
  results.push({ name: `raw API create+start with ${OTHERS} others vs none`, a: crowded.api!, b: alone.api, target: null });
} finally {
  process.stdout.write("cleaning up... ");
  await removeBenchContainers();
  await docker.getNetwork(network).remove().catch(() => undefined);
  await docker.getImage(image).remove({ force: true }).catch(() => undefined);
  await rm(storageRoot, { recursive: true, force: true });
  await standIn.close();
  await db.close();
  console.log("done");
}

console.log(`\nmedians of ${RUNS} runs (ms)`);
for (const r of results) {
  const ratio = r.a / r.b;
  const verdict = r.target === null ? "" : ratio <= r.target ? `  target <= ${r.target.toFixed(2)}: met` : `  target <= ${r.target.toFixed(2)}: MISSED`;
  console.log(`${r.name.padEnd(52)} ${r.a.toFixed(1).padStart(7)} / ${r.b.toFixed(1).padStart(7)}  ratio ${ratio.toFixed(3)}${verdict}`);
}
