/**
 * GET /metrics while the database hangs, for real: a private Postgres cluster this file creates
 * (paused with SIGSTOP: connections open, nothing answers), the whole service on the pg driver
 * with the default DATABASE_TIMEOUT (10 s), and scrapes over HTTP. A scrape answers within
 * METRICS_QUERY_TIMEOUT (here 500 ms; upper bound loose for a noisy machine), without the status
 * gauge and with `previews_status_up 0`, and recovers once the server answers again.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../runtime/config.js";
import { startService, type RunningService } from "../../runtime/service.js";
import { createPrivateCluster, type PrivateCluster } from "../helpers/postgres.js";
import { metricValue } from "../helpers/metrics-text.js";
import { startInngestStandIn, type InngestStandIn } from "../helpers/inngest-server.js";
import { removeServiceNetwork, serviceEnv } from "../helpers/service-env.js";

const QUERY_TIMEOUT_MS = 500;
/** Loose: about METRICS_QUERY_TIMEOUT, far below DATABASE_TIMEOUT (10 s) and a scrape timeout. */
const UPPER_BOUND_MS = 4_000;

let cluster: PrivateCluster;
let standIn: InngestStandIn;
let service: RunningService | undefined;
let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "sbp-metrics-outage-"));
  cluster = await createPrivateCluster();
  standIn = await startInngestStandIn();
}, 120_000);

afterAll(async () => {
  await cluster?.resume().catch(() => undefined);
  await service?.close().catch(() => undefined);
  await cluster?.drop().catch((err: unknown) => console.warn("metrics outage cleanup:", err));
  await standIn?.close();
  await removeServiceNetwork();
  await rm(tmp, { recursive: true, force: true });
});

async function scrape(base: string): Promise<{ ms: number; text: string }> {
  const started = performance.now();
  const res = await fetch(`${base}/metrics`);
  const text = await res.text();
  expect(res.status).toBe(200);
  return { ms: performance.now() - started, text };
}

describe("GET /metrics with a hung database", () => {
  it("answers within METRICS_QUERY_TIMEOUT without the status gauge, then recovers", async () => {
    service = await startService(
      loadConfig(serviceEnv(tmp, standIn.url, { DATABASE_URL: cluster.url, METRICS_QUERY_TIMEOUT: `${QUERY_TIMEOUT_MS}ms` })),
      pino({ level: "silent" }),
    );
    const base = `http://127.0.0.1:${service.port}`;
    // Migrated in the background: wait until the store answers.
    for (let i = 0; i < 100 && (await fetch(`${base}/previews`)).status !== 200; i++) await new Promise((r) => setTimeout(r, 100));

    const healthy = await scrape(base);
    expect(metricValue(healthy.text, "previews_status_up")).toBe(1);
    expect(metricValue(healthy.text, "previews_by_status", { status: "running" })).toBe(0);

    await cluster.pause();
    const hung = await scrape(base);
    expect(hung.ms).toBeGreaterThanOrEqual(QUERY_TIMEOUT_MS - 50);
    expect(hung.ms).toBeLessThan(UPPER_BOUND_MS);
    expect(metricValue(hung.text, "previews_status_up")).toBe(0);
    expect(metricValue(hung.text, "previews_by_status", { status: "running" })).toBeUndefined();
    expect(metricValue(hung.text, "previews_launches_total", { outcome: "ready" })).toBe(0);
    // A second scrape while it still hangs: bounded the same way.
    const again = await scrape(base);
    expect(again.ms).toBeLessThan(UPPER_BOUND_MS);
    expect(metricValue(again.text, "previews_status_up")).toBe(0);

    await cluster.resume();
    let recovered = await scrape(base);
    // The count in flight (ended by the driver's own DATABASE_TIMEOUT at worst) is not retried
    // until it settles: a scrape or two may still say 0.
    for (let i = 0; i < 60 && metricValue(recovered.text, "previews_status_up") !== 1; i++) {
      await new Promise((r) => setTimeout(r, 250));
      recovered = await scrape(base);
    }
    expect(metricValue(recovered.text, "previews_status_up")).toBe(1);
    expect(metricValue(recovered.text, "previews_by_status", { status: "running" })).toBe(0);
  }, 120_000);
});
