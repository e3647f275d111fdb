/**
 * Unit tier: the sweep's decisions (`planSweep`), its limits at 10,000 previews (through
 * `/api/inngest` as the server drives it, over in-memory ports), and `sweep-item`'s re-checks and
 * failures. The real engine, Postgres and project table: sweep-previews.int.test.ts.
 */
import { createHash } from "node:crypto";
import { InngestTestEngine } from "@inngest/test";
import { serializeError, type InngestFunction } from "inngest";
import { pino } from "pino";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { FailureContext } from "../../functions/failure.js";
import { createFunctions, createSweepFunctions, type PreviewDeps, type SweepDeps } from "../../functions/index.js";
import { EXPIRE_CHUNK, expireBatch, expirePreviews } from "../../functions/sweep-expire.js";
import { recordSweepItemFailure } from "../../functions/sweep-item.js";
import { MAX_ITEMS_PER_RUN, planSweep } from "../../functions/sweep-plan.js";
import { PermanentError } from "../../functions/ports.js";
import { APP_ID } from "../../inngest.config.js";
import { createApp } from "../../runtime/app.js";
import { createInngest } from "../../runtime/inngest-client.js";
import { FakeRuntime, FakeSiteFiles } from "../fakes/fake-runtime.js";
import { FakeInventory, FakeProjects, MemorySweepLog } from "../fakes/fake-sweep.js";
import { FakeProjectObjects } from "../fakes/memory-objects.js";
import { MemoryPreviewStore } from "../fakes/memory-store.js";
import { listen } from "../helpers/http.js";
import { inngestSettings, startInngestStandIn, type InngestStandIn } from "../helpers/inngest-server.js";
import { oneRun } from "../helpers/lifecycle-run.js";

const HOUR = 3_600_000;
const NOW = Date.parse("2026-11-26T12:00:00Z");

interface World {
  store: MemoryPreviewStore;
  runtime: FakeRuntime;
  site: FakeSiteFiles;
  inventory: FakeInventory;
  projects: FakeProjects;
  log: MemorySweepLog;
  deps: PreviewDeps;
  sweep: SweepDeps;
}

function world(opts: { projects?: boolean } = {}): World {
  const store = new MemoryPreviewStore();
  const runtime = new FakeRuntime();
  const site = new FakeSiteFiles();
  const inventory = new FakeInventory(runtime);
  const projects = new FakeProjects();
  const log = new MemorySweepLog();
  store.auditLog = log;
  return {
    store,
    runtime,
    site,
    inventory,
    projects,
    log,
    deps: { runtime, store, site, readyTimeoutMs: 300 },
    sweep: {
      inventory,
      projects: opts.projects === false ? null : projects,
      decisions: log,
      settings: { cron: "*/15 * * * *", retentionMs: 24 * HOUR, graceMs: 10 * 60_000, maxOrphanFraction: 0.5, concurrency: 8 },
      now: () => NOW,
    },
  };
}

/** A preview of an existing project: container (old) and row. */
function preview(w: World, id: string, how: { stoppedAgoMs?: number; running?: boolean; project?: boolean; row?: boolean; createdAgoMs?: number; finishedAgoMs?: number } = {}) {
  const running = how.running ?? how.stoppedAgoMs === undefined;
  w.runtime.containers.set(id, { id: cid(id), running, foreign: false });
  w.inventory.times.set(id, { createdAt: NOW - (how.createdAgoMs ?? 48 * HOUR), finishedAt: how.finishedAgoMs === undefined ? null : NOW - how.finishedAgoMs });
  if (how.row !== false) {
    const stoppedAt = how.stoppedAgoMs === undefined ? null : new Date(NOW - how.stoppedAgoMs);
    w.store.seed(id, running ? "running" : "stopped", { containerId: cid(id), stoppedAt, updatedAt: new Date(NOW - 48 * HOUR) });
  }
  if (how.project !== false) w.projects.ids.add(id);
  w.site.sites.add(id);
}

/** A container id as Docker makes them (64 hex digits), derived from the project. */
const cid = (projectId: string) => createHash("sha256").update(projectId).digest("hex");

const plan = (w: World) => planSweep(w.store, w.sweep);
const actions = async (w: World) => (await plan(w)).items.map((i) => `${i.action}:${i.projectId}`).sort();

describe("planSweep", () => {
  it("expired: by the recorded stop time; not before STOPPED_RETENTION; never a running container", async () => {
    const w = world();
    preview(w, "old", { stoppedAgoMs: 25 * HOUR });
    preview(w, "recent", { stoppedAgoMs: 23 * HOUR });
    preview(w, "running");
    expect(await actions(w)).toEqual(["expire:old"]);
  });

  it("expired without a row: by State.FinishedAt (one inspect each, rowless ones only)", async () => {
    const w = world();
    preview(w, "rowless-old", { stoppedAgoMs: 0, row: false, finishedAgoMs: 25 * HOUR });
    preview(w, "rowless-new", { stoppedAgoMs: 0, row: false, finishedAgoMs: 1 * HOUR });
    preview(w, "with-row", { stoppedAgoMs: 25 * HOUR });
    expect(await actions(w)).toEqual(["adopt:rowless-new", "expire:rowless-old", "expire:with-row"]);
    expect(w.inventory.inspectCalls).toBe(2);
  });

  it("orphans: a project missing from the source; a young container is skipped with its reason", async () => {
    const w = world();
    for (const id of ["a", "b", "c", "d"]) preview(w, id);
    preview(w, "gone", { project: false });
    preview(w, "gone-young", { project: false, createdAgoMs: 60_000 });
    const p = await plan(w);
    expect(p.items.map((i) => `${i.action}:${i.projectId}`)).toEqual(["orphan:gone"]);
    expect(p.skipped).toEqual([{ projectId: "gone-young", pass: "orphans", reason: expect.stringMatching(/younger than SWEEP_GRACE 10m/) }]);
  });

  it("orphan wins over expire for a stopped preview of a missing project", async () => {
    const w = world();
    for (const id of ["a", "b", "c"]) preview(w, id);
    preview(w, "gone", { stoppedAgoMs: 30 * HOUR, project: false });
    expect(await actions(w)).toEqual(["orphan:gone"]);
  });

  it("guard: the project query fails -> no orphan, loudly; expired still planned; adoption skipped", async () => {
    const w = world();
    preview(w, "gone", { project: false });
    preview(w, "old", { stoppedAgoMs: 25 * HOUR });
    preview(w, "rowless", { row: false });
    w.projects.failWith = new Error("database: read projects failed: ECONNREFUSED");
    const p = await plan(w);
    expect(p.items.map((i) => `${i.action}:${i.projectId}`)).toEqual(["expire:old"]);
    expect(p.guards).toEqual([
      { pass: "orphans", reason: "orphan pass skipped: project query failed: database: read projects failed: ECONNREFUSED" },
      { pass: "reconcile", reason: expect.stringMatching(/^adoption of 1 containers without a row skipped: project query failed/) },
    ]);
  });

  it("guard: no project at all while previews exist", async () => {
    const w = world();
    preview(w, "a", { project: false });
    preview(w, "b", { project: false });
    const p = await plan(w);
    expect(p.items).toEqual([]);
    expect(p.guards[0]).toEqual({ pass: "orphans", reason: "orphan pass skipped: table projects (fake) returned no project at all while 2 previews exist" });
  });

  it("guard: more than SWEEP_MAX_ORPHAN_FRACTION would go (exactly the fraction still goes)", async () => {
    const w = world();
    for (const id of ["a", "b"]) preview(w, id);
    for (const id of ["x", "y"]) preview(w, id, { project: false });
    expect(await actions(w)).toEqual(["orphan:x", "orphan:y"]); // 2 of 4 = 0.5: not more
    preview(w, "z", { project: false });
    const p = await plan(w);
    expect(p.items).toEqual([]);
    expect(p.guards).toEqual([{ pass: "orphans", reason: "orphan pass skipped: it would remove 3 of 5 managed previews, more than SWEEP_MAX_ORPHAN_FRACTION 0.5" }]);
  });

  it("no project source: a stopped container without a row is the orphan, guarded by the fraction of containers; a running one never; nothing is adopted", async () => {
    const w = world({ projects: false });
    for (const id of ["a", "b", "c"]) preview(w, id, { project: false });
    preview(w, "norow", { row: false, project: false, running: false });
    // Running without a row: maybe another instance's under the same owner; never removed here.
    preview(w, "other", { row: false, project: false });
    expect(await actions(w)).toEqual(["orphan:norow"]);
    expect((await plan(w)).skipped).toContainEqual(expect.objectContaining({ projectId: "other", pass: "orphans", reason: expect.stringMatching(/running container without a row/) }));
    // A reset database (no rows at all) must not empty the engine.
    const reset = world({ projects: false });
    for (const id of ["a", "b", "c"]) preview(reset, id, { row: false, project: false, running: false });
    const p = await plan(reset);
    expect(p.items).toEqual([]);
    expect(p.guards[0]?.reason).toMatch(/would remove 3 of 3 managed containers.*no project source/);
    // Stopped rows piling up do not dilute the share: 2 of 3 containers is over 0.5 whatever the rows.
    const diluted = world({ projects: false });
    for (let i = 0; i < 20; i++) diluted.store.seed(`old-${i}`, "stopped");
    preview(diluted, "kept", { project: false, stoppedAgoMs: HOUR });
    for (const id of ["x", "y"]) preview(diluted, id, { row: false, project: false, running: false });
    const d = await plan(diluted);
    expect(d.items).toEqual([]);
    expect(d.guards[0]?.reason).toMatch(/would remove 2 of 3 managed containers/);
  });

  it("reconcile: running/starting rows whose container is gone or exited, unless updated within the grace; rowless containers adopted", async () => {
    const w = world();
    for (const id of ["a", "b", "c", "d"]) preview(w, id);
    w.runtime.containers.delete("a"); // gone
    w.runtime.containers.get("b")!.running = false; // exited
    w.runtime.containers.get("c")!.running = false;
    w.store.rows.get("c")!.updatedAt = new Date(NOW - 60_000); // a launch may be under way
    preview(w, "e", { row: false });
    const p = await plan(w);
    expect(p.items.map((i) => `${i.action}:${i.projectId}:${i.reason}`).sort()).toEqual([
      `adopt:e:running container ${cid("e").slice(0, 12)} without a row; project exists`,
      "correct:a:recorded running but its container is gone",
      "correct:b:recorded running but its container is exited",
    ]);
    expect(p.skipped).toEqual([expect.objectContaining({ projectId: "c", pass: "reconcile", reason: expect.stringMatching(/within SWEEP_GRACE/) })]);
  });

  it("idle: running previews unused for IDLE_TIMEOUT (by last activity, or since ready) get preview.idle; used, stopped or corrected ones do not", async () => {
    const w = world();
    w.sweep.settings.idleTimeoutMs = HOUR;
    for (const id of ["never-used", "used-long-ago", "used-recently", "ready-recently", "stopped", "gone"]) preview(w, id);
    w.store.rows.get("used-long-ago")!.lastActivityAt = new Date(NOW - 2 * HOUR);
    w.store.rows.get("used-recently")!.lastActivityAt = new Date(NOW - 5 * 60_000);
    w.store.rows.get("ready-recently")!.updatedAt = new Date(NOW - 30 * 60_000);
    w.store.rows.get("stopped")!.status = "stopped";
    w.runtime.containers.get("stopped")!.running = false;
    w.runtime.containers.delete("gone"); // corrected by reconcile instead
    const p = await plan(w);
    // The longest unused first.
    expect(p.idle).toEqual(["never-used", "used-long-ago"]);
    expect(p.items.map((i) => `${i.action}:${i.projectId}`)).toEqual(["correct:gone"]);
    // Without IDLE_TIMEOUT in the settings: no idle pass.
    delete w.sweep.settings.idleTimeoutMs;
    expect((await plan(w)).idle).toEqual([]);
  });

  it(`dispatches at most MAX_ITEMS_PER_RUN (${MAX_ITEMS_PER_RUN}) per run; the rest is deferred`, async () => {
    const w = world();
    for (let i = 0; i < MAX_ITEMS_PER_RUN + 50; i++) preview(w, `p-${i}`, { stoppedAgoMs: 25 * HOUR });
    const p = await plan(w);
    expect(p.items).toHaveLength(MAX_ITEMS_PER_RUN);
    expect(p.deferred).toBe(50);
  });
});

/** One `sweep-previews` run of `w`, its functions served over real HTTP at /api/inngest and driven by `standIn`. */
async function sweepOverHttp(standIn: InngestStandIn, w: World) {
  const inngest = createInngest(inngestSettings({ dev: standIn.url }), pino({ level: "silent" }));
  const functions = [...createFunctions(inngest, w.deps), ...createSweepFunctions(inngest, w.deps, w.sweep)];
  const host = await listen(createApp({ inngest, functions, store: w.store, runtime: w.runtime, apiToken: null }));
  try {
    return await standIn.run({ serveUrl: `${host.url}/api/inngest`, fnId: "previews-sweep-previews", event: { name: "previews.sweep.requested", data: {} } });
  } finally {
    await host.close();
  }
}

describe("sweep-previews at 10,000 previews, through /api/inngest", () => {
  let standIn: InngestStandIn;
  beforeAll(async () => {
    standIn = await startInngestStandIn();
  });
  afterAll(async () => {
    await standIn?.close();
  });

  it("stays within 1,000 steps per run, 4 MB per step output and small event batches", async () => {
    const w = world();
    // 5,000 expired (batched in the run's own expire steps) and 5,000 recorded running whose
    // container is gone (one sweep-item event each): both ways of acting at scale.
    for (let i = 0; i < 5_000; i++) preview(w, `project-with-a-longish-id-${String(i).padStart(5, "0")}`, { stoppedAgoMs: 25 * HOUR });
    for (let i = 5_000; i < 10_000; i++) {
      const id = `project-with-a-longish-id-${String(i).padStart(5, "0")}`;
      preview(w, id);
      w.runtime.containers.delete(id);
    }
    const run = await sweepOverHttp(standIn, w);
    expect(run.outcome).toBe("completed");
    expect(run.steps.length).toBeLessThanOrEqual(1_000);
    expect(run.steps.map((s) => s.name)).toEqual([
      "plan",
      ...Array.from({ length: 10 }, (_, i) => `dispatch-${i + 1}`),
      ...Array.from({ length: 5_000 / EXPIRE_CHUNK }, (_, i) => `expire-${i + 1}`),
    ]);
    const largest = Math.max(...run.steps.map((s) => JSON.stringify(s.data ?? null).length));
    expect(largest).toBeLessThan(4 * 1024 * 1024);
    expect(JSON.stringify(run.result).length).toBeLessThan(4 * 1024 * 1024);
    const items = standIn.eventsNamed("previews.sweep.item").filter((e) => e.data.sweepRunId === run.runId);
    expect(items).toHaveLength(5_000);
    expect(new Set(items.map((e) => e.data.action))).toEqual(new Set(["correct"]));
    expect(new Set(items.map((e) => e.id)).size).toBe(5_000);
    // 500 events per send request: well under Inngest's request size limits.
    expect(JSON.stringify(items.slice(0, 500)).length).toBeLessThan(256 * 1024);
    // Every expiry planned, acted on and recorded: 5,000 containers gone, rows cleared.
    expect(w.log.entries.filter((e) => e.action === "remove")).toHaveLength(5_000);
    expect(w.log.entries.filter((e) => e.pass === "expired" && e.action === "removed")).toHaveLength(5_000);
    expect([...w.store.rows.values()].filter((r) => r.status === "stopped" && r.containerId === null)).toHaveLength(5_000);
    expect(w.runtime.containers.size).toBe(0);
    expect(run.result).toMatchObject({ previews: 10_000, expired: { remove: 5_000, removed: 5_000, left: 0, failed: 0 }, reconcile: { correct: 5_000 }, deferred: 0 });
  });
});

describe("expire batches (sweep-expire.ts, unit): no per-project key, so every race is checked", () => {
  const expired = (w: World, ...ids: string[]) => {
    for (const id of ids) preview(w, id, { stoppedAgoMs: 25 * HOUR });
    return ids.map((projectId) => ({ projectId, containerId: cid(projectId) }));
  };

  it("removes and records the batch in one read and one write; the rows keep their stop time, lose their container", async () => {
    const w = world();
    const items = expired(w, "a", "b", "c");
    let reads = 0;
    const getMany = w.store.getMany.bind(w.store);
    w.store.getMany = async (ids) => (reads++, getMany(ids));
    const outcomes = (await expirePreviews(w.deps, w.sweep, items, "sweep-run")).outcomes;
    expect(outcomes).toEqual(items.map(() => expect.objectContaining({ done: true, action: "removed", reason: expect.stringMatching(/\(container removed\)$/) })));
    expect(reads).toBe(1);
    expect(w.runtime.containers.size).toBe(0);
    for (const id of ["a", "b", "c"]) {
      expect(w.store.rows.get(id)).toMatchObject({ status: "stopped", containerId: null, url: null, claim: "sweep-run", stoppedAt: new Date(NOW - 25 * HOUR) });
    }
  });

  it("a launch that claims between the read and the removal: its row is not rewritten, and the audit says so", async () => {
    const w = world();
    const items = expired(w, "raced", "calm");
    const remove = w.inventory.removeStopped.bind(w.inventory);
    w.inventory.removeStopped = async (projectId, containerId, opts) => {
      // The launch's ensure-container step, between this batch's read and its removal.
      if (projectId === "raced") expect((await w.store.apply("raced", "launch", { reason: "launch", claim: "launch-run" })).applied).toBe(true);
      return remove(projectId, containerId, opts);
    };
    const [raced, calm] = (await expirePreviews(w.deps, w.sweep, items, "sweep-run")).outcomes;
    // The stopped container went (the launch's start-container creates it again: launch tests).
    expect(raced).toEqual({ done: true, action: "removed", reason: expect.stringMatching(/; row not recorded \(now starting\)$/) });
    expect(w.store.rows.get("raced")).toMatchObject({ status: "starting", claim: "launch-run", containerId: cid("raced") });
    expect(calm).toMatchObject({ done: true, action: "removed" });
    expect(w.store.rows.get("calm")).toMatchObject({ status: "stopped", containerId: null });
  });

  it("a preview launched before the read is left alone; a running container is never removed", async () => {
    const w = world();
    const items = expired(w, "launched", "restarted");
    await w.store.apply("launched", "launch", { reason: "launch", claim: "launch-run" });
    w.runtime.containers.get("restarted")!.running = true; // started by hand, row still stopped
    const outcomes = (await expirePreviews(w.deps, w.sweep, items, "sweep-run")).outcomes;
    expect(outcomes).toEqual([
      { done: false, reason: "row is starting now" },
      { done: false, reason: "container runs again; left alone" },
    ]);
    expect([...w.runtime.containers.keys()].sort()).toEqual(["launched", "restarted"]);
    expect(w.store.rows.get("restarted")).toMatchObject({ status: "stopped", containerId: cid("restarted") });
  });

  it("one container the engine refuses is a `failed` outcome; the others are removed and recorded", async () => {
    const w = world();
    const items = expired(w, "a", "bad", "c");
    const remove = w.inventory.removeStopped.bind(w.inventory);
    w.inventory.removeStopped = async (projectId, containerId, opts) => {
      if (projectId === "bad") throw new Error("docker: remove container preview-bad failed: 500 driver failed");
      return remove(projectId, containerId, opts);
    };
    const outcomes = (await expirePreviews(w.deps, w.sweep, items, "sweep-run")).outcomes;
    expect(outcomes.map((o) => (o.done ? o.action : "skip"))).toEqual(["removed", "failed", "removed"]);
    expect(outcomes[1]).toMatchObject({ reason: "sweep expire failed: docker: remove container preview-bad failed: 500 driver failed" });
    expect(w.store.rows.get("bad")).toMatchObject({ status: "stopped", containerId: cid("bad") });
    expect([...w.runtime.containers.keys()]).toEqual(["bad"]);
  });

  it("the database failing at the write throws (the step is retried); the retry converges", async () => {
    const w = world();
    const items = expired(w, "a", "b");
    const expireMany = w.store.expireMany.bind(w.store);
    w.store.expireMany = async () => {
      throw new Error("database: connection terminated");
    };
    await expect(expirePreviews(w.deps, w.sweep, items, "sweep-run")).rejects.toThrow(/connection terminated/);
    expect(w.runtime.containers.size).toBe(0); // removed, not recorded
    w.store.expireMany = expireMany;
    const outcomes = (await expirePreviews(w.deps, w.sweep, items, "sweep-run")).outcomes;
    expect(outcomes).toEqual(items.map(() => expect.objectContaining({ done: true, action: "removed", reason: expect.stringMatching(/\(container absent\)$/) })));
    for (const id of ["a", "b"]) expect(w.store.rows.get(id)).toMatchObject({ status: "stopped", containerId: null });
  });
});

describe("expire batches: the audit stays true when a step is retried", () => {
  it("a container without a row: its removal is audited at once, so the retry (no row, no container) records no skip over it", async () => {
    const w = world();
    preview(w, "rowless", { row: false, stoppedAgoMs: 25 * HOUR, finishedAgoMs: 25 * HOUR });
    preview(w, "other", { stoppedAgoMs: 25 * HOUR });
    w.runtime.containers.get("other")!.running = true; // a skip: recorded with the rest
    const items = [{ projectId: "rowless" }, { projectId: "other", containerId: cid("other") }];
    const record = w.log.record.bind(w.log);
    let calls = 0;
    // The first recording (the rowless removal's own) succeeds, the rest fails: the step fails.
    w.sweep.decisions = { record: async (d) => (++calls === 1 ? record(d) : Promise.reject(new Error("database: connection terminated"))) };
    await expect(expireBatch(w.deps, w.sweep, items, "sweep-run")).rejects.toThrow(/connection terminated/);
    expect(w.runtime.containers.has("rowless")).toBe(false);
    w.sweep.decisions = { record };
    const again = await expireBatch(w.deps, w.sweep, items, "sweep-run");
    expect(again.outcomes[0]).toEqual({ done: false, reason: "no container any more (removed since the plan)" });
    expect(w.log.entries.map((e) => `${e.projectId} ${e.action}`)).toEqual(["rowless removed", "other skip"]);
  });

  it("a step that fails after its write (the rest of the audit), then a launch, then the retry: the removal stays recorded, no skip over it", async () => {
    const w = world();
    preview(w, "p", { stoppedAgoMs: 25 * HOUR });
    const item = { projectId: "p", containerId: cid("p") };
    // Attempt 1: the row and its audit entry are written together; then the step fails
    // (recording the rest: a database blip, or the process killed).
    const record = w.log.record.bind(w.log);
    w.sweep.decisions = { record: async () => Promise.reject(new Error("database: connection terminated")) };
    await expect(expireBatch(w.deps, w.sweep, [item], "sweep-run")).rejects.toThrow(/connection terminated/);
    expect(w.log.entries).toEqual([expect.objectContaining({ runId: "sweep-run", pass: "expired", action: "removed", projectId: "p" })]);
    // During the retry's backoff the user opens the preview.
    await w.store.apply("p", "launch", { reason: "launch", claim: "launch-run" });
    // Attempt 2 of the same step: the row says starting now (a skip), which is not recorded over the removal.
    w.sweep.decisions = { record };
    const again = await expireBatch(w.deps, w.sweep, [item], "sweep-run");
    expect(again).toMatchObject({ removed: 0, left: 1 });
    expect(w.log.entries.map((e) => `${e.action}: ${e.reason}`)).toEqual([expect.stringMatching(/^removed: sweep: container removed, .*\(container removed\)$/)]);
  });
});

describe("sweep-previews sends preview.idle for idle previews, through /api/inngest", () => {
  it("in chunks, with ids derived from the run, once per preview", async () => {
    const standIn = await startInngestStandIn();
    const w = world();
    w.sweep.settings.idleTimeoutMs = HOUR;
    for (let i = 0; i < 600; i++) preview(w, `idle-${i}`);
    preview(w, "busy");
    w.store.rows.get("busy")!.lastActivityAt = new Date(NOW - 60_000);
    try {
      const run = await sweepOverHttp(standIn, w);
      expect(run.outcome).toBe("completed");
      expect(run.steps.map((s) => s.name)).toEqual(["plan", "stop-idle-1", "stop-idle-2"]);
      const idle = standIn.eventsNamed("preview.idle");
      expect(idle).toHaveLength(600);
      expect(new Set(idle.map((e) => e.data.projectId))).not.toContain("busy");
      expect(new Set(idle.map((e) => e.id)).size).toBe(600);
      expect(run.result).toMatchObject({ idle: { stop: 600 } });
    } finally {
      await standIn.close();
    }
  });
});

describe("sweep-item re-checks and failures (unit)", () => {
  let standIn: InngestStandIn;
  let w: World;
  let item: InngestFunction.Any;
  let failure: InngestFunction.Any;
  beforeAll(async () => {
    standIn = await startInngestStandIn();
  });
  afterAll(async () => {
    await standIn?.close();
  });
  beforeEach(() => {
    w = world();
    const inngest = createInngest(inngestSettings({ dev: standIn.url }), pino({ level: "silent" }));
    [, item] = createSweepFunctions(inngest, w.deps, w.sweep) as unknown as [InngestFunction.Any, InngestFunction.Any];
    failure = inngest.createFunction({ id: "sweep-item-failure", triggers: [{ event: "inngest/function.failed" }] }, (ctx) =>
      recordSweepItemFailure(w.deps, w.sweep, ctx as unknown as FailureContext),
    );
  });

  async function runItem(projectId: string, action: string) {
    const { runId, transformCtx } = oneRun();
    const event = { name: "previews.sweep.item", data: { projectId, action, sweepRunId: "sweep-1", reason: "planned" } };
    const run = await new InngestTestEngine({ function: item, transformCtx }).execute({ events: [event] });
    if (run.error === undefined) return { result: run.result, error: undefined };
    const failed = { name: "inngest/function.failed", data: { function_id: `${APP_ID}-sweep-item`, run_id: runId, error: serializeError(run.error), event } };
    await new InngestTestEngine({ function: failure }).execute({ events: [failed] });
    return { result: run.result, error: run.error };
  }

  it("expire: a preview launched again since the plan is left alone (skip recorded)", async () => {
    preview(w, "p", { stoppedAgoMs: 25 * HOUR });
    await w.store.apply("p", "launch", { reason: "user came back", claim: "launch-run" });
    const { result } = await runItem("p", "expire");
    expect(result).toMatchObject({ done: false, reason: "row is starting now" });
    expect(w.runtime.containers.has("p")).toBe(true);
    expect(w.log.entries).toEqual([expect.objectContaining({ pass: "expired", action: "skip", projectId: "p" })]);
  });

  it("expire: a container started again (by hand) since the plan stays", async () => {
    preview(w, "p", { stoppedAgoMs: 25 * HOUR });
    w.runtime.containers.get("p")!.running = true;
    expect((await runItem("p", "expire")).result).toMatchObject({ done: false, reason: "container is running again" });
    expect(w.runtime.containers.has("p")).toBe(true);
  });

  it("expire: only the container the plan found is removed; one that replaced it under the name stays", async () => {
    preview(w, "p", { stoppedAgoMs: 25 * HOUR });
    const planned = cid("p");
    w.runtime.containers.set("p", { id: cid("p-new"), running: false, foreign: false });
    const { runId, transformCtx } = oneRun();
    void runId;
    const event = { name: "previews.sweep.item", data: { projectId: "p", action: "expire", sweepRunId: "sweep-1", reason: "planned", containerId: planned } };
    const run = await new InngestTestEngine({ function: item, transformCtx }).execute({ events: [event] });
    expect(run.result).toMatchObject({ done: true, action: "removed", reason: expect.stringMatching(/\(container absent\)$/) });
    expect(w.runtime.containers.get("p")?.id).toBe(cid("p-new"));
  });

  it("expire: the row's own container id is removed by id (recorded); any other planned id is checked by name first", async () => {
    preview(w, "p", { stoppedAgoMs: 25 * HOUR });
    preview(w, "q", { stoppedAgoMs: 25 * HOUR });
    const send = async (projectId: string, containerId: string) => {
      const { transformCtx } = oneRun();
      const event = { name: "previews.sweep.item", data: { projectId, action: "expire", sweepRunId: "sweep-1", reason: "planned", containerId } };
      return (await new InngestTestEngine({ function: item, transformCtx }).execute({ events: [event] })).result;
    };
    expect(await send("p", cid("p"))).toMatchObject({ done: true, action: "removed" });
    expect(w.inventory.recordedRemovals).toBe(1);
    // An id that is not the row's (forged, or another container): not vouched for, left alone.
    expect(await send("q", cid("p-other"))).toMatchObject({ done: false });
    expect(w.inventory.recordedRemovals).toBe(1);
    expect(w.runtime.containers.has("q")).toBe(true);
  });

  // Object storage (issue 9): an expired container's last log is archived before it goes.
  it("expire with object storage: the last log is archived under the container id, then the container removed", async () => {
    const objects = new FakeProjectObjects(w.site);
    w.deps.objects = objects;
    preview(w, "p", { stoppedAgoMs: 25 * HOUR });
    const { result } = await runItem("p", "expire");
    expect(result).toMatchObject({ done: true, action: "removed", reason: expect.stringContaining(`last log archived to projects/p/logs/${cid("p")}.log`) });
    expect(objects.calls).toEqual([expect.objectContaining({ method: "archiveLog", projectId: "p", args: [cid("p"), "log of p\n"] })]);
    expect(w.runtime.containers.has("p")).toBe(false);
  });

  it("expire with object storage, retried after the removal: the first archived log is not overwritten (the container is gone)", async () => {
    const objects = new FakeProjectObjects(w.site);
    w.deps.objects = objects;
    preview(w, "p", { stoppedAgoMs: 25 * HOUR });
    const item = { projectId: "p", containerId: cid("p") };
    const expireMany = w.store.expireMany.bind(w.store);
    w.store.expireMany = async () => Promise.reject(new Error("database: connection terminated"));
    await expect(expireBatch(w.deps, w.sweep, [item], "sweep-run")).rejects.toThrow(/connection terminated/);
    w.store.expireMany = expireMany;
    const again = await expireBatch(w.deps, w.sweep, [item], "sweep-run");
    expect(again.outcomes).toEqual([expect.objectContaining({ done: true, reason: expect.stringMatching(/no log archived \(the container is no longer there\).*\(container absent\)$/) })]);
    expect(objects.calls.filter((c) => c.method === "archiveLog")).toEqual([expect.objectContaining({ args: [cid("p"), "log of p\n"] })]);
  });

  it("expire with object storage down: the container still goes, the audit says the log was not archived", async () => {
    const objects = new FakeProjectObjects(w.site);
    objects.failures.set("archiveLog", new Error("object store: put failed: connect ECONNREFUSED"));
    w.deps.objects = objects;
    preview(w, "p", { stoppedAgoMs: 25 * HOUR });
    const { result } = await runItem("p", "expire");
    expect(result).toMatchObject({ done: true, reason: expect.stringContaining("last log not archived (object store: put failed: connect ECONNREFUSED)") });
    expect(w.runtime.containers.has("p")).toBe(false);
  });

  it("correct: a container running again is not corrected", async () => {
    preview(w, "p");
    expect((await runItem("p", "correct")).result).toMatchObject({ done: false, reason: "container is running" });
    expect(w.store.rows.get("p")?.status).toBe("running");
  });

  it("orphan: a remove that fails for good is recorded failed on the row (not left removing) and in the audit log", async () => {
    preview(w, "p", { project: false });
    for (const id of ["a", "b"]) preview(w, id);
    w.runtime.failNext("remove", new PermanentError("docker: remove container preview-p failed: 400 bad"), 1);
    const { error } = await runItem("p", "orphan");
    expect(error).toBeDefined();
    expect(w.store.rows.get("p")).toMatchObject({ status: "failed", reason: "remove failed: docker: remove container preview-p failed: 400 bad" });
    expect(w.log.entries.at(-1)).toMatchObject({ pass: "orphans", action: "failed", projectId: "p", reason: expect.stringMatching(/^sweep orphan failed: docker: remove/) });
    expect(w.site.sites.has("p")).toBe(true);
  });

  it("orphan without a project source: a stopped container goes, the files stay, no row is created; a running one stays", async () => {
    w.sweep.projects = null;
    preview(w, "p", { row: false, project: false, running: false });
    const { result } = await runItem("p", "orphan");
    expect(result).toMatchObject({ done: true, container: "removed", recorded: false });
    expect(w.runtime.containers.has("p")).toBe(false);
    expect(w.site.sites.has("p")).toBe(true);
    expect(w.store.rows.has("p")).toBe(false);
    // A forged (or stale) orphan item for a running container without a row: left alone.
    preview(w, "live", { row: false, project: false });
    expect((await runItem("live", "orphan")).result).toMatchObject({ done: false });
    expect(w.runtime.containers.get("live")?.running).toBe(true);
  });

  it("an invalid item event fails before any step: nothing touched", async () => {
    preview(w, "p", { stoppedAgoMs: 25 * HOUR });
    const run = await new InngestTestEngine({ function: item }).execute({
      events: [{ name: "previews.sweep.item", data: { projectId: "../p", action: "expire", sweepRunId: "s", reason: "" } }],
    });
    expect(run.error).toMatchObject({ message: expect.stringMatching(/projectId must be a DNS label/) });
    expect(w.runtime.calls).toEqual([]);
    expect(w.inventory.inspectCalls).toBe(0);
  });
});
