/** `SqlPreviewStore` against real databases: reads, field semantics, atomicity, concurrency. */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { allows, LIFECYCLE, LIFECYCLE_ACTIONS, PREVIEW_STATUSES, type LifecycleAction, type PreviewStatus } from "../../functions/lifecycle.js";
import type { ApplyResult } from "../../functions/ports.js";
import { PermanentDatabaseError } from "../../sql/errors.js";
import { SqlPreviewStore } from "../../sql/preview-store.js";
import { SqlSweepLog } from "../../sql/sweep-log.js";
import { drivers, openTestDatabase, type TestDatabase } from "../helpers/postgres.js";

// PGlite's first open takes ~2-3 s (initdb in WASM), more when test files run in parallel.
const OPEN_TIMEOUT = 60_000;

/** True when one action of the table moves `from` to `to`: every logged step must be one. */
const isTransition = (from: PreviewStatus, to: PreviewStatus) => LIFECYCLE_ACTIONS.some((a) => LIFECYCLE[a].to === to && allows(a, from));

/**
 * Two actions that both apply from `status` and each refuse the other's target: raced, exactly
 * one of them can win. Derived from the table, so the test follows it.
 */
function rivals(): { status: PreviewStatus; a: LifecycleAction; b: LifecycleAction } | undefined {
  for (const status of PREVIEW_STATUSES)
    for (const a of LIFECYCLE_ACTIONS)
      for (const b of LIFECYCLE_ACTIONS) {
        const [toA, toB] = [LIFECYCLE[a].to, LIFECYCLE[b].to];
        if (toA !== status && toB !== status && toA !== toB && allows(a, status) && allows(b, status) && !allows(a, toB) && !allows(b, toA)) {
          return { status, a, b };
        }
      }
  return undefined;
}

describe.each(drivers)("SqlPreviewStore on %s", (driver) => {
  let t: TestDatabase;
  let store: SqlPreviewStore;
  let seq = 0;
  /** A project id no other test in this file uses (they share one database). */
  const newId = (label: string) => `${label}-${++seq}`;

  beforeAll(async () => {
    t = await openTestDatabase(driver);
    store = new SqlPreviewStore(t.db);
  }, OPEN_TIMEOUT);
  afterAll(async () => {
    await t?.cleanup();
  });

  /** Moves a project along `actions`, each of which must apply. */
  async function walk(id: string, actions: LifecycleAction[]) {
    for (const action of actions) expect(await store.apply(id, action, { reason: `to ${action}` }), action).toMatchObject({ applied: true });
  }

  it("returns timestamptz as Date and int8 as string", async () => {
    const [row] = await t.db.query<{ now: unknown; n: unknown }>("select now() as now, count(*) as n from (values (1), (2)) v(x)");
    expect(row?.now).toBeInstanceOf(Date);
    expect(row?.n).toBe("2");
  });

  it("launch creates the row and one event", async () => {
    const id = newId("create");
    const result = await store.apply(id, "launch", { reason: "pipeline.step7", containerId: "c-1" });
    expect(result).toMatchObject({ applied: true, changed: true });
    const row = result.row!;
    expect(row).toMatchObject({ projectId: id, status: "starting", reason: "pipeline.step7", containerId: "c-1", url: null, logTail: null, stoppedAt: null });
    expect(row.createdAt).toBeInstanceOf(Date);
    expect(row.updatedAt).toEqual(row.createdAt);
    expect(await store.get(id)).toEqual(row);
    expect(await store.events(id)).toEqual([{ type: "starting", reason: "pipeline.step7", at: row.updatedAt }]);
  });

  it("expireMany: one statement; applied where the row is still as read (stopped, same updatedAt), refused with its status elsewhere", async () => {
    const [a, b, c, gone] = [newId("exp"), newId("exp"), newId("exp"), newId("exp")];
    for (const id of [a, b, c]) {
      await walk(id, ["launch", "ready", "stop", "stopped"]);
      await store.apply(id, "ready", { reason: "never" }); // refused: stays stopped
      await t.db.query("update previews set container_id = $2, url = 'http://x' where project_id = $1", [id, `cid-${id}`]);
    }
    const read = new Map((await store.getMany([a, b, c, gone])).map((r) => [r.projectId, r]));
    expect([...read.keys()].sort()).toEqual([a, b, c].sort());
    // Since the read: b launched again, c written (stopped again, same status, new updated_at).
    await store.apply(b, "launch", { reason: "relaunch", claim: "launch-run" });
    await t.db.query("update previews set reason = 'touched', updated_at = now() + interval '1 second' where project_id = $1", [c]);
    const writes = [a, b, c].map((id) => ({ projectId: id, reason: `expired ${id}`, readUpdatedAt: read.get(id)!.updatedAt }));
    const eventsBefore = await store.events(a);
    const results = await store.expireMany([...writes, { projectId: gone, reason: "x", readUpdatedAt: new Date() }], "sweep-run");
    expect(results).toEqual([
      { projectId: a, applied: true, status: "stopped" },
      { projectId: b, applied: false, status: "starting" },
      { projectId: c, applied: false, status: "stopped" },
      { projectId: gone, applied: false, status: null },
    ]);
    const rowA = await store.get(a);
    expect(rowA).toMatchObject({ status: "stopped", reason: `expired ${a}`, containerId: null, url: null, claim: "sweep-run", stoppedAt: read.get(a)!.stoppedAt });
    expect(rowA!.updatedAt.getTime()).toBeGreaterThan(read.get(a)!.updatedAt.getTime());
    expect(await store.events(a)).toEqual(eventsBefore); // the status did not move: no event
    expect(await store.get(b)).toMatchObject({ status: "starting", claim: "launch-run", containerId: `cid-${b}` });
    expect(await store.get(c)).toMatchObject({ status: "stopped", reason: "touched", containerId: `cid-${c}` });
    // A replay: a's row moved since the read, so it is refused and nothing changes.
    expect((await store.expireMany(writes.slice(0, 1), "sweep-run"))[0]).toEqual({ projectId: a, applied: false, status: "stopped" });
    expect(await store.get(a)).toEqual(rowA);
    expect(await store.expireMany([], "sweep-run")).toEqual([]);
    expect(await store.getMany([])).toEqual([]);
  });

  it("expireMany with an audit run: each outcome goes to sweep_decisions in the same statement; a later skip is not recorded over it", async () => {
    const [a, b] = [newId("audit"), newId("audit")];
    for (const id of [a, b]) await walk(id, ["launch", "ready", "stop", "stopped"]);
    const read = new Map((await store.getMany([a, b])).map((r) => [r.projectId, r]));
    await store.apply(b, "launch", { reason: "relaunch", claim: "launch-run" });
    const runId = `sweep-${newId("run")}`;
    const writes = [a, b].map((id) => ({ projectId: id, reason: `expired ${id}`, readUpdatedAt: read.get(id)!.updatedAt, auditReason: `expired ${id} (container removed)` }));
    expect((await store.expireMany(writes, "sweep-run", { runId })).map((r) => r.applied)).toEqual([true, false]);
    const log = new SqlSweepLog(t.db);
    const entries = async () => (await log.list({ runId })).map((d) => [d.pass, d.action, d.projectId, d.reason]);
    expect(await entries()).toEqual([
      ["expired", "removed", a, `expired ${a} (container removed)`],
      ["expired", "removed", b, `expired ${b}; row not recorded (now starting)`],
    ]);
    // A retried step: the same write again records nothing new; its skip is not recorded after
    // the outcome; a skip of another project (or another run) is.
    await store.expireMany(writes.slice(0, 1), "sweep-run", { runId });
    await log.record([
      { runId, pass: "expired", action: "skip", projectId: a, reason: "row is starting now" },
      { runId, pass: "expired", action: "skip", projectId: "other-project", reason: "row is running now" },
      { runId: `${runId}-next`, pass: "expired", action: "skip", projectId: a, reason: "row is starting now" },
    ]);
    expect(await entries()).toEqual([
      ["expired", "removed", a, `expired ${a} (container removed)`],
      ["expired", "removed", b, `expired ${b}; row not recorded (now starting)`],
      ["expired", "skip", "other-project", "row is running now"],
    ]);
    expect((await log.list({ runId: `${runId}-next` })).map((d) => d.action)).toEqual(["skip"]);
  });

  it("an action that cannot create a row leaves a missing project missing", async () => {
    for (const action of LIFECYCLE_ACTIONS.filter((a) => !allows(a, null))) {
      const id = newId("missing");
      expect(await store.apply(id, action, { reason: "x" })).toEqual({ applied: false, row: null });
      expect(await store.get(id)).toBeNull();
      expect(await store.events(id)).toEqual([]);
    }
  });

  it("undefined keeps url, containerId and logTail; null clears them", async () => {
    const id = newId("fields");
    await store.apply(id, "launch", { reason: "requested", url: "http://u", containerId: "c-3", logTail: "log" });
    const kept = await store.apply(id, "ready", { reason: "ready" });
    expect(kept.row).toMatchObject({ status: "running", url: "http://u", containerId: "c-3", logTail: "log" });
    const partly = await store.apply(id, "stop", { reason: "idle", url: null });
    expect(partly.row).toMatchObject({ status: "stopping", url: null, containerId: "c-3", logTail: "log" });
    const replaced = await store.apply(id, "stopped", { reason: "idle", containerId: "c-4", logTail: null });
    expect(replaced.row).toMatchObject({ status: "stopped", url: null, containerId: "c-4", logTail: null });
    expect(await store.get(id)).toEqual(replaced.row);
  });

  it("the claim: taken by launch, stop and remove; failures apply only for the run that holds it", async () => {
    const id = newId("claim");
    const launched = await store.apply(id, "launch", { reason: "l", claim: "run-a" });
    expect(launched.row).toMatchObject({ status: "starting", claim: "run-a" });
    // A newer launch takes the preview over: the first launch's failure no longer applies.
    const newer = await store.apply(id, "launch", { reason: "l2", claim: "run-b" });
    expect(newer).toMatchObject({ applied: true, changed: false, row: { claim: "run-b" } });
    // Bookkeeping only: taking the claim with the same fields does not move updated_at.
    expect(newer.row!.updatedAt).toEqual((await store.apply(id, "launch", { reason: "l2", claim: "run-c" })).row!.updatedAt);
    const before = await store.get(id);
    const stale = await store.apply(id, "fail", { reason: "old run failed", claim: "run-a" });
    expect(stale).toEqual({ applied: false, row: before });
    expect(await store.events(id)).toHaveLength(1);
    const own = await store.apply(id, "fail", { reason: "failed", claim: "run-c" });
    expect(own).toMatchObject({ applied: true, changed: true, row: { status: "failed", claim: "run-c" } });
    // Replayed by the same run: applied, unchanged.
    expect(await store.apply(id, "fail", { reason: "failed", claim: "run-c" })).toMatchObject({ applied: true, changed: false });

    const removing = await store.apply(id, "remove", { reason: "deleted", claim: "run-r" });
    expect(removing.row).toMatchObject({ status: "removing", claim: "run-r" });
    expect(await store.apply(id, "removeFailed", { reason: "x", claim: "run-other" })).toMatchObject({ applied: false });
    expect(await store.apply(id, "removeFailed", { reason: "remove failed", claim: "run-r" })).toMatchObject({ applied: true, row: { status: "failed" } });
  });

  it("a new stop after a restart gets a new stop time", async () => {
    const id = newId("restop");
    await walk(id, ["launch", "ready", "stop"]);
    const first = await store.apply(id, "stopped", { reason: "idle" });
    await walk(id, ["launch", "ready", "stop"]);
    expect((await store.get(id))!.stoppedAt).toBeNull();
    const second = await store.apply(id, "stopped", { reason: "closed" });
    expect(second.row!.stoppedAt!.getTime()).toBeGreaterThan(first.row!.stoppedAt!.getTime());
  });

  it("list returns every row ordered by project id", async () => {
    for (const id of ["list-b", "list-c", "list-a"]) await store.apply(id, "launch", { reason: "requested" });
    const all = await store.list();
    const ids = all.map((r) => r.projectId);
    expect(ids).toEqual([...ids].sort());
    expect(ids.filter((id) => id.startsWith("list-"))).toEqual(["list-a", "list-b", "list-c"]);
    expect(all.find((r) => r.projectId === "list-a")).toEqual(await store.get("list-a"));
  });

  it("events are the status changes, oldest first", async () => {
    const id = newId("events");
    const path: LifecycleAction[] = ["launch", "ready", "stop", "stopped", "launch", "fail", "remove", "removed", "launch", "ready"];
    for (const action of path) {
      await store.apply(id, action, { reason: `by ${action}` });
      await store.apply(id, action, { reason: `by ${action}` }); // replays log nothing
    }
    const events = await store.events(id);
    expect(events.map((e) => [e.type, e.reason])).toEqual(path.map((a) => [LIFECYCLE[a].to, `by ${a}`]));
    for (let i = 1; i < events.length; i++) expect(events[i]!.at.getTime()).toBeGreaterThanOrEqual(events[i - 1]!.at.getTime());
    expect(await store.events("never-recorded")).toEqual([]);
  });

  it("a statement the server refuses writes nothing and is a PermanentError naming action and project", async () => {
    // The audit insert is the statement's LAST write: if anything before it stuck, the single
    // statement would not be atomic. The constraint only bites on this test's reason.
    await t.db.query("alter table preview_events add constraint refuse_for_test check (reason is distinct from 'refused-by-test')");
    try {
      const id = newId("refused");
      const err = await store.apply(id, "launch", { reason: "refused-by-test" }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PermanentDatabaseError);
      expect(err).toMatchObject({ sqlState: "23514" });
      expect((err as Error).message).toMatch(new RegExp(`^database: apply "launch" to project "${id}" failed: .*refuse_for_test`));
      expect(await store.get(id)).toBeNull();
      expect(await store.events(id)).toEqual([]);

      const existing = newId("refused");
      await store.apply(existing, "launch", { reason: "requested" });
      const before = await store.get(existing);
      await expect(store.apply(existing, "ready", { reason: "refused-by-test", url: "http://x" })).rejects.toBeInstanceOf(PermanentDatabaseError);
      expect(await store.get(existing)).toEqual(before);
      expect((await store.events(existing)).map((e) => e.type)).toEqual(["starting"]);
    } finally {
      await t.db.query("alter table preview_events drop constraint refuse_for_test");
    }
  });

  describe("concurrent applies on one project", () => {
    it("converge: every logged step is a transition of the table, one event per change", async () => {
      const id = newId("race");
      await walk(id, ["launch", "ready"]);
      const actions = [...LIFECYCLE_ACTIONS, ...LIFECYCLE_ACTIONS, ...LIFECYCLE_ACTIONS];
      const results = await Promise.all(actions.map((action, i) => store.apply(id, action, { reason: `r${i}` })));

      const events = (await store.events(id)).map((e) => e.type as PreviewStatus);
      expect(events.slice(0, 2)).toEqual(["starting", "running"]);
      for (let i = 1; i < events.length; i++) expect(isTransition(events[i - 1]!, events[i]!), `${events[i - 1]} -> ${events[i]}`).toBe(true);
      // One event per result that changed the status, and the same statuses.
      const changedTo = results.filter((r): r is Extract<ApplyResult, { applied: true }> => r.applied && r.changed).map((r) => r.row.status);
      expect([...changedTo].sort()).toEqual(events.slice(2).sort());
      results.forEach((r, i) => {
        if (r.applied) expect(r.row.status, actions[i]).toBe(LIFECYCLE[actions[i]!].to);
        else expect(allows(actions[i]!, r.row!.status), `${actions[i]} refused from ${r.row!.status}`).toBe(false);
      });
      const row = (await store.get(id))!;
      expect(row.status).toBe(events.at(-1));
      expect(row.stoppedAt === null).toBe(row.status !== "stopped");
    });

    it("two actions that exclude each other: exactly one wins, its replays apply, the other is refused", async () => {
      const pair = rivals();
      expect(pair, "the table has two rival actions to race").toBeDefined();
      const { status, a, b } = pair!;
      const id = newId("rivals");
      // Reach `status` through the table: the shortest path of actions from no row.
      await walk(id, pathTo(status));
      const actions = [a, b, a, b, a, b, a, b];
      const results = await Promise.all(actions.map((action) => store.apply(id, action, { reason: `by ${action}` })));
      const winner = results.find((r) => r.applied)!;
      const won = actions[results.indexOf(winner)]!;
      const final = await store.get(id);
      results.forEach((r, i) => {
        expect(r.applied, `${actions[i]}`).toBe(actions[i] === won);
        expect(r.row).toEqual(final); // replays leave it as the winner wrote it; refusals return it
      });
      expect(results.filter((r) => r.applied && r.changed)).toHaveLength(1);
      expect((await store.events(id)).at(-1)).toMatchObject({ type: LIFECYCLE[won].to, reason: `by ${won}` });
    });

    it("many launches of a project without a row: one creates it, the others replay", async () => {
      const creating = LIFECYCLE_ACTIONS.filter((a) => allows(a, null));
      expect(creating.length).toBeGreaterThan(0);
      for (const action of creating) {
        const id = newId("create-race");
        const results = await Promise.all(Array.from({ length: 12 }, () => store.apply(id, action, { reason: "requested" })));
        expect(results.every((r) => r.applied)).toBe(true);
        expect(results.filter((r) => r.applied && r.changed)).toHaveLength(1);
        expect(new Set(results.map((r) => JSON.stringify(r.row))).size).toBe(1);
        expect(await store.events(id)).toHaveLength(1);
      }
    });
  });
});

/** Actions that take a new project to `status` (breadth-first over the table). */
function pathTo(status: PreviewStatus): LifecycleAction[] {
  const queue: Array<{ at: PreviewStatus | null; path: LifecycleAction[] }> = [{ at: null, path: [] }];
  const seen = new Set<PreviewStatus | null>([null]);
  while (queue.length) {
    const { at, path } = queue.shift()!;
    if (at === status) return path;
    for (const action of LIFECYCLE_ACTIONS) {
      const to = LIFECYCLE[action].to;
      if (allows(action, at) && !seen.has(to)) {
        seen.add(to);
        queue.push({ at: to, path: [...path, action] });
      }
    }
  }
  throw new Error(`no path to ${status}`);
}

// A creation race made deterministic: a second connection creates the row in an open
// transaction; the launch's statement starts before that commits, so its snapshot has no row
// and its insert waits on the uncommitted one. pg and neon only (PGlite has one backend).
describe.each(["pg", "neon"] as const)("a launch racing the creation of its row on %s", (driver) => {
  let t: TestDatabase;
  let store: SqlPreviewStore;
  beforeAll(async () => {
    t = await openTestDatabase(driver);
    store = new SqlPreviewStore(t.db);
  }, OPEN_TIMEOUT);
  afterAll(async () => {
    await t?.cleanup();
  });

  async function race(id: string, status: PreviewStatus): Promise<ApplyResult> {
    const other = new pg.Client({ connectionString: t.url! });
    await other.connect();
    try {
      await other.query("begin");
      await other.query("insert into previews (project_id, status, reason) values ($1, $2, 'other')", [id, status]);
      const applying = store.apply(id, "launch", { reason: "requested" });
      applying.catch(() => {}); // awaited below; no unhandled rejection while we wait
      // Wait until the launch's insert is blocked on the other transaction's row.
      await vi.waitFor(
        async () => {
          const [row] = await t.db.query<{ n: string }>(
            "select count(*) as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query like '%with prev as%'",
          );
          expect(row!.n).toBe("1");
        },
        { timeout: 20_000, interval: 20 },
      );
      await other.query("commit");
      return await applying;
    } finally {
      await other.end();
    }
  }

  it("the launch is compared against the row that won: refused while a remove is under way", async () => {
    expect(allows("launch", "removing")).toBe(false);
    const id = "race-removing";
    const result = await race(id, "removing");
    const row = await store.get(id);
    expect(row).toMatchObject({ status: "removing", reason: "other" });
    expect(result).toEqual({ applied: false, row });
    expect(await store.events(id)).toEqual([]);
  });

  it("the launch is compared against the row that won: applied over a running preview", async () => {
    expect(allows("launch", "running")).toBe(true);
    const id = "race-running";
    const result = await race(id, "running");
    const row = await store.get(id);
    expect(row).toMatchObject({ status: "starting", reason: "requested" });
    expect(result).toEqual({ applied: true, changed: true, row });
    expect((await store.events(id)).map((e) => e.type)).toEqual(["starting"]);
  });
});

describe.each(["pg", "neon"] as const)("another transaction holding a row, on %s", (driver) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await openTestDatabase(driver);
  }, OPEN_TIMEOUT);
  afterAll(async () => {
    await t?.cleanup();
  });

  it("expireMany waits for a launch's commit and names the status it committed, in the result and the audit (review finding)", async () => {
    const store = new SqlPreviewStore(t.db);
    const id = `held-${driver}`;
    for (const action of ["launch", "ready", "stop", "stopped"] as const) await store.apply(id, action, { reason: action });
    const [read] = await store.getMany([id]);
    // A launch's claim, uncommitted while the sweep's write arrives, committed 300 ms later.
    const launch = new pg.Client({ connectionString: t.url! });
    await launch.connect();
    try {
      await launch.query("begin");
      await launch.query("update previews set status = 'starting', stopped_at = null, updated_at = now() where project_id = $1", [id]);
      const writing = store.expireMany([{ projectId: id, reason: "expired", readUpdatedAt: read!.updatedAt }], "sweep-run", { runId: `run-${driver}` });
      await new Promise((r) => setTimeout(r, 300));
      await launch.query("commit");
      expect(await writing).toEqual([{ projectId: id, applied: false, status: "starting" }]);
    } finally {
      await launch.end();
    }
    const log = new SqlSweepLog(t.db);
    expect((await log.list({ runId: `run-${driver}` })).map((d) => d.reason)).toEqual(["expired; row not recorded (now starting)"]);
    expect(await store.get(id)).toMatchObject({ status: "starting" });
  });

  it("apply chosen as a deadlock's victim runs again at once (it wrote nothing) and applies, instead of failing the step", async () => {
    const store = new SqlPreviewStore(t.db);
    const [id, other] = [`deadlock-${driver}`, `deadlock-other-${driver}`];
    await store.apply(id, "launch", { reason: "launch" });
    await store.apply(id, "ready", { reason: "ready" });
    await store.apply(other, "launch", { reason: "launch" });
    await t.db.query("update previews set slot = 7 where project_id = $1", [id]);
    const tx = new pg.Client({ connectionString: t.url! });
    await tx.connect();
    try {
      // The cycle the capacity admission can make: another transaction gives slot 7 to another
      // row (the unique slot constraint is checked at commit); apply moves `id` (which holds 7;
      // the status is indexed, so the slot's index entry is written again) and, at its commit,
      // waits for that transaction; which then waits for `id`'s row. Apply waited first, so its
      // deadlock check runs first and it is the victim.
      await tx.query("begin");
      await tx.query("update previews set slot = 7 where project_id = $1", [other]);
      const applying = store.apply(id, "stop", { reason: "closed" });
      await new Promise((r) => setTimeout(r, 200));
      const txUpdate = await tx.query("update previews set log_tail = 'tx' where project_id = $1", [id]).then(
        () => "updated",
        (err: { code?: string }) => `failed ${err.code}`,
      );
      expect(txUpdate, "the other transaction went on: apply was the deadlock's victim").toBe("updated");
      await tx.query("rollback");
      expect(await applying).toMatchObject({ applied: true, changed: true, row: { status: "stopping", logTail: null } });
    } finally {
      await tx.end();
    }
    expect((await store.events(id)).map((e) => e.type)).toEqual(["starting", "running", "stopping"]);
  }, 30_000);
});
