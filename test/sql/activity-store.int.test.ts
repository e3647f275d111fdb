/**
 * `SqlActivityStore` on every driver (PGlite, pg, Neon through its WebSocket proxy): capacity
 * admission (lowest free slot, stale slots released, the victim chosen by least recent use, only
 * the launching run admitted) and many concurrent admissions never handing out more slots than
 * the cap (on pg and Neon they race for real: the unique constraint, deferred, and the retry on a
 * conflict).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqlActivityStore } from "../../sql/activity-store.js";
import { SqlPreviewStore } from "../../sql/preview-store.js";
import { drivers, openTestDatabase, type TestDatabase } from "../helpers/postgres.js";

describe.each(drivers)("capacity admission on %s", (driver) => {
  let t: TestDatabase;
  let store: SqlPreviewStore;
  let activity: SqlActivityStore;
  let n = 0;
  const id = (p: string) => `${p}-${driver}-${++n}`;

  beforeAll(async () => {
    t = await openTestDatabase(driver);
    store = new SqlPreviewStore(t.db);
    activity = new SqlActivityStore(t.db);
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  /** A project being launched by run `run` (status starting, its claim). */
  const starting = async (p: string, run = `run-${p}`) => {
    expect((await store.apply(p, "launch", { reason: "test", claim: run })).applied).toBe(true);
    return run;
  };
  const slots = async () => (await t.db.query<{ project_id: string; slot: number }>("select project_id, slot from previews where slot is not null order by slot")).map((r) => [r.project_id, r.slot]);

  it("takes the lowest free slot, keeps it on a replay, refuses another run's launch, and names the least recently active victim when full", async () => {
    await t.db.query("delete from previews");
    const [a, b, c] = [id("a"), id("b"), id("c")];
    const ra = await starting(a);
    const rb = await starting(b);
    expect(await activity.admit(a, ra, 2)).toEqual({ admitted: true, slot: 1 });
    expect(await activity.admit(a, ra, 2)).toEqual({ admitted: true, slot: 1 }); // replay
    expect(await activity.admit(b, "another-run", 2)).toEqual({ admitted: false, full: false, status: "starting" });
    expect(await activity.admit(b, rb, 2)).toEqual({ admitted: true, slot: 2 });
    const rc = await starting(c);
    // Full, and nobody is running yet: no victim.
    expect(await activity.admit(c, rc, 2)).toEqual({ admitted: false, full: true, victim: null, holders: 2 });
    await store.apply(a, "ready", { reason: "test", claim: ra, url: "u", containerId: "c" });
    await store.apply(b, "ready", { reason: "test", claim: rb, url: "u", containerId: "c" });
    await activity.recordActivity([{ projectId: a, at: new Date(Date.now() + 60_000) }]);
    expect(await activity.admit(c, rc, 2)).toEqual({ admitted: false, full: true, victim: b, holders: 2 });
    // b stops (by any path): its slot is given back by the next admission.
    await store.apply(b, "evict", { reason: "evicted: test", claim: "e" });
    await store.apply(b, "stopped", { reason: "evicted: test", claim: "e" });
    expect(await activity.admit(c, rc, 2)).toEqual({ admitted: true, slot: 2 });
    expect(await slots()).toEqual([
      [a, 1],
      [c, 2],
    ]);
  });

  it("running previews without a slot (from before the cap) count against it and are evicted first when least recently active", async () => {
    // This database's earlier previews out of the way (the test database is this file's own).
    await t.db.query("update previews set status = 'stopped', stopped_at = coalesce(stopped_at, now()), slot = null");
    // Three previews running since before MAX_RUNNING_PREVIEWS was set: no slot.
    const old = [id("old"), id("old"), id("old")];
    for (const p of old) {
      const run = await starting(p);
      await store.apply(p, "ready", { reason: "test", claim: run, url: "http://x", containerId: "c" });
    }
    await t.db.query("update previews set updated_at = now() - interval '2 hours' where project_id = any($1::text[])", [old]);
    await t.db.query("update previews set last_activity_at = now() - interval '1 minute' where project_id = $1", [old[0]]);
    const fresh = id("new");
    const run = await starting(fresh);
    // Cap 2 with 3 running: full; the least recently active of them is the victim (not old[0], used a minute ago).
    const answer = await activity.admit(fresh, run, 2);
    expect(answer).toMatchObject({ admitted: false, full: true, holders: 3 });
    expect(answer.admitted === false && answer.full && [old[1], old[2]]).toContain(answer.admitted === false && answer.full ? answer.victim : null);
    // Two of them stopped: still full (one running + the cap of 2 leaves one slot).
    await store.apply(old[1]!, "stop", { reason: "test", claim: "s1" });
    await store.apply(old[1]!, "stopped", { reason: "test", claim: "s1" });
    expect(await activity.admit(fresh, run, 2)).toMatchObject({ admitted: false, full: true, holders: 2 });
    await store.apply(old[2]!, "stop", { reason: "test", claim: "s2" });
    await store.apply(old[2]!, "stopped", { reason: "test", claim: "s2" });
    expect(await activity.admit(fresh, run, 2)).toMatchObject({ admitted: true });
    await t.db.query("update previews set status = 'stopped', stopped_at = coalesce(stopped_at, now()), slot = null where project_id = any($1::text[])", [[...old, fresh]]);
  });

  it("a preview being stopped or removed keeps its slot until it is stopped or removed", async () => {
    await t.db.query("delete from previews");
    const [a, b] = [id("a"), id("b")];
    const ra = await starting(a);
    expect(await activity.admit(a, ra, 1)).toMatchObject({ admitted: true });
    await store.apply(a, "stop", { reason: "closed", claim: "s" });
    const rb = await starting(b);
    expect(await activity.admit(b, rb, 1)).toMatchObject({ admitted: false, full: true });
    await store.apply(a, "stopped", { reason: "closed", claim: "s" });
    expect(await activity.admit(b, rb, 1)).toEqual({ admitted: true, slot: 1 });
  });

  it("concurrent admissions never hand out more slots than the cap (PGlite serialises them; pg and Neon race for real)", async () => {
    await t.db.query("delete from previews");
    const ids = Array.from({ length: 20 }, () => id("c"));
    const runs = await Promise.all(ids.map((p) => starting(p)));
    const answers = await Promise.all(ids.map((p, i) => activity.admit(p, runs[i]!, 5)));
    const admitted = answers.filter((x) => x.admitted);
    expect(admitted).toHaveLength(5);
    expect(admitted.map((x) => (x as { slot: number }).slot).sort()).toEqual([1, 2, 3, 4, 5]);
    expect(await slots()).toHaveLength(5);
  });
});
