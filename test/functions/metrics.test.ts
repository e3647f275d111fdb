/**
 * Unit tier: outcomes counted once per run (functions/metrics.ts), wherever the run ends, over
 * in-memory fakes with real steps (`@inngest/test` replays the handler for every step, as the
 * server does). The Prometheus side: test/runtime/metrics.test.ts; over real HTTP, Docker and
 * Postgres: test/runtime/metrics.int.test.ts.
 */
import { createHash } from "node:crypto";
import { InngestTestEngine } from "@inngest/test";
import { serializeError, type InngestFunction } from "inngest";
import { pino } from "pino";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { FailureContext } from "../../functions/failure.js";
import { createSweepFunctions, type SweepDeps } from "../../functions/index.js";
import { countOnce, RUNS_REMEMBERED } from "../../functions/metrics.js";
import { PermanentError } from "../../functions/ports.js";
import { recordSweepItemFailure } from "../../functions/sweep-item.js";
import { APP_ID } from "../../inngest.config.js";
import { createInngest } from "../../runtime/inngest-client.js";
import { FakeInventory, FakeProjects, MemorySweepLog } from "../fakes/fake-sweep.js";
import { MemoryMetrics } from "../fakes/memory-metrics.js";
import { inngestSettings, startInngestStandIn, type InngestStandIn } from "../helpers/inngest-server.js";
import { oneRun } from "../helpers/lifecycle-run.js";
import { createUnitEnv, newProjectId, type UnitEnv } from "../helpers/unit-env.js";

describe("countOnce", () => {
  it("counts a key once per Metrics, and again for another Metrics", () => {
    const a = new MemoryMetrics();
    const b = new MemoryMetrics();
    for (let i = 0; i < 3; i++) countOnce(a, "launch:run-1", (m) => m.launchFinished("ready", 1));
    countOnce(a, "launch:run-2", (m) => m.launchFinished("superseded", null));
    countOnce(b, "launch:run-1", (m) => m.launchFinished("ready", 1));
    expect(a.of("launch").map((c) => c.outcome)).toEqual(["ready", "superseded"]);
    expect(b.of("launch")).toHaveLength(1);
  });

  it("remembers a bounded number of keys (the oldest forgotten first)", () => {
    const m = new MemoryMetrics();
    for (let i = 0; i <= RUNS_REMEMBERED; i++) countOnce(m, `k${i}`, (x) => x.stopFinished("done"));
    countOnce(m, `k${RUNS_REMEMBERED}`, (x) => x.stopFinished("done")); // still remembered
    countOnce(m, "k0", (x) => x.stopFinished("done")); // forgotten: counted again
    expect(m.of("stop")).toHaveLength(RUNS_REMEMBERED + 2);
  });

  it("a counter that throws never fails the caller; no Metrics: nothing happens", () => {
    const m = new MemoryMetrics();
    expect(() =>
      countOnce(m, "x", () => {
        throw new Error("boom");
      }),
    ).not.toThrow();
    expect(() => countOnce(undefined, "x", () => undefined)).not.toThrow();
  });
});

describe("lifecycle outcomes are counted once per run (unit)", () => {
  let env: UnitEnv;
  const metrics = new MemoryMetrics();
  beforeAll(async () => {
    env = await createUnitEnv({ metrics });
  });
  afterAll(async () => {
    await env?.close();
  });
  beforeEach(() => metrics.clear());

  it("a launch that comes up: one `ready` with its duration, though the handler ran once per step", async () => {
    const id = newProjectId("m");
    env.site.sites.add(id);
    const run = await env.launch(id);
    expect(run.error).toBeUndefined();
    expect(metrics.calls).toEqual([{ kind: "launch", outcome: "ready", seconds: expect.any(Number) }]);
    const seconds = metrics.of("launch")[0]!.seconds;
    expect(seconds).toBeGreaterThanOrEqual(0);
    expect(seconds).toBeLessThan(5);
  });

  it("launching a running preview: `already_running`, no duration", async () => {
    const id = await env.runningPreview("m");
    metrics.clear();
    await env.launch(id);
    expect(metrics.calls).toEqual([{ kind: "launch", outcome: "already_running", seconds: null }]);
  });

  it("a late launch of a removed project: `superseded`", async () => {
    const id = newProjectId("m");
    env.store.seed(id, "removed");
    const run = await env.launch(id);
    expect(run.result).toMatchObject({ superseded: true });
    expect(metrics.calls).toEqual([{ kind: "launch", outcome: "superseded", seconds: null }]);
  });

  it("a launch that fails for good: one `failed`, counted by its failure handler, even when that handler is delivered twice", async () => {
    const id = newProjectId("m"); // no site folder
    const run = await env.launch(id, "pipeline.step7", { deferFailure: true });
    expect(run.error).toBeDefined();
    expect(metrics.calls).toEqual([]); // the run itself ended in an error: nothing counted there
    await run.runFailure!();
    await run.runFailure!(); // a duplicate inngest/function.failed for the same run
    expect(metrics.calls).toEqual([{ kind: "launch", outcome: "failed", seconds: null }]);
    expect(env.store.rows.get(id)?.status).toBe("failed");
  });

  it("stops and removes by outcome: done, noop, failed", async () => {
    const id = await env.runningPreview("m");
    metrics.clear();
    await env.stop(id);
    await env.stop(id); // already stopped
    await env.remove(id);
    await env.remove(id); // duplicate project.deleted
    expect(metrics.calls).toEqual([
      { kind: "stop", outcome: "done" },
      { kind: "stop", outcome: "noop" },
      { kind: "remove", outcome: "done" },
      { kind: "remove", outcome: "noop" },
    ]);

    const broken = await env.runningPreview("m");
    metrics.clear();
    env.runtime.failNext("stop", new PermanentError("refused for good"), 1);
    const failed = await env.stop(broken);
    expect(failed.error).toBeDefined();
    expect(metrics.calls).toEqual([{ kind: "stop", outcome: "failed" }]);
  });
});

describe("sweep outcomes are counted once per run (unit)", () => {
  const HOUR = 3_600_000;
  const NOW = Date.parse("2026-11-26T12:00:00Z");
  let standIn: InngestStandIn;
  let metrics: MemoryMetrics;
  let unit: UnitEnv;
  let sweep: SweepDeps;
  let sweepFn: InngestFunction.Any;
  let item: InngestFunction.Any;
  let itemFailure: InngestFunction.Any;
  let inventory: FakeInventory;
  let projects: FakeProjects;

  beforeAll(async () => {
    standIn = await startInngestStandIn();
  });
  afterAll(async () => {
    await standIn?.close();
    await unit?.close();
  });
  beforeEach(async () => {
    metrics = new MemoryMetrics();
    await unit?.close();
    unit = await createUnitEnv({ metrics });
    inventory = new FakeInventory(unit.runtime);
    projects = new FakeProjects();
    sweep = {
      inventory,
      projects,
      decisions: new MemorySweepLog(),
      settings: { cron: "*/15 * * * *", retentionMs: 24 * HOUR, graceMs: 10 * 60_000, maxOrphanFraction: 1, concurrency: 8 },
      now: () => NOW,
    };
    unit.store.auditLog = sweep.decisions; // as the SQL store: expiries audited with their write
    const inngest = createInngest(inngestSettings({ dev: standIn.url }), pino({ level: "silent" }));
    [sweepFn, item] = createSweepFunctions(inngest, unit.deps, sweep) as unknown as [InngestFunction.Any, InngestFunction.Any];
    itemFailure = inngest.createFunction({ id: "sweep-item-failure", triggers: [{ event: "inngest/function.failed" }] }, (ctx) =>
      recordSweepItemFailure(unit.deps, sweep, ctx as unknown as FailureContext),
    );
  });

  /** A container id as Docker makes them (64 hex digits). */
  const cid = (id: string) => createHash("sha256").update(id).digest("hex");

  /** A stopped preview past retention, its project existing. */
  function expired(id: string) {
    unit.runtime.containers.set(id, { id: cid(id), running: false, foreign: false });
    inventory.times.set(id, { createdAt: NOW - 48 * HOUR, finishedAt: NOW - 30 * HOUR });
    unit.store.seed(id, "stopped", { containerId: cid(id), stoppedAt: new Date(NOW - 30 * HOUR), updatedAt: new Date(NOW - 30 * HOUR) });
    projects.ids.add(id);
  }

  it("a sweep run: its decisions per pass and action, once", async () => {
    expired("e1");
    expired("e2");
    const run = await new InngestTestEngine({ function: sweepFn }).execute({ events: [{ name: "previews.sweep.requested", data: {} }] });
    expect(run.error).toBeUndefined();
    const sweeps = metrics.of("sweep");
    expect(sweeps).toHaveLength(1);
    expect(sweeps[0]!.counts.dryRun).toBe(false);
    expect(sweeps[0]!.counts.decisions).toContainEqual({ pass: "expired", action: "remove", count: 2 });
    expect(sweeps[0]!.counts.guards).toEqual([]);
  });

  it("a sweep item: its action and outcome; a failed orphan counts as the item's failure, not as a remove-preview failure", async () => {
    expired("e1");
    const { transformCtx } = oneRun();
    const event = { name: "previews.sweep.item", data: { projectId: "e1", action: "expire", sweepRunId: "s-1", reason: "planned", containerId: cid("e1") } };
    const ok = await new InngestTestEngine({ function: item, transformCtx }).execute({ events: [event] });
    expect(ok.error).toBeUndefined();
    expect(metrics.calls).toEqual([{ kind: "sweep-item", action: "expire", outcome: "removed" }]);
    metrics.clear();

    // An orphan (no project) whose container cannot be removed: fails for good.
    unit.runtime.containers.set("o1", { id: cid("o1"), running: false, foreign: false });
    inventory.times.set("o1", { createdAt: NOW - 48 * HOUR, finishedAt: NOW - 30 * HOUR });
    projects.ids.add("someone-else");
    unit.runtime.failNext("remove", new Error("engine exploded"), 50);
    const orphan = oneRun();
    const orphanEvent = { name: "previews.sweep.item", data: { projectId: "o1", action: "orphan", sweepRunId: "s-1", reason: "planned" } };
    const bad = await new InngestTestEngine({ function: item, transformCtx: orphan.transformCtx }).execute({ events: [orphanEvent] });
    expect(bad.error).toBeDefined();
    const failed = { name: "inngest/function.failed", data: { function_id: `${APP_ID}-sweep-item`, run_id: orphan.runId, error: serializeError(bad.error), event: orphanEvent } };
    await new InngestTestEngine({ function: itemFailure }).execute({ events: [failed] });
    await new InngestTestEngine({ function: itemFailure }).execute({ events: [failed] }); // delivered twice
    expect(metrics.calls).toEqual([{ kind: "sweep-item", action: "orphan", outcome: "failed" }]);
  });
});
