/**
 * track-idle over the HTTP seam: the app's `/api/inngest` driven by the Inngest stand-in (sync,
 * call requests, memoized steps, checkpointing off and on), with the real SQL store (PGlite,
 * migrated). The debounce per project for IDLE_TIMEOUT is part of the sync; the verdict reads
 * `last_activity_at` as the host flushes it.
 */
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFunctions } from "../../functions/index.js";
import { createApp } from "../../runtime/app.js";
import { createInngest } from "../../runtime/inngest-client.js";
import { SqlActivityStore } from "../../sql/activity-store.js";
import { SqlPreviewStore } from "../../sql/preview-store.js";
import { FakeRuntime, FakeSiteFiles } from "../fakes/fake-runtime.js";
import { listen } from "../helpers/http.js";
import { inngestSettings, startInngestStandIn, type InngestStandIn } from "../helpers/inngest-server.js";
import { openTestDatabase, type TestDatabase } from "../helpers/postgres.js";

const IDLE_MS = 10 * 60_000;
let database: TestDatabase;
let standIn: InngestStandIn;
let store: SqlPreviewStore;
let activity: SqlActivityStore;
const closers: Array<() => Promise<void>> = [];

beforeAll(async () => {
  database = await openTestDatabase("pglite");
  standIn = await startInngestStandIn();
  store = new SqlPreviewStore(database.db);
  activity = new SqlActivityStore(database.db);
});
afterAll(async () => {
  for (const close of closers) await close();
  await standIn?.close();
  await database?.cleanup();
});

async function serve(checkpointing: boolean) {
  const inngest = createInngest(inngestSettings({ dev: standIn.url, checkpointing }), pino({ level: "silent" }));
  // Docker and files are never touched by track-idle: the unit fakes stand in for them.
  const functions = createFunctions(inngest, { runtime: new FakeRuntime(), store, site: new FakeSiteFiles(), readyTimeoutMs: 1000, activity, idleTimeoutMs: IDLE_MS });
  const host = await listen(createApp({ inngest, functions, store, runtime: new FakeRuntime(), apiToken: null }));
  closers.push(host.close);
  return `${host.url}/api/inngest`;
}

let n = 0;
const newId = () => `ti-${process.pid}-${++n}`;

/** A running preview that became ready `readyAgoMs` ago and was last used `usedAgoMs` ago (null: never). */
async function running(readyAgoMs: number, usedAgoMs: number | null): Promise<string> {
  const id = newId();
  await store.apply(id, "launch", { reason: "test", claim: "r" });
  await store.apply(id, "ready", { reason: "test", claim: "r", url: `http://${id}.preview.localhost`, containerId: "c" });
  await database.db.query("update previews set updated_at = now() - ($2::int * interval '1 millisecond') where project_id = $1", [id, readyAgoMs]);
  if (usedAgoMs !== null) await activity.recordActivity([{ projectId: id, at: new Date(Date.now() - usedAgoMs) }]);
  return id;
}

const idleSent = (id: string) => standIn.eventsNamed("preview.idle").filter((e) => e.data.projectId === id).length;

describe("sync", () => {
  it("registers track-idle with its triggers and the per-project debounce of IDLE_TIMEOUT", async () => {
    const serveUrl = await serve(false);
    expect((await fetch(serveUrl, { method: "PUT" })).status).toBe(200);
    const sync = standIn.registrations.at(-1) as { functions: Array<Record<string, unknown>> };
    const fn = sync.functions.find((f) => f.id === "previews-track-idle");
    expect(fn).toMatchObject({
      triggers: [{ event: "preview.activity" }, { event: "preview.ready" }],
      debounce: { key: "event.data.projectId", period: "600s" },
    });
  });
});

describe.each([{ checkpointing: false }, { checkpointing: true }])("runs over HTTP, checkpointing $checkpointing", ({ checkpointing }) => {
  let serveUrl: string;
  beforeAll(async () => {
    serveUrl = await serve(checkpointing);
  });
  const run = (projectId: string) =>
    standIn.run({ serveUrl, fnId: "previews-track-idle", event: { name: "preview.activity", data: { projectId } }, checkpointing });

  it("idle for the whole window (last use flushed to last_activity_at): preview.idle", async () => {
    const id = await running(3 * IDLE_MS, IDLE_MS + 10_000);
    const result = await run(id);
    expect(result.outcome).toBe("completed");
    expect(result.result).toEqual({ projectId: id, idle: true });
    expect(result.steps.map((s) => s.name)).toEqual(["check-idle", "emit-idle"]);
    expect(idleSent(id)).toBe(1);
  });

  it("used within the window: nothing sent", async () => {
    const id = await running(3 * IDLE_MS, 60_000);
    const result = await run(id);
    expect(result.result).toMatchObject({ projectId: id, idle: false });
    expect(result.steps.map((s) => s.name)).toEqual(["check-idle"]);
    expect(idleSent(id)).toBe(0);
  });

  it("never opened: idle once IDLE_TIMEOUT has passed since it became ready, not before", async () => {
    const fresh = await running(60_000, null);
    expect((await run(fresh)).result).toMatchObject({ idle: false });
    const old = await running(IDLE_MS + 5_000, null);
    expect((await run(old)).result).toEqual({ projectId: old, idle: true });
    expect(idleSent(fresh)).toBe(0);
    expect(idleSent(old)).toBe(1);
  });

  it("a preview stopped meanwhile: nothing sent", async () => {
    const id = await running(3 * IDLE_MS, null);
    await store.apply(id, "stop", { reason: "closed", claim: "s" });
    await store.apply(id, "stopped", { reason: "closed", claim: "s" });
    expect((await run(id)).result).toEqual({ projectId: id, idle: false, why: "status stopped" });
    expect(idleSent(id)).toBe(0);
  });
});

describe("SqlActivityStore.recordActivity", () => {
  it("moves last_activity_at forward only, in one batch, and skips projects without a row", async () => {
    const a = await running(0, null);
    const b = await running(0, null);
    const t0 = new Date(Date.now() - 60_000);
    const t1 = new Date(Date.now() - 30_000);
    await activity.recordActivity([
      { projectId: a, at: t1 },
      { projectId: b, at: t0 },
      { projectId: "no-such-project", at: t1 },
    ]);
    expect((await activity.lastActivity(a))?.getTime()).toBe(t1.getTime());
    expect((await activity.lastActivity(b))?.getTime()).toBe(t0.getTime());
    await activity.recordActivity([{ projectId: a, at: t0 }]); // a late, older mark
    expect((await activity.lastActivity(a))?.getTime()).toBe(t1.getTime());
    expect(await activity.lastActivity("no-such-project")).toBeNull();
    expect((await database.db.query("select 1 from previews where project_id = 'no-such-project'")).length).toBe(0);
  });
});
