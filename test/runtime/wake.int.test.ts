/**
 * The wake page against real things: a real preview container (Docker), launched and stopped by
 * the real functions (PGlite state), then requested through the wake path (the host, over real
 * HTTP, with the preview's own `Host` as Traefik's catch-all router forwards it). The
 * `preview.requested` it sends reaches the Inngest stand-in, which drives the launch through
 * `/api/inngest` as the Inngest server would; the container ends up running.
 */
import http from "node:http";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { previewRequested } from "../../inngest.config.js";
import { LinkSigner } from "../../runtime/access.js";
import { ActivityTracker } from "../../runtime/activity.js";
import { createApp } from "../../runtime/app.js";
import { PreviewRoutes } from "../../runtime/preview-routes.js";
import { SqlActivityStore } from "../../sql/activity-store.js";
import { listen } from "../helpers/http.js";
import { createPreviewTestEnv, type PreviewTestEnv } from "../helpers/preview-env.js";

const SECRET = "wake-test-secret-0123456789abcdef0123";
let env: PreviewTestEnv;
let tracker: ActivityTracker;
const closers: Array<() => Promise<void>> = [];

beforeAll(async () => {
  env = await createPreviewTestEnv();
  tracker = new ActivityTracker(new SqlActivityStore(env.database.db), (events) => env.inngest.send(events), { eventIntervalMs: 60_000, flushIntervalMs: 100 }).start();
});
afterAll(async () => {
  for (const close of closers) await close().catch(() => undefined);
  await tracker?.close();
  await env?.cleanup();
});

async function host(access: "public" | "token") {
  const previews = new PreviewRoutes({
    domain: "preview.localhost",
    access,
    signer: access === "token" ? new LinkSigner(SECRET, 3_600_000) : null,
    routing: "traefik",
    tracker,
    store: env.store,
    requestLaunch: (projectId) => env.inngest.send(previewRequested.create({ projectId })),
    log: pino({ level: "silent" }),
  });
  const server = await listen(createApp({ inngest: env.inngest, functions: env.functions, store: env.store, runtime: env.docker.runtime, apiToken: null, previews }));
  closers.push(server.close);
  return { url: server.url, port: Number(new URL(server.url).port), serveUrl: `${server.url}/api/inngest` };
}

/** GET with an explicit Host header (fetch does not let a caller set it). */
function get(port: number, hostHeader: string, pathAndQuery = "/", headers: Record<string, string> = {}) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path: pathAndQuery, method: "GET", headers: { host: hostHeader, ...headers } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

const requested = (id: string) => env.inngestServer.eventsNamed("preview.requested").filter((e) => e.data.projectId === id);
const isRunning = async (id: string) => (await env.docker.docker.getContainer(`preview-${id}`).inspect()).State.Running;

/** A real preview, launched and then stopped by the functions: its container exists, stopped. */
async function stoppedPreview(): Promise<string> {
  const id = env.docker.projectId("wake");
  await env.docker.writeSite(id, "http");
  expect((await env.launch(id)).error).toBeUndefined();
  expect((await env.stop(id, "preview.idle")).error).toBeUndefined();
  expect((await env.store.get(id))?.status).toBe("stopped");
  expect(await isRunning(id)).toBe(false);
  return id;
}

describe("wake page", () => {
  it("a stopped preview requested through the wake path ends up running; preview.requested is sent once", async () => {
    const h = await host("public");
    const id = await stoppedPreview();

    const page = await get(h.port, `${id}.preview.localhost`, "/blog?x=1");
    expect(page.status).toBe(503);
    expect(page.headers["cache-control"]).toBe("no-store");
    expect(page.headers["content-type"]).toMatch(/text\/html/);
    expect(page.body).toMatch(/Starting your preview/);
    expect(page.body).toMatch(/<meta http-equiv="refresh" content="2">/);
    expect(requested(id)).toHaveLength(1);

    // The page refreshes itself: no second request while this wake is under way.
    for (let i = 0; i < 3; i++) expect((await get(h.port, `${id}.preview.localhost`, "/blog?x=1")).status).toBe(503);
    expect(requested(id)).toHaveLength(1);

    // The Inngest server delivers the event to launch-preview over HTTP.
    const [event] = requested(id);
    const run = await env.inngestServer.run({ serveUrl: h.serveUrl, fnId: "previews-launch-preview", event: { name: event!.name, data: event!.data } });
    expect(run.outcome).toBe("completed");
    expect(run.result).toMatchObject({ projectId: id, url: `http://${id}.preview.localhost` });
    expect(await isRunning(id)).toBe(true);
    expect((await env.store.get(id))?.status).toBe("running");

    // Until Traefik routes the host to the container, the page keeps refreshing and asks for nothing more.
    const after = await get(h.port, `${id}.preview.localhost`);
    expect(after.status).toBe(503);
    expect(requested(id)).toHaveLength(1);
  });

  it("unknown, invalid and removed projects get a plain 404 and trigger nothing", async () => {
    const h = await host("public");
    const removed = env.docker.projectId("gone");
    await env.docker.writeSite(removed, "http");
    expect((await env.launch(removed)).error).toBeUndefined();
    expect((await env.remove(removed)).error).toBeUndefined();
    const before = env.inngestServer.eventsNamed("preview.requested").length;
    for (const hostHeader of [`${removed}.preview.localhost`, "never-launched.preview.localhost", "Bad_Id.preview.localhost", "a.b.preview.localhost"]) {
      const res = await get(h.port, hostHeader);
      expect(res.status, hostHeader).toBe(404);
      expect(res.body, hostHeader).toMatch(/No preview here/);
    }
    expect(env.inngestServer.eventsNamed("preview.requested").length).toBe(before);
  });

  it("requests for the service's own host still reach the API", async () => {
    const h = await host("public");
    expect((await get(h.port, `127.0.0.1:${h.port}`, "/healthz")).status).toBe(200);
    expect((await get(h.port, "preview.localhost", "/healthz")).status).toBe(200);
  });

  it("with PREVIEW_ACCESS=token the wake page is gated too: 401 without access, a link sets the cookie, nothing is sent before", async () => {
    const h = await host("token");
    const id = await stoppedPreview();
    const denied = await get(h.port, `${id}.preview.localhost`);
    expect(denied.status).toBe(401);
    expect(requested(id)).toHaveLength(0);

    const { token } = new LinkSigner(SECRET, 3_600_000).sign(id);
    const link = await get(h.port, `${id}.preview.localhost`, `/?preview_token=${token}`);
    expect(link.status).toBe(302);
    expect(link.headers.location).toBe(`http://${id}.preview.localhost/`);
    const cookie = String(link.headers["set-cookie"]).split(";")[0]!;
    expect(requested(id)).toHaveLength(0);

    const page = await get(h.port, `${id}.preview.localhost`, "/", { cookie });
    expect(page.status).toBe(503);
    expect(requested(id)).toHaveLength(1);
  });
});
