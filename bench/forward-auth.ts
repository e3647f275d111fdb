/**
 * `npm run bench:forward-auth`: `/forward-auth` of the running host vs a bare Hono handler that
 * answers 200, served by the same process in the same run.
 *
 *   1. throughput: closed loop, BENCH_FA_CONNECTIONS keep-alive connections for
 *      BENCH_FA_SECONDS per sample, alternating bare / forward-auth; target: forward-auth
 *      requests/s >= 0.8 x the bare handler's;
 *   2. latency at fixed rates (BENCH_FA_RATES, requests/s, open loop), BENCH_FA_ROUNDS
 *      alternating pairs per rate, medians of the p99s: at the highest rate the bare handler
 *      serves with p99 <= 1 ms, target: forward-auth p99 <= 1 ms.
 *
 * The host is the real one (`startService`: the pg driver on a fresh database of the TEST_PG_URL
 * server, or PGlite when it is unreachable or BENCH_FA_PGLITE=1; the Inngest client in dev mode
 * sending to a local stand-in; PREVIEW_ACCESS=token) and every forward-auth request carries a valid access
 * cookie, so each one verifies an HMAC token and records activity: the production hot path.
 * autocannon is not installable here (no network for new packages), so the load comes from a
 * small keep-alive HTTP client (node:http) in a worker thread: its own event loop, not the
 * server's.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Worker } from "node:worker_threads";
import { Hono } from "hono";
import { pino } from "pino";
import { LinkSigner } from "../runtime/access.js";
import { loadConfig } from "../runtime/config.js";
import { startService } from "../runtime/service.js";
import { SqlPreviewStore } from "../sql/preview-store.js";
import { startInngestStandIn } from "../test/helpers/inngest-server.js";
import { listen } from "../test/helpers/http.js";
import { createTestDatabase } from "../test/helpers/postgres.js";
import { removeServiceNetwork, serviceBaseEnv } from "../test/helpers/service-env.js";
import { median } from "./common.js";

const SECONDS = Number(process.env.BENCH_FA_SECONDS ?? 3);
const ROUNDS = Number(process.env.BENCH_FA_ROUNDS ?? 3);
const CONNECTIONS = Number(process.env.BENCH_FA_CONNECTIONS ?? 10);
const RATES = (process.env.BENCH_FA_RATES ?? "500,1000,2000,3000,4000").split(",").map(Number);
const SECRET = "bench-link-secret-0123456789abcdef0123";
const HOST = "p1.preview.localhost";

interface Sample {
  requests: number;
  errors: number;
  rps: number;
  p50: number;
  p99: number;
}

/** The load generator, run in a worker: closed loop (rate 0) or open loop at `rate` requests/s. */
const LOADER = `
const http = require("node:http");
const { parentPort, workerData } = require("node:worker_threads");
const { url, headers, seconds, connections, rate } = workerData;
const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
const target = new URL(url);
const lat = [];
let errors = 0, done = 0;
const end = Date.now() + seconds * 1000;
function one() {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const req = http.request({ host: target.hostname, port: target.port, path: target.pathname, method: "GET", headers, agent }, (res) => {
      res.resume();
      res.on("end", () => {
        if (res.statusCode !== 200) errors++;
        lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
        done++;
        resolve();
      });
    });
    req.on("error", () => { errors++; resolve(); });
    req.end();
  });
}
async function closed() {
  await Promise.all(Array.from({ length: connections }, async () => { while (Date.now() < end) await one(); }));
}
async function open() {
  const inflight = new Set();
  const start = Date.now();
  let sent = 0;
  while (Date.now() < end) {
    const due = Math.floor(((Date.now() - start) / 1000) * rate);
    while (sent < due) { const p = one(); inflight.add(p); p.then(() => inflight.delete(p)); sent++; }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(inflight);
}
(async () => {
  for (let i = 0; i < 200; i++) await one(); // warm-up
  lat.length = 0; errors = 0; done = 0;
  const t0 = Date.now();
  await (rate > 0 ? open() : closed());
  const secs = (Date.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? NaN;
  agent.destroy();
  parentPort.postMessage({ requests: done, errors, rps: done / secs, p50: q(0.5), p99: q(0.99) });
})();
`;

function load(url: string, headers: Record<string, string>, rate: number): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(LOADER, { eval: true, workerData: { url, headers, seconds: SECONDS, connections: CONNECTIONS, rate } });
    worker.once("message", (m: Sample) => {
      void worker.terminate();
      resolve(m);
    });
    worker.once("error", reject);
  });
}

const fmt = (n: number, d = 0) => n.toFixed(d);

const tmp = await mkdtemp(path.join(os.tmpdir(), "sbp-bench-fa-"));
const standIn = await startInngestStandIn();
// The production driver (pg, a database of its own on the TEST_PG_URL server) when it answers;
// else embedded PGlite, whose statements run on this thread (a flush then blocks requests for a
// few milliseconds: the p99 shows it).
const database = process.env.BENCH_FA_PGLITE ? null : await createTestDatabase().catch(() => null);
const databaseEnv: Record<string, string> = database ? { DATABASE_URL: database.url, DATABASE_DRIVER: "pg" } : {};
const service = await startService(
  loadConfig({
    ...serviceBaseEnv(tmp, standIn.url),
    PREVIEW_ACCESS: "token",
    PREVIEW_LINK_SECRET: SECRET,
    ...databaseEnv,
    ...(process.env.ACTIVITY_FLUSH_INTERVAL ? { ACTIVITY_FLUSH_INTERVAL: process.env.ACTIVITY_FLUSH_INTERVAL } : {}),
  }),
  pino({ level: "silent" }),
);
const bare = new Hono();
bare.get("/bare", (c) => c.body(null, 200));
const bareServer = await listen(bare);

try {
  const store = new SqlPreviewStore(service.db);
  // pg migrates in the background: wait until the store answers.
  for (let tries = 0; ; tries++) {
    try {
      await store.ping();
      await store.apply("p1", "launch", { reason: "bench", claim: "bench" });
      break;
    } catch (err) {
      if (tries > 100) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  await store.apply("p1", "ready", { reason: "bench", claim: "bench", url: `http://${HOST}`, containerId: "bench" });
  const { token } = new LinkSigner(SECRET, 3_600_000).sign("p1");
  const faUrl = `http://127.0.0.1:${service.port}/forward-auth`;
  const faHeaders = { "x-forwarded-host": HOST, "x-forwarded-method": "GET", "x-forwarded-proto": "http", "x-forwarded-uri": "/", cookie: `preview_access=${token}` };
  const bareUrl = `${bareServer.url}/bare`;

  // Sanity: the hot path really is the gated one.
  const check = await fetch(faUrl, { headers: faHeaders });
  const denied = await fetch(faUrl, { headers: { ...faHeaders, cookie: "" } });
  if (check.status !== 200 || denied.status !== 401) throw new Error(`forward-auth answers ${check.status} / ${denied.status}, expected 200 / 401`);

  console.log(
    `forward-auth bench: ${ROUNDS} rounds x ${SECONDS}s, ${CONNECTIONS} connections, ${os.cpus().length} cores, node ${process.version}, database ${database ? "pg" : "PGlite (in-process)"}, activity flushed every ${service.config.activity.flushIntervalMs} ms`,
  );
  const bareRps: number[] = [];
  const faRps: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const b = await load(bareUrl, {}, 0);
    const f = await load(faUrl, faHeaders, 0);
    if (b.errors || f.errors) throw new Error(`errors during load: bare ${b.errors}, forward-auth ${f.errors}`);
    bareRps.push(b.rps);
    faRps.push(f.rps);
    console.log(`  round ${r + 1}: bare ${fmt(b.rps)} req/s (p99 ${fmt(b.p99, 2)} ms), forward-auth ${fmt(f.rps)} req/s (p99 ${fmt(f.p99, 2)} ms)`);
  }
  const ratio = median(faRps) / median(bareRps);
  console.log(`throughput: bare ${fmt(median(bareRps))} req/s, forward-auth ${fmt(median(faRps))} req/s, ratio ${fmt(ratio, 2)} (target >= 0.80) ${ratio >= 0.8 ? "OK" : "MISSED"}`);

  // Latency: at each rate, ROUNDS alternating pairs (bare, forward-auth), each side's p99 the
  // median over its rounds (one 3 s sample's p99 is its ~15th slowest request: one GC pause on
  // a shared 2-core machine moves it). The rate judged is the highest whose bare median p99 is
  // <= 1 ms.
  const atRate: Array<{ rate: number; bare: number; fa: number; faP50: number }> = [];
  for (const rate of RATES) {
    const bare: number[] = [];
    const fa: number[] = [];
    const faP50: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      bare.push((await load(bareUrl, {}, rate)).p99);
      const f = await load(faUrl, faHeaders, rate);
      fa.push(f.p99);
      faP50.push(f.p50);
    }
    const row = { rate, bare: median(bare), fa: median(fa), faP50: median(faP50) };
    atRate.push(row);
    console.log(`  at ${rate} req/s: p99 bare ${fmt(row.bare, 3)} ms, forward-auth ${fmt(row.fa, 3)} ms (medians of ${ROUNDS}; forward-auth p50 ${fmt(row.faP50, 3)} ms)`);
  }
  const chosen = atRate.filter((r) => r.bare <= 1).at(-1);
  if (!chosen) {
    const best = [...atRate].sort((x, y) => x.bare - y.bare)[0]!;
    console.log(`latency: the bare handler served none of the rates with p99 <= 1 ms on this machine (target not assessable); best at ${best.rate} req/s: bare p99 ${fmt(best.bare, 3)} ms, forward-auth p99 ${fmt(best.fa, 3)} ms`);
  } else {
    console.log(
      `latency at ${chosen.rate} req/s: bare p99 ${fmt(chosen.bare, 3)} ms, forward-auth p50 ${fmt(chosen.faP50, 3)} ms p99 ${fmt(chosen.fa, 3)} ms (target <= 1 ms) ${chosen.fa <= 1 ? "OK" : "MISSED"}`,
    );
  }
  await service.activity.flush();
  console.log(`activity events sent during the bench: ${standIn.eventsNamed("preview.activity").length} (coalesced per ACTIVITY_EVENT_INTERVAL)`);
} finally {
  await bareServer.close();
  await service.close();
  await database?.drop();
  await standIn.close();
  await rm(tmp, { recursive: true, force: true });
  // The service created its own preview network at start-up: remove it (it holds nothing).
  await removeServiceNetwork();
}
