import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NonRetriableError } from "inngest";
import type { PreviewStatus } from "../../functions/ports.js";
import { SqlPreviewStore } from "../../sql/preview-store.js";
import { drivers, openTestDatabase, type TestDatabase } from "../helpers/postgres.js";

// PGlite's first open takes ~2-3 s (initdb in WASM), more when test files run in parallel.
const OPEN_TIMEOUT = 60_000;

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

  it("returns timestamptz as Date and int8 as string", async () => {
    const [row] = await t.db.query<{ now: unknown; n: unknown }>("select now() as now, count(*) as n from (values (1), (2)) v(x)");
    expect(row?.now).toBeInstanceOf(Date);
    expect(row?.n).toBe("2");
  });

  it("record creates the row and one event", async () => {
    const id = newId("create");
    const rec = await store.record(id, { status: "starting", reason: "pipeline.step7", containerId: "c-1" });
    expect(rec).toMatchObject({
      projectId: id,
      status: "starting",
      reason: "pipeline.step7",
      containerId: "c-1",
      url: null,
      logTail: null,
      stoppedAt: null,
    });
    expect(rec!.createdAt).toBeInstanceOf(Date);
    expect(rec!.updatedAt).toEqual(rec!.createdAt);
    expect(await store.get(id)).toEqual(rec);
    const events = await store.events(id);
    expect(events).toEqual([{ type: "starting", reason: "pipeline.step7", at: expect.any(Date) }]);
  });

  it("replaying a transition appends no event and leaves the row as it was", async () => {
    const id = newId("replay");
    await store.record(id, { status: "starting", reason: "requested" });
    const running = { status: "running", reason: "ready", url: "http://x.preview.localhost", containerId: "c-2" } as const;
    const first = await store.record(id, running);
    const again = await store.record(id, running);
    expect(again).toEqual(first); // updatedAt included
    expect((await store.events(id)).map((e) => e.type)).toEqual(["starting", "running"]);
  });

  it("keeps stopped_at across a replayed stop and clears it on any other status", async () => {
    const id = newId("stop");
    await store.record(id, { status: "running", reason: "ready" });
    const stopped = await store.record(id, { status: "stopped", reason: "idle" });
    expect(stopped!.stoppedAt).toBeInstanceOf(Date);
    await new Promise((r) => setTimeout(r, 20));
    const replayed = await store.record(id, { status: "stopped", reason: "idle" });
    expect(replayed!.stoppedAt).toEqual(stopped!.stoppedAt);
    expect((await store.events(id)).filter((e) => e.type === "stopped")).toHaveLength(1);

    const restarted = await store.record(id, { status: "starting", reason: "requested" });
    expect(restarted!.stoppedAt).toBeNull();
    const failed = await store.record(id, { status: "failed", reason: "boom" });
    expect(failed!.stoppedAt).toBeNull();
    const stoppedAgain = await store.record(id, { status: "stopped", reason: "closed" });
    expect(stoppedAgain!.stoppedAt!.getTime()).toBeGreaterThan(stopped!.stoppedAt!.getTime());
  });

  it("a new reason with the same status updates the row without an event", async () => {
    const id = newId("reason");
    const first = await store.record(id, { status: "failed", reason: "timeout" });
    const second = await store.record(id, { status: "failed", reason: "exited 1" });
    expect(second!.reason).toBe("exited 1");
    expect(second!.updatedAt.getTime()).toBeGreaterThanOrEqual(first!.updatedAt.getTime());
    expect(await store.events(id)).toHaveLength(1);
  });

  it("with `from`, a missing project gets no row and no event", async () => {
    const id = newId("from-missing");
    expect(await store.record(id, { status: "stopped", reason: "idle" }, { from: ["running", "stopped"] })).toBeNull();
    expect(await store.get(id)).toBeNull();
    expect(await store.events(id)).toEqual([]);
    expect((await store.list()).some((r) => r.projectId === id)).toBe(false);
  });

  it("with `from`, only a listed current status moves (compare-and-set)", async () => {
    const id = newId("from-cas");
    await store.record(id, { status: "running", reason: "ready", url: "http://u" });
    const before = await store.get(id);
    expect(await store.record(id, { status: "stopping", reason: "idle" }, { from: ["starting", "stopped"] })).toBeNull();
    expect(await store.record(id, { status: "stopping", reason: "idle" }, { from: [] })).toBeNull();
    expect(await store.get(id)).toEqual(before);

    const moved = await store.record(id, { status: "stopping", reason: "idle" }, { from: ["running"] });
    expect(moved).toMatchObject({ projectId: id, status: "stopping", reason: "idle", url: "http://u" });
    // A replay is refused unless the target status is listed too...
    expect(await store.record(id, { status: "stopping", reason: "idle" }, { from: ["running"] })).toBeNull();
    // ...and converges when it is.
    expect(await store.record(id, { status: "stopping", reason: "idle" }, { from: ["running", "stopping"] })).toEqual(moved);
    expect((await store.events(id)).map((e) => e.type)).toEqual(["running", "stopping"]);
  });

  it("with `unless`, a missing row is created and a listed current status blocks the write", async () => {
    const id = newId("unless");
    const created = await store.record(id, { status: "starting", reason: "launch" }, { unless: ["removing"] });
    expect(created).toMatchObject({ projectId: id, status: "starting" });
    await store.record(id, { status: "removing", reason: "deleted" });
    const before = await store.get(id);
    expect(await store.record(id, { status: "running", reason: "late" }, { unless: ["removing", "removed"] })).toBeNull();
    expect(await store.get(id)).toEqual(before);
    expect((await store.events(id)).map((e) => e.type)).toEqual(["starting", "removing"]);
    // from and unless combine: both must allow the write.
    expect(await store.record(id, { status: "removed", reason: "done" }, { from: ["removing"], unless: ["removing"] })).toBeNull();
    expect(await store.record(id, { status: "removed", reason: "done" }, { from: ["removing"], unless: ["removed"] })).toMatchObject({ status: "removed" });
  });

  it("with `from`, concurrent compare-and-sets from one status: exactly one wins", async () => {
    const id = newId("from-race");
    await store.record(id, { status: "running", reason: "ready" });
    const results = await Promise.all(
      (["stopping", "removing", "stopping", "removing", "failed"] as const).map((status) =>
        store.record(id, { status, reason: `to ${status}` }, { from: ["running"] }),
      ),
    );
    const winners = results.filter((r) => r !== null);
    expect(winners).toHaveLength(1);
    expect(await store.get(id)).toEqual(winners[0]);
    expect((await store.events(id)).map((e) => e.type)).toEqual(["running", winners[0]!.status]);
  });

  it("undefined keeps url, containerId and logTail; null clears them", async () => {
    const id = newId("fields");
    await store.record(id, { status: "running", reason: "ready", url: "http://u", containerId: "c-3", logTail: "log" });
    const kept = await store.record(id, { status: "stopping", reason: "idle" });
    expect(kept).toMatchObject({ url: "http://u", containerId: "c-3", logTail: "log" });
    const partly = await store.record(id, { status: "stopped", reason: "idle", url: null });
    expect(partly).toMatchObject({ url: null, containerId: "c-3", logTail: "log" });
    const replaced = await store.record(id, { status: "failed", reason: "x", containerId: "c-4", logTail: null });
    expect(replaced).toMatchObject({ url: null, containerId: "c-4", logTail: null });
    expect(await store.get(id)).toEqual(replaced);
  });

  it("list returns every row ordered by project id", async () => {
    for (const id of ["list-b", "list-c", "list-a"]) await store.record(id, { status: "running", reason: "ready" });
    const all = await store.list();
    const ids = all.map((r) => r.projectId);
    expect(ids).toEqual([...ids].sort());
    expect(ids.filter((id) => id.startsWith("list-"))).toEqual(["list-a", "list-b", "list-c"]);
    expect(all.find((r) => r.projectId === "list-a")).toEqual(await store.get("list-a"));
  });

  it("events are oldest first", async () => {
    const id = newId("events");
    const path: PreviewStatus[] = ["starting", "running", "stopping", "stopped", "removing", "removed"];
    for (const status of path) await store.record(id, { status, reason: `to ${status}` });
    const events = await store.events(id);
    expect(events.map((e) => [e.type, e.reason])).toEqual(path.map((s) => [s, `to ${s}`]));
    for (let i = 1; i < events.length; i++) expect(events[i]!.at.getTime()).toBeGreaterThanOrEqual(events[i - 1]!.at.getTime());
    expect(await store.events("never-recorded")).toEqual([]);
  });

  it("concurrent records on one project log exactly the status changes", async () => {
    const id = newId("race");
    await store.record(id, { status: "running", reason: "ready" });
    const statuses: PreviewStatus[] = ["stopped", "running", "stopped", "stopped", "running", "running", "stopped", "running"];
    await Promise.all(statuses.map((status, i) => store.record(id, { status, reason: `r${i}` })));
    const types = (await store.events(id)).map((e) => e.type);
    for (let i = 1; i < types.length; i++) expect(types[i]).not.toBe(types[i - 1]);
    const row = await store.get(id);
    expect(row!.status).toBe(types.at(-1));
    expect(row!.stoppedAt === null).toBe(row!.status !== "stopped");
  });

  it("refuses an unknown status with a NonRetriableError naming the project", async () => {
    const id = newId("bad");
    const err = await store.record(id, { status: "bogus" as PreviewStatus, reason: "x" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonRetriableError);
    expect((err as Error).message).toMatch(new RegExp(`^database: record "bogus" for project "${id}" failed: .*previews_status_check`));
    expect((err as Error).cause).toMatchObject({ code: "23514" });
    expect(await store.get(id)).toBeNull();
    expect(await store.events(id)).toEqual([]);
  });

  it("ping answers", async () => {
    await expect(store.ping()).resolves.toBeUndefined();
  });
});
