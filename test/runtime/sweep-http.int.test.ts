/**
 * The sweep over real HTTP: the sync registers `sweep-previews` (cron and
 * `previews.sweep.requested`) and `sweep-item` (per-project key + bounded parallelism); a sweep
 * (its expire steps) and an item run through `/api/inngest` driven as the Inngest server drives
 * them (checkpointing on, as production); and `POST /sweep` (API token, `?dryRun=1`). Real
 * engine and Postgres.
 */
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFunctions, createSweepFunctions } from "../../functions/index.js";
import { planSweep } from "../../functions/sweep-plan.js";
import { createApp } from "../../runtime/app.js";
import { createInngest } from "../../runtime/inngest-client.js";
import { listen } from "../helpers/http.js";
import { inngestSettings } from "../helpers/inngest-server.js";
import { HOUR, createSweepTestEnv, type SweepTestEnv } from "../helpers/sweep-env.js";

const TOKEN = "sweep-http-token-0123456789";
const PER_PROJECT = { scope: "env", key: '"preview-lifecycle:" + event.data.projectId', limit: 1 };

let env: SweepTestEnv;
let base: string;
let serveUrl: string;
const closers: Array<() => Promise<void>> = [];

async function serveApp(apiToken: string | null) {
  const inngest = createInngest(inngestSettings({ dev: env.inngestServer.url, checkpointing: true }), pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }));
  const functions = [...createFunctions(inngest, env.deps), ...createSweepFunctions(inngest, env.deps, env.sweepDeps)];
  const host = await listen(
    createApp({ inngest, functions, store: env.store, runtime: env.docker.runtime, apiToken, sweep: { plan: () => planSweep(env.store, env.sweepDeps) } }),
  );
  closers.push(host.close);
  return host.url;
}

beforeAll(async () => {
  env = await createSweepTestEnv({ settings: { graceMs: 0 } });
  base = await serveApp(TOKEN);
  serveUrl = `${base}/api/inngest`;
});
afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  await env?.cleanup();
});

const exists = (id: string) =>
  env.docker.docker
    .getContainer(`preview-${id}`)
    .inspect()
    .then(
      () => true,
      () => false,
    );
const auth = { authorization: `Bearer ${TOKEN}` };

describe("sync", () => {
  it("registers sweep-previews on its cron and event, and sweep-item under the per-project key with bounded parallelism", async () => {
    expect((await fetch(serveUrl, { method: "PUT" })).status).toBe(200);
    const sync = env.inngestServer.registrations.at(-1) as { functions: Array<Record<string, unknown>> };
    const byId = Object.fromEntries(sync.functions.map((f) => [f.id, f]));
    expect(byId["previews-sweep-previews"]).toMatchObject({
      triggers: [{ cron: "*/15 * * * *" }, { event: "previews.sweep.requested" }],
      singleton: { mode: "skip" },
    });
    expect(byId["previews-sweep-item"]).toMatchObject({
      triggers: [{ event: "previews.sweep.item" }],
      concurrency: [PER_PROJECT, { limit: 16 }],
      singleton: { key: "event.data.projectId", mode: "skip" },
    });
    expect(byId["previews-sweep-item-failure"]).toMatchObject({
      triggers: [{ event: "inngest/function.failed", expression: "event.data.function_id == 'previews-sweep-item'" }],
    });
  });
});

describe("a sweep through /api/inngest", () => {
  it("plans, records and removes what expired in its own expire step", async () => {
    const expired = await env.stoppedPreview("http-exp");
    await env.backdateStop(expired, 25 * HOUR);
    const kept = await env.stoppedPreview("http-keep");
    await env.addProjects(expired, kept);

    const sweep = await env.inngestServer.run({ serveUrl, fnId: "previews-sweep-previews", event: { name: "previews.sweep.requested", data: {} }, checkpointing: true });
    expect(sweep.outcome).toBe("completed");
    expect(sweep.steps.map((s) => s.name)).toEqual(["plan", "expire-1"]);
    expect(sweep.result).toMatchObject({ dryRun: false, previews: 2, expired: { remove: 1, removed: 1, left: 0, failed: 0 }, orphans: { remove: 0, guard: null } });
    expect(env.inngestServer.eventsNamed("previews.sweep.item").filter((e) => e.data.sweepRunId === sweep.runId)).toEqual([]);
    expect(await exists(expired)).toBe(false);
    expect(await exists(kept)).toBe(true);
    expect(await env.store.get(expired)).toMatchObject({ status: "stopped", containerId: null, claim: sweep.runId });
    const decided = await env.decisions.list({ runId: sweep.runId, projectId: expired });
    expect(decided.map((d) => d.action)).toEqual(["remove", "removed"]);
    expect(env.inngestServer.unhandled).toEqual([]);
  });

  it("an `expire` item (as an earlier version sent them) is still handled by sweep-item, as a batch of one", async () => {
    const expired = await env.stoppedPreview("http-old");
    await env.backdateStop(expired, 25 * HOUR);
    await env.addProjects(expired);
    const containerId = (await env.store.get(expired))!.containerId!;
    const data = { projectId: expired, action: "expire", sweepRunId: "sweep-of-an-earlier-version", reason: "planned", containerId };
    const item = await env.inngestServer.run({ serveUrl, fnId: "previews-sweep-item", event: { name: "previews.sweep.item", data }, checkpointing: true });
    expect(item.outcome).toBe("completed");
    expect(item.steps.map((s) => s.name)).toEqual(["expire"]);
    expect(await exists(expired)).toBe(false);
    expect(await env.store.get(expired)).toMatchObject({ status: "stopped", containerId: null });
    expect((await env.decisions.list({ runId: "sweep-of-an-earlier-version" })).map((d) => d.action)).toEqual(["removed"]);
  });
});

describe("POST /sweep", () => {
  it("401 without the bearer, 403 when no API_TOKEN is configured: nothing requested", async () => {
    const before = env.inngestServer.events.length;
    expect((await fetch(`${base}/sweep`, { method: "POST" })).status).toBe(401);
    expect((await fetch(`${base}/sweep?dryRun=1`, { method: "POST", headers: { authorization: "Bearer wrong" } })).status).toBe(401);
    const open = await serveApp(null);
    const res = await fetch(`${open}/sweep`, { method: "POST" });
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({ error: "POST /sweep needs API_TOKEN to be configured (it removes containers)" });
    expect(env.inngestServer.events.length).toBe(before);
  });

  it("400 naming dryRun when it is not a flag; nothing requested", async () => {
    const before = env.inngestServer.events.length;
    const res = await fetch(`${base}/sweep?dryRun=maybe`, { method: "POST", headers: auth });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: 'dryRun must be 1, 0, true or false (got "maybe")' });
    // A misspelt parameter is refused too, rather than read as "no dry run".
    const misspelt = await fetch(`${base}/sweep?dryrun=1`, { method: "POST", headers: auth });
    expect(misspelt.status).toBe(400);
    expect(await misspelt.json()).toEqual({ error: 'unknown query parameter "dryrun": only dryRun is accepted' });
    expect(env.inngestServer.events.length).toBe(before);
  });

  it("?dryRun=1 answers what it would do and changes nothing", async () => {
    const expired = await env.stoppedPreview("post-exp");
    await env.backdateStop(expired, 25 * HOUR);
    await env.addProjects(expired);
    const rows = await env.store.list();
    const events = env.inngestServer.events.length;
    const decisions = (await env.decisions.list()).length;
    const res = await fetch(`${base}/sweep?dryRun=1`, { method: "POST", headers: auth });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { dryRun: boolean; expired: { remove: number }; items: Array<{ projectId: string; action: string }> };
    expect(body).toMatchObject({ dryRun: true, expired: { remove: 1 } });
    expect(body.items).toEqual([expect.objectContaining({ projectId: expired, action: "expire" })]);
    expect(await exists(expired)).toBe(true);
    expect(await env.store.list()).toEqual(rows);
    expect(env.inngestServer.events.length).toBe(events);
    expect((await env.decisions.list()).length).toBe(decisions);
  });

  it("without dryRun requests a sweep (previews.sweep.requested) and answers 202", async () => {
    const res = await fetch(`${base}/sweep`, { method: "POST", headers: auth });
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ requested: true, event: "previews.sweep.requested", ids: [expect.any(String)] });
    expect(env.inngestServer.eventsNamed("previews.sweep.requested").at(-1)).toMatchObject({ data: { dryRun: false } });
  });

  it("503 naming Inngest when its server cannot take the event (not a bare 500)", async () => {
    // A client whose dev server is a closed port: the send fails as when Inngest is down.
    const closed = await listen(createApp({ inngest: createInngest(inngestSettings({ dev: "http://127.0.0.1:9" })), functions: [], store: env.store, runtime: env.docker.runtime, apiToken: TOKEN, sweep: { plan: () => planSweep(env.store, env.sweepDeps) } }));
    closers.push(closed.close);
    const res = await fetch(`${closed.url}/sweep`, { method: "POST", headers: auth });
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("5");
    expect(await res.json()).toEqual({ error: "inngest unavailable: events cannot be sent to the Inngest server; try again later" });
  });
});
