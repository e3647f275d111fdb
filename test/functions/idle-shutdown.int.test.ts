/**
 * Idle shutdown end to end, all real but the Inngest server (the stand-in drives `/api/inngest`
 * as it would): a real preview container launched by launch-preview, `preview.ready` delivered to
 * track-idle once IDLE_TIMEOUT has passed (the debounce's job in production), its `preview.idle`
 * delivered to stop-preview, and the container ends up stopped. The same preview used within the
 * window is left running. Routing-independent: this is also how `port` routing stops idle previews.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../runtime/app.js";
import { SqlActivityStore } from "../../sql/activity-store.js";
import { listen } from "../helpers/http.js";
import { createPreviewTestEnv, type PreviewTestEnv } from "../helpers/preview-env.js";

const IDLE_MS = 60 * 60_000;
let env: PreviewTestEnv;
let serveUrl: string;
let close: () => Promise<void>;

beforeAll(async () => {
  env = await createPreviewTestEnv({ runtime: { routing: "port" } });
  const activity = new SqlActivityStore(env.database.db);
  env.deps.activity = activity;
  env.deps.idleTimeoutMs = IDLE_MS;
  const host = await listen(createApp({ inngest: env.inngest, functions: env.functions, store: env.store, runtime: env.docker.runtime, apiToken: null }));
  serveUrl = `${host.url}/api/inngest`;
  close = host.close;
});
afterAll(async () => {
  await close?.();
  await env?.cleanup();
});

const isRunning = async (id: string) => (await env.docker.docker.getContainer(`preview-${id}`).inspect()).State.Running;

async function runningPreview(): Promise<{ id: string; ready: { name: string; data: Record<string, unknown> } }> {
  const id = env.docker.projectId("idle");
  await env.docker.writeSite(id, "http");
  expect((await env.launch(id)).error).toBeUndefined();
  expect(await isRunning(id)).toBe(true);
  const [ready] = env.emitted("preview.ready", id);
  return { id, ready: { name: "preview.ready", data: ready! } };
}

/** As if the preview became ready `ms` ago. */
const readyAgo = (id: string, ms: number) => env.database.db.query("update previews set updated_at = now() - ($2::int * interval '1 millisecond') where project_id = $1", [id, ms]);

describe("idle shutdown (port routing)", () => {
  it("a preview nobody opened is stopped once IDLE_TIMEOUT has passed since it became ready", async () => {
    const { id, ready } = await runningPreview();
    await readyAgo(id, IDLE_MS + 1_000);
    const idle = await env.inngestServer.run({ serveUrl, fnId: "previews-track-idle", event: ready });
    expect(idle.result).toEqual({ projectId: id, idle: true });
    const [event] = env.inngestServer.eventsNamed("preview.idle").filter((e) => e.data.projectId === id);
    expect(event).toBeDefined();
    const stop = await env.inngestServer.run({ serveUrl, fnId: "previews-stop-preview", event: { name: event!.name, data: event!.data } });
    expect(stop.result).toMatchObject({ projectId: id, outcome: "stopped", recorded: true });
    expect(await isRunning(id)).toBe(false);
    expect(await env.store.get(id)).toMatchObject({ status: "stopped", reason: "preview.idle: idle (container stopped)" });
  });

  it("a preview used within the window (the UI heartbeat's activity) keeps running", async () => {
    const { id } = await runningPreview();
    await readyAgo(id, 3 * IDLE_MS);
    await env.deps.activity!.recordActivity([{ projectId: id, at: new Date(Date.now() - 5 * 60_000) }]);
    const idle = await env.inngestServer.run({ serveUrl, fnId: "previews-track-idle", event: { name: "preview.activity", data: { projectId: id } } });
    expect(idle.result).toMatchObject({ projectId: id, idle: false });
    expect(env.inngestServer.eventsNamed("preview.idle").filter((e) => e.data.projectId === id)).toHaveLength(0);
    expect(await isRunning(id)).toBe(true);
  });
});
