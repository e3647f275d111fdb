/**
 * The composition root wires diagnose-preview from the configuration: not registered without
 * ANTHROPIC_API_KEY; with it, the Claude client uses the key, ANTHROPIC_BASE_URL (here a local
 * Messages API server), ANTHROPIC_MODEL and ANTHROPIC_MAX_TOKENS, and the answer shows in
 * `GET /previews/:projectId`. `startService` with a file-backed PGlite, the local Docker engine
 * (its own preview network) and an Inngest stand-in.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../runtime/config.js";
import { startService, type RunningService } from "../../runtime/service.js";
import { SqlPreviewStore } from "../../sql/preview-store.js";
import { startInngestStandIn, type InngestStandIn } from "../helpers/inngest-server.js";
import { startMessagesApi, type MessagesApi } from "../helpers/messages-api.js";
import { removeServiceNetwork, serviceEnv } from "../helpers/service-env.js";

const KEY = "sk-ant-api03-service-test-0123456789abcdef";
let tmp: string;
let standIn: InngestStandIn;
let api: MessagesApi;
const running: RunningService[] = [];

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "sbp-diag-service-"));
  standIn = await startInngestStandIn();
  api = await startMessagesApi([{ text: "The module next is missing: run npm install." }]);
});
afterEach(async () => {
  for (const service of running.splice(0)) await service.close().catch(() => undefined);
});
afterAll(async () => {
  await removeServiceNetwork();
  await Promise.allSettled([standIn?.close(), api?.close()]);
  await rm(tmp, { recursive: true, force: true });
});

async function start(name: string, extra: Record<string, string> = {}): Promise<RunningService> {
  const dir = path.join(tmp, name);
  const vars = serviceEnv(dir, standIn.url, extra);
  const service = await startService(loadConfig(vars), pino({ level: "silent" }));
  running.push(service);
  return service;
}

async function syncedIds(service: RunningService): Promise<string[]> {
  expect((await fetch(`http://127.0.0.1:${service.port}/api/inngest`, { method: "PUT" })).status).toBe(200);
  const sync = standIn.registrations.at(-1) as { url: string; functions: Array<{ id: string }> };
  return sync.functions.map((f) => f.id);
}

describe("diagnose-preview in the service", () => {
  it("is not registered without ANTHROPIC_API_KEY", { timeout: 60_000 }, async () => {
    const service = await start("off");
    const ids = await syncedIds(service);
    expect(ids).toContain("previews-launch-preview");
    expect(ids).not.toContain("previews-diagnose-preview");
  });

  it("with a key: registered, and a failure is diagnosed through the configured client", { timeout: 60_000 }, async () => {
    const service = await start("on", { ANTHROPIC_API_KEY: KEY, ANTHROPIC_BASE_URL: api.url, ANTHROPIC_MODEL: "claude-haiku-5-5", ANTHROPIC_MAX_TOKENS: "128", ANTHROPIC_TIMEOUT: "5s" });
    expect(await syncedIds(service)).toContain("previews-diagnose-preview");

    const store = new SqlPreviewStore(service.db);
    const projectId = "diag-service-1";
    await store.apply(projectId, "launch", { reason: "pipeline.step7", claim: "run-1", logTail: null });
    await store.apply(projectId, "fail", { reason: "exit 1", claim: "run-1", logTail: "Error: Cannot find module next\n" });
    const serveUrl = `http://127.0.0.1:${service.port}/api/inngest`;
    const run = await standIn.run({ serveUrl, fnId: "previews-diagnose-preview", event: { name: "preview.failed", data: { projectId, reason: "exit 1", logTail: "Error: Cannot find module next\n" } } });
    expect(run.result).toMatchObject({ diagnosed: true });

    expect(api.requests).toHaveLength(1);
    expect(api.requests[0]!.body).toMatchObject({ model: "claude-haiku-5-5", max_tokens: 128 });
    expect(api.requests[0]!.headers.authorization).toBe(`Bearer ${KEY}`);
    const json = (await (await fetch(`http://127.0.0.1:${service.port}/previews/${projectId}`)).json()) as Record<string, unknown>;
    expect(json).toMatchObject({ projectId, status: "failed", diagnosis: "The module next is missing: run npm install." });
    expect(standIn.eventsNamed("preview.diagnosed")).toEqual([expect.objectContaining({ data: { projectId, diagnosis: "The module next is missing: run npm install." } })]);
  });
});
