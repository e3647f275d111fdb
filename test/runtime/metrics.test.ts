/**
 * Unit tier: the Prometheus side of `Metrics` (runtime/metrics.ts) and `GET /metrics` through
 * `app.request()`, over in-memory fakes. Over real HTTP with a real preview: metrics.int.test.ts.
 */
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { createFunctions } from "../../functions/index.js";
import type { PreviewCounts } from "../../functions/ports.js";
import { createApp } from "../../runtime/app.js";
import { createInngest } from "../../runtime/inngest-client.js";
import { LAUNCH_BUCKETS, PromMetrics, SWEEP_DECISIONS, SWEEP_GUARDS } from "../../runtime/metrics.js";
import { sweepCounts } from "../../functions/sweep-previews.js";
import { FakeRuntime, FakeSiteFiles } from "../fakes/fake-runtime.js";
import { MemoryPreviewStore } from "../fakes/memory-store.js";
import { inngestSettings } from "../helpers/inngest-server.js";
import { metricValue, parseExposition } from "../helpers/metrics-text.js";

const TOKEN = "unit-token-0123456789abcdef";

function metricsOver(counts?: PreviewCounts, opts: { queryTimeoutMs?: number; processMetrics?: boolean } = {}) {
  return new PromMetrics({ registry: new Registry(), ...(counts ? { counts } : {}), queryTimeoutMs: opts.queryTimeoutMs ?? 1_000, processMetrics: opts.processMetrics ?? false });
}

const text = async (m: PromMetrics) => (await m.exposition()).body;

describe("PromMetrics", () => {
  it("every outcome is a series from the start (0), then moves by one per call", async () => {
    const m = metricsOver();
    let t = await text(m);
    for (const outcome of ["ready", "already_running", "superseded", "failed"]) expect(metricValue(t, "previews_launches_total", { outcome })).toBe(0);
    for (const outcome of ["done", "noop", "superseded", "failed"]) {
      expect(metricValue(t, "previews_stops_total", { outcome })).toBe(0);
      expect(metricValue(t, "previews_removals_total", { outcome })).toBe(0);
    }
    m.launchFinished("ready", 3.2);
    m.launchFinished("ready", 40);
    m.launchFinished("failed", null);
    m.stopFinished("done");
    m.removeFinished("noop");
    t = await text(m);
    expect(metricValue(t, "previews_launches_total", { outcome: "ready" })).toBe(2);
    expect(metricValue(t, "previews_launches_total", { outcome: "failed" })).toBe(1);
    expect(metricValue(t, "previews_stops_total", { outcome: "done" })).toBe(1);
    expect(metricValue(t, "previews_removals_total", { outcome: "noop" })).toBe(1);
    // The histogram holds the two measured launches only.
    expect(metricValue(t, "previews_launch_duration_seconds_count")).toBe(2);
    expect(metricValue(t, "previews_launch_duration_seconds_sum")).toBeCloseTo(43.2);
    expect(metricValue(t, "previews_launch_duration_seconds_bucket", { le: "5" })).toBe(1);
    expect(metricValue(t, "previews_launch_duration_seconds_bucket", { le: "60" })).toBe(2);
    expect(LAUNCH_BUCKETS).toContain(5);
  });

  it("sweeps: runs by dry_run, decisions and guards of real runs only", async () => {
    const m = metricsOver();
    m.sweepFinished({ dryRun: true, decisions: [{ pass: "expired", action: "remove", count: 9 }], guards: ["orphans"] });
    m.sweepFinished({ dryRun: false, decisions: [{ pass: "expired", action: "remove", count: 2 }, { pass: "idle", action: "stop", count: 1 }], guards: ["orphans"] });
    m.sweepItemFinished("expire", "removed");
    m.sweepItemFinished("expire", "removed");
    m.sweepItemFinished("orphan", "failed");
    const t = await text(m);
    expect(metricValue(t, "previews_sweep_runs_total", { dry_run: "true" })).toBe(1);
    expect(metricValue(t, "previews_sweep_runs_total", { dry_run: "false" })).toBe(1);
    expect(metricValue(t, "previews_sweep_decisions_total", { pass: "expired", action: "remove" })).toBe(2);
    expect(metricValue(t, "previews_sweep_decisions_total", { pass: "idle", action: "stop" })).toBe(1);
    expect(metricValue(t, "previews_sweep_guards_total", { pass: "orphans" })).toBe(1);
    expect(metricValue(t, "previews_sweep_items_total", { action: "expire", outcome: "removed" })).toBe(2);
    expect(metricValue(t, "previews_sweep_items_total", { action: "orphan", outcome: "failed" })).toBe(1);
    expect(metricValue(t, "previews_sweep_last_run_timestamp_seconds")).toBeGreaterThan(Date.now() / 1000 - 60);
  });

  it("sweep series exist from the start at 0: every decision, guard and item outcome; the last-run gauge is 0 until a real run", async () => {
    const m = metricsOver();
    const t = await text(m);
    const decisions = ["expired/remove", "expired/skip", "orphans/remove", "orphans/skip", "reconcile/correct", "reconcile/adopt", "reconcile/skip", "idle/stop"];
    for (const d of decisions) {
      const [pass, action] = d.split("/") as [string, string];
      expect(metricValue(t, "previews_sweep_decisions_total", { pass, action }), d).toBe(0);
    }
    for (const pass of ["orphans", "reconcile"]) expect(metricValue(t, "previews_sweep_guards_total", { pass }), pass).toBe(0);
    const items = { expire: ["removed", "skip", "failed"], orphan: ["removed", "skip", "failed"], correct: ["corrected", "skip", "failed"], adopt: ["adopted", "skip", "failed"] };
    for (const [action, outcomes] of Object.entries(items)) for (const outcome of outcomes) expect(metricValue(t, "previews_sweep_items_total", { action, outcome }), `${action}/${outcome}`).toBe(0);
    expect(metricValue(t, "previews_sweep_last_run_timestamp_seconds")).toBe(0);
    // The pre-declared label sets are exactly what a run's summary counts (no drift).
    const zero = { remove: 0, skip: 0 };
    const counts = sweepCounts({ dryRun: false, previews: 0, containers: 0, expired: zero, orphans: { ...zero, guard: "x" }, reconcile: { correct: 0, adopt: 0, skip: 0, guard: "y" }, idle: { stop: 0 }, deferred: 0 });
    expect(counts.decisions.map(({ pass, action }) => `${pass}/${action}`).sort()).toEqual(SWEEP_DECISIONS.map(({ pass, action }) => `${pass}/${action}`).sort());
    expect([...counts.guards].sort()).toEqual([...SWEEP_GUARDS].sort());
  });

  it("a dry run does not move the last-run gauge; a real run does", async () => {
    const m = metricsOver();
    m.sweepFinished({ dryRun: true, decisions: [], guards: [] });
    expect(metricValue(await text(m), "previews_sweep_last_run_timestamp_seconds")).toBe(0);
    const before = Math.floor(Date.now() / 1000);
    m.sweepFinished({ dryRun: false, decisions: [], guards: [] });
    expect(metricValue(await text(m), "previews_sweep_last_run_timestamp_seconds")).toBeGreaterThanOrEqual(before);
  });

  it("previews per status are read at scrape time, every status listed", async () => {
    const store = new MemoryPreviewStore();
    const m = metricsOver(store);
    store.seed("a", "running");
    store.seed("b", "running");
    store.seed("c", "stopped");
    let t = await text(m);
    expect(metricValue(t, "previews_by_status", { status: "running" })).toBe(2);
    expect(metricValue(t, "previews_by_status", { status: "stopped" })).toBe(1);
    expect(metricValue(t, "previews_by_status", { status: "failed" })).toBe(0);
    expect(metricValue(t, "previews_status_up")).toBe(1);
    store.seed("a", "stopped");
    t = await text(m);
    expect(metricValue(t, "previews_by_status", { status: "running" })).toBe(1);
    expect(metricValue(t, "previews_by_status", { status: "stopped" })).toBe(2);
  });

  it("a hung database: the scrape answers within the timeout, without the gauge, up 0, and asks the database once", async () => {
    let calls = 0;
    let answer: (v: Record<string, number>) => void = () => undefined;
    const hung: PreviewCounts = {
      countByStatus: () => {
        calls++;
        return new Promise((resolve) => (answer = resolve));
      },
    };
    const m = metricsOver(hung, { queryTimeoutMs: 100 });
    const started = Date.now();
    const [t1, t2] = await Promise.all([text(m), text(m)]);
    expect(Date.now() - started).toBeLessThan(2_000);
    for (const t of [t1, t2]) {
      expect(metricValue(t, "previews_status_up")).toBe(0);
      expect(metricValue(t, "previews_by_status", { status: "running" })).toBeUndefined();
      expect(metricValue(t, "previews_launches_total", { outcome: "ready" })).toBe(0); // the rest is there
    }
    expect(await text(m)).toContain("previews_status_up 0");
    expect(calls).toBe(1); // still in flight: not asked again
    answer({ running: 4 });
    await new Promise((r) => setTimeout(r, 10));
    const t = await text(m);
    expect(calls).toBe(2);
    expect(metricValue(t, "previews_status_up")).toBe(0); // that read hangs again (new promise)
    answer({ running: 4 });
  });

  it("a failing database: up 0 and no gauge series", async () => {
    const store = new MemoryPreviewStore();
    store.seed("a", "running");
    const m = metricsOver(store);
    store.failWith = new Error("database: count previews by status failed: ECONNREFUSED");
    const t = await text(m);
    expect(metricValue(t, "previews_status_up")).toBe(0);
    expect(parseExposition(t).filter((s) => s.name === "previews_by_status")).toEqual([]);
  });

  it("two instances in one process keep their own series (own registries, default metrics in both)", async () => {
    const a = metricsOver(undefined, { processMetrics: true });
    const b = metricsOver(undefined, { processMetrics: true });
    a.launchFinished("ready", 1);
    const [ta, tb] = [await text(a), await text(b)];
    expect(metricValue(ta, "previews_launches_total", { outcome: "ready" })).toBe(1);
    expect(metricValue(tb, "previews_launches_total", { outcome: "ready" })).toBe(0);
    for (const t of [ta, tb]) {
      expect(metricValue(t, "process_resident_memory_bytes")).toBeGreaterThan(0);
      expect(t).toContain("nodejs_heap_size_used_bytes");
    }
  });
});

describe("GET /metrics", () => {
  function app(apiToken: string | null) {
    const store = new MemoryPreviewStore();
    const runtime = new FakeRuntime();
    const inngest = createInngest(inngestSettings({ dev: true }));
    const functions = createFunctions(inngest, { runtime, store, site: new FakeSiteFiles(), readyTimeoutMs: 1000 });
    const metrics = metricsOver(store);
    return { app: createApp({ inngest, functions, store, runtime, apiToken, metrics }), store };
  }

  it("without API_TOKEN: open, Prometheus text format", async () => {
    const { app: a, store } = app(null);
    store.seed("x", "running");
    const res = await a.request("/metrics");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(metricValue(await res.text(), "previews_by_status", { status: "running" })).toBe(1);
  });

  it("with API_TOKEN: Authorization: Bearer <token>, else 401", async () => {
    const { app: a } = app(TOKEN);
    expect((await a.request("/metrics")).status).toBe(401);
    expect((await a.request("/metrics", { headers: { authorization: "Bearer wrong-token-0123456789" } })).status).toBe(401);
    const res = await a.request("/metrics", { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain("previews_launches_total");
  });
});
