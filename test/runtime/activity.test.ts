/**
 * The activity tracker over a scripted clock: uses recorded in memory, one batched write per
 * flush, `preview.activity` coalesced to at most one per project per interval (leading and
 * trailing edge), failed flushes kept. The real database and HTTP: forward-auth.int.test.ts.
 */
import { describe, expect, it } from "vitest";
import type { ActivityMark } from "../../functions/ports.js";
import { ActivityTracker, type ActivityEvent } from "../../runtime/activity.js";

function setup(opts: { failWrites?: number } = {}) {
  let now = 1_000_000;
  let failures = opts.failWrites ?? 0;
  const writes: ActivityMark[][] = [];
  const sent: ActivityEvent[][] = [];
  const store = {
    async recordActivity(marks: readonly ActivityMark[]) {
      if (failures > 0) {
        failures--;
        throw new Error("database down");
      }
      writes.push([...marks]);
    },
  };
  const tracker = new ActivityTracker(store, async (events) => sent.push(events), { eventIntervalMs: 60_000, flushIntervalMs: 5_000 }, undefined, () => now);
  const events = () => sent.flat().map((e) => e.data.projectId);
  const tick = () => new Promise((r) => setImmediate(r));
  return { tracker, writes, events, tick, advance: (ms: number) => (now += ms), now: () => now };
}

describe("ActivityTracker", () => {
  it("records in memory only: touch writes nothing and sends after the current tick", async () => {
    const t = setup();
    t.tracker.touch("p1");
    expect(t.writes).toEqual([]);
    expect(t.events()).toEqual([]);
    await t.tick();
    expect(t.events()).toEqual(["p1"]);
  });

  it("coalesces events: one at the first use, one trailing at the end of the interval, none while quiet", async () => {
    const t = setup();
    for (let i = 0; i < 50; i++) t.tracker.touch("p1");
    t.tracker.touch("p2");
    await t.tick();
    expect(t.events().sort()).toEqual(["p1", "p2"]);
    t.advance(30_000);
    t.tracker.touch("p1"); // within the interval: no event now
    await t.tick();
    await t.tracker.flush();
    expect(t.events().filter((p) => p === "p1")).toHaveLength(1);
    t.advance(30_000); // the interval since p1's event is over: the trailing event goes out
    await t.tracker.flush();
    expect(t.events().filter((p) => p === "p1")).toHaveLength(2);
    expect(t.events().filter((p) => p === "p2")).toHaveLength(1);
    t.advance(120_000); // quiet: nothing more, and the tracker forgets both
    await t.tracker.flush();
    expect(t.events()).toHaveLength(3);
    expect(t.tracker.size).toBe(0);
    t.tracker.touch("p1"); // a use after a quiet interval is a leading edge again
    await t.tick();
    expect(t.events().filter((p) => p === "p1")).toHaveLength(3);
  });

  it("flushes the latest use of each project in one write, in project order, and only what is new", async () => {
    const t = setup();
    t.tracker.touch("pb");
    t.advance(100);
    t.tracker.touch("pa");
    t.advance(100);
    t.tracker.touch("pb");
    await t.tracker.flush();
    expect(t.writes).toHaveLength(1);
    expect(t.writes[0]!.map((m) => [m.projectId, m.at.getTime()])).toEqual([
      ["pa", t.now() - 100],
      ["pb", t.now()],
    ]);
    await t.tracker.flush();
    expect(t.writes).toHaveLength(1); // nothing new
  });

  it("keeps marks when a flush fails and writes them with the next one", async () => {
    const t = setup({ failWrites: 1 });
    t.tracker.touch("p1");
    await t.tracker.flush();
    expect(t.writes).toEqual([]);
    await t.tracker.flush();
    expect(t.writes.map((w) => w.map((m) => m.projectId))).toEqual([["p1"]]);
  });

  it("close writes what is pending", async () => {
    const t = setup();
    t.tracker.start();
    t.tracker.touch("p1");
    await t.tracker.close();
    expect(t.writes.map((w) => w.map((m) => m.projectId))).toEqual([["p1"]]);
    expect(t.events()).toEqual(["p1"]);
  });
});
