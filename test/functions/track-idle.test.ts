/**
 * track-idle through `@inngest/test` with real steps over in-memory ports: `preview.idle` only
 * for a preview still running and unused for IDLE_TIMEOUT (its last use, or when it became
 * ready); over HTTP with the real database: track-idle.int.test.ts.
 */
import { InngestTestEngine } from "@inngest/test";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTrackIdle } from "../../functions/track-idle.js";
import { createInngest } from "../../runtime/inngest-client.js";
import { FakeRuntime, FakeSiteFiles } from "../fakes/fake-runtime.js";
import { MemoryActivityStore } from "../fakes/memory-activity.js";
import { MemoryPreviewStore } from "../fakes/memory-store.js";
import { inngestSettings, startInngestStandIn, type InngestStandIn } from "../helpers/inngest-server.js";
import { newProjectId } from "../helpers/unit-env.js";

const IDLE_MS = 60_000;
let server: InngestStandIn;
beforeAll(async () => {
  server = await startInngestStandIn();
});
afterAll(() => server?.close());

function setup() {
  const store = new MemoryPreviewStore();
  const activity = new MemoryActivityStore(store);
  const inngest = createInngest(inngestSettings({ dev: server.url }), pino({ level: "silent" }));
  const fn = createTrackIdle(inngest, { runtime: new FakeRuntime(), store, site: new FakeSiteFiles(), readyTimeoutMs: 1000, activity, idleTimeoutMs: IDLE_MS });
  const run = (projectId: unknown, name = "preview.activity") => {
    const data = name === "preview.ready" ? { projectId, url: `http://${String(projectId)}.preview.localhost`, containerId: "c1" } : { projectId };
    return new InngestTestEngine({ function: fn }).execute({ events: [{ name, data }] });
  };
  const idleSent = (id: string) => server.eventsNamed("preview.idle").filter((e) => e.data.projectId === id).length;
  return { store, activity, run, idleSent };
}

const ago = (ms: number) => new Date(Date.now() - ms);

describe("track-idle", () => {
  it("emits preview.idle for a running preview unused for IDLE_TIMEOUT", async () => {
    const t = setup();
    const p = newProjectId("idle");
    t.store.seed(p, "running", { updatedAt: ago(2 * IDLE_MS) });
    await t.activity.recordActivity([{ projectId: p, at: ago(IDLE_MS + 5_000) }]);
    const { result, error } = await t.run(p);
    expect(error).toBeUndefined();
    expect(result).toEqual({ projectId: p, idle: true });
    expect(t.idleSent(p)).toBe(1);
  });

  it("a preview nobody opened stops IDLE_TIMEOUT after it became ready (triggered by preview.ready)", async () => {
    const t = setup();
    const p = newProjectId("idle");
    t.store.seed(p, "running", { updatedAt: ago(IDLE_MS + 1_500) });
    expect((await t.run(p, "preview.ready")).result).toEqual({ projectId: p, idle: true });
    expect(t.idleSent(p)).toBe(1);
  });

  it("sends nothing when the preview was used within the window", async () => {
    const t = setup();
    const p = newProjectId("idle");
    t.store.seed(p, "running", { updatedAt: ago(10 * IDLE_MS) });
    await t.activity.recordActivity([{ projectId: p, at: ago(IDLE_MS / 2) }]);
    expect((await t.run(p)).result).toMatchObject({ projectId: p, idle: false, why: expect.stringMatching(/^used \d+(ms|s) ago$/) });
    expect(t.idleSent(p)).toBe(0);
  });

  it("sends nothing when the preview became ready within the window, whatever its older activity", async () => {
    const t = setup();
    const p = newProjectId("idle");
    t.store.seed(p, "running", { updatedAt: ago(IDLE_MS / 3) });
    await t.activity.recordActivity([{ projectId: p, at: ago(5 * IDLE_MS) }]);
    expect((await t.run(p)).result).toMatchObject({ idle: false });
    expect(t.idleSent(p)).toBe(0);
  });

  it.each(["stopped", "starting", "stopping", "failed", "removed"] as const)("sends nothing for a preview that is %s", async (status) => {
    const t = setup();
    const p = newProjectId("idle");
    t.store.seed(p, status, { updatedAt: ago(10 * IDLE_MS) });
    expect((await t.run(p)).result).toEqual({ projectId: p, idle: false, why: `status ${status}` });
    expect(t.idleSent(p)).toBe(0);
  });

  it("sends nothing for a project without a preview", async () => {
    const t = setup();
    const p = newProjectId("idle");
    expect((await t.run(p)).result).toEqual({ projectId: p, idle: false, why: "status none" });
  });

  it("refuses invalid event data before any step", async () => {
    const t = setup();
    const { error } = await t.run("../etc");
    expect(String((error as { message?: string })?.message ?? error)).toMatch(/projectId/);
    expect(t.store.applied).toEqual([]);
  });
});
