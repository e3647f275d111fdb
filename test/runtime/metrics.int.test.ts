/**
 * GET /metrics for real: the whole service (`startService`: file-backed PGlite, the local Docker
 * engine, the stub preview image), its functions driven over real HTTP through `/api/inngest` as
 * the Inngest server does, and the scrape read back over real HTTP. A real preview is launched,
 * stopped and removed; a launch without a site fails; the last call request of a completed launch
 * is sent again (Inngest retrying a request whose answer it lost); a launch runs with checkpointing
 * (steps run in one request, as the Inngest server drives it). The counters, the histogram
 * and the status gauge move exactly as the runs did; the logs stay pino JSON with the ids.
 */
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../runtime/config.js";
import { startService, type RunningService } from "../../runtime/service.js";
import { SITE_SCRIPTS, testDocker } from "../helpers/docker.js";
import { runFunction, startInngestStandIn, type InngestStandIn } from "../helpers/inngest-server.js";
import { metricValue } from "../helpers/metrics-text.js";
import { removeServiceNetwork, serviceEnv } from "../helpers/service-env.js";

const TOKEN = "metrics-token-0123456789abcdef";

let tmp: string;
let standIn: InngestStandIn;
let service: RunningService;
let base: string;
const logLines: string[] = [];
const ids: string[] = [];

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "sbp-metrics-"));
  standIn = await startInngestStandIn();
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
      done();
    },
  });
  const config = loadConfig(
    serviceEnv(tmp, standIn.url, {
      LOG_LEVEL: "info",
      READY_TIMEOUT: "60s",
      API_TOKEN: TOKEN,
      PREVIEW_LINK_SECRET: "metrics-link-secret-0123456789abcdef012345",
    }),
  );
  service = await startService(config, pino({ level: "info" }, sink));
  base = `http://127.0.0.1:${service.port}`;
}, 60_000);

afterAll(async () => {
  await service?.close();
  // Containers carry the test label through the stub image; removed by name, ours only.
  const docker = testDocker();
  for (const id of ids) await docker.getContainer(`preview-${id}`).remove({ force: true }).catch(() => undefined);
  await removeServiceNetwork();
  await standIn?.close();
  await rm(tmp, { recursive: true, force: true });
});

async function site(id: string) {
  const dir = path.join(tmp, "storage", "projects", id, "site");
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, "start.sh"), SITE_SCRIPTS.http);
  await writeFile(path.join(dir, "index.html"), `<h1>${id}</h1>\n`);
}

async function scrape(): Promise<string> {
  const res = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
  return res.text();
}

const run = (fn: string, name: string, projectId: string, extra: { runId?: string; memoized?: Record<string, unknown>; onFailure?: boolean } = {}) =>
  runFunction({ serveUrl: `${base}/api/inngest`, fnId: `previews-${fn}`, event: { name, data: { projectId } }, ...extra });

describe("GET /metrics over real HTTP, with a real preview", () => {
  it("needs the API token when API_TOKEN is set", async () => {
    expect((await fetch(`${base}/metrics`)).status).toBe(401);
    expect((await fetch(`${base}/metrics`, { headers: { authorization: "Bearer not-the-token-at-all" } })).status).toBe(401);
  });

  it("launch, stop, remove and a failed launch move the counters, the histogram and the gauge; a retried last request counts nothing more", async () => {
    const before = await scrape();
    expect(metricValue(before, "previews_launches_total", { outcome: "ready" })).toBe(0);
    expect(metricValue(before, "previews_launch_duration_seconds_count")).toBe(0);
    expect(metricValue(before, "previews_by_status", { status: "running" })).toBe(0);
    expect(metricValue(before, "previews_status_up")).toBe(1);
    expect(metricValue(before, "process_resident_memory_bytes")).toBeGreaterThan(0);
    // Sweep series are there before any sweep ran (alerts see them); the last real run: none yet.
    expect(metricValue(before, "previews_sweep_guards_total", { pass: "orphans" })).toBe(0);
    expect(metricValue(before, "previews_sweep_decisions_total", { pass: "orphans", action: "remove" })).toBe(0);
    expect(metricValue(before, "previews_sweep_items_total", { action: "orphan", outcome: "removed" })).toBe(0);
    expect(metricValue(before, "previews_sweep_last_run_timestamp_seconds")).toBe(0);
    // The README's "sweep stalled" rule falls back to the process start after a restart.
    expect(metricValue(before, "process_start_time_seconds")).toBeGreaterThan(0);

    const id = `metrics-${randomBytes(3).toString("hex")}`;
    ids.push(id);
    await site(id);
    const launched = await run("launch-preview", "pipeline.step7", id);
    expect(launched.outcome).toBe("completed");
    expect(launched.requests).toBeGreaterThan(2); // the handler ran once per step

    let t = await scrape();
    expect(metricValue(t, "previews_launches_total", { outcome: "ready" })).toBe(1);
    expect(metricValue(t, "previews_launch_duration_seconds_count")).toBe(1);
    const seconds = metricValue(t, "previews_launch_duration_seconds_sum")!;
    expect(seconds).toBeGreaterThan(0);
    expect(seconds).toBeLessThan(60);
    expect(metricValue(t, "previews_by_status", { status: "running" })).toBe(1);

    // Inngest sends the last call request again (its answer was lost): every step memoized, the
    // same run id. The handler returns again; the outcome is not counted again.
    const memoized = Object.fromEntries(launched.steps.filter((s) => s.op === "StepRun" || s.op === "Step").map((s) => [s.name, s.data]));
    const again = await run("launch-preview", "pipeline.step7", id, { runId: launched.runId, memoized });
    expect(again.outcome).toBe("completed");
    expect(again.result).toEqual(launched.result);
    expect(again.requests).toBe(1); // nothing ran again but the code after the last step
    t = await scrape();
    expect(metricValue(t, "previews_launches_total", { outcome: "ready" })).toBe(1);
    expect(metricValue(t, "previews_launch_duration_seconds_count")).toBe(1);

    expect((await run("stop-preview", "preview.closed", id)).outcome).toBe("completed");
    t = await scrape();
    expect(metricValue(t, "previews_stops_total", { outcome: "done" })).toBe(1);
    expect(metricValue(t, "previews_by_status", { status: "running" })).toBe(0);
    expect(metricValue(t, "previews_by_status", { status: "stopped" })).toBe(1);

    expect((await run("remove-preview", "project.deleted", id)).outcome).toBe("completed");
    expect((await run("remove-preview", "project.deleted", id)).outcome).toBe("completed"); // duplicate
    t = await scrape();
    expect(metricValue(t, "previews_removals_total", { outcome: "done" })).toBe(1);
    expect(metricValue(t, "previews_removals_total", { outcome: "noop" })).toBe(1);
    expect(metricValue(t, "previews_by_status", { status: "removed" })).toBe(1);

    // A launch without a site folder fails for good; its failure handler counts it, once.
    const missing = `metrics-nosite-${randomBytes(3).toString("hex")}`;
    ids.push(missing);
    const failed = await run("launch-preview", "pipeline.step7", missing, { onFailure: true });
    expect(failed.outcome).toBe("failed");
    expect(failed.failure?.outcome).toBe("completed");
    t = await scrape();
    expect(metricValue(t, "previews_launches_total", { outcome: "failed" })).toBe(1);
    expect(metricValue(t, "previews_launches_total", { outcome: "ready" })).toBe(1);
    expect(metricValue(t, "previews_by_status", { status: "failed" })).toBe(1);

    // With checkpointing (how the Inngest server runs it: steps run in one request and are
    // checkpointed): counted once as well.
    const cp = `metrics-cp-${randomBytes(3).toString("hex")}`;
    ids.push(cp);
    await site(cp);
    const checkpointed = await standIn.run({ serveUrl: `${base}/api/inngest`, fnId: "previews-launch-preview", event: { name: "pipeline.step7", data: { projectId: cp } }, checkpointing: true });
    expect(checkpointed.outcome).toBe("completed");
    expect(checkpointed.checkpoints).toBeGreaterThan(0);
    t = await scrape();
    expect(metricValue(t, "previews_launches_total", { outcome: "ready" })).toBe(2);
    expect(metricValue(t, "previews_launch_duration_seconds_count")).toBe(2);
    expect(metricValue(t, "previews_by_status", { status: "running" })).toBe(1);

    // Logs: pino JSON, with the project and container ids.
    const entries = logLines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const ready = entries.find((e) => e.msg === "preview ready" && e.projectId === id);
    expect(ready).toMatchObject({ projectId: id, containerId: expect.stringMatching(/^[0-9a-f]{64}$/), level: 30 });
    expect(entries.find((e) => e.msg === "preview stopped" && e.projectId === id)).toBeDefined();
    expect(entries.find((e) => e.msg === "preview failed to launch" && e.projectId === missing)).toBeDefined();
  }, 120_000);
});
