/**
 * Unit tier: forward-auth, the wake page, heartbeat and links through `app.request()` (Hono's
 * own header accessor: no Node request behind it) over in-memory fakes. Over real HTTP with the
 * real host: forward-auth.int.test.ts and wake.int.test.ts.
 */
import { describe, expect, it } from "vitest";
import { createFunctions } from "../../functions/index.js";
import { LinkSigner } from "../../runtime/access.js";
import { createApp } from "../../runtime/app.js";
import { createInngest } from "../../runtime/inngest-client.js";
import { PreviewRoutes, type PreviewRoutesDeps } from "../../runtime/preview-routes.js";
import { FakeRuntime, FakeSiteFiles } from "../fakes/fake-runtime.js";
import { MemoryPreviewStore } from "../fakes/memory-store.js";
import { inngestSettings } from "../helpers/inngest-server.js";

const TOKEN = "unit-token-0123456789abcdef";
const SECRET = "unit-link-secret-0123456789abcdef0123";

function setup(overrides: Partial<PreviewRoutesDeps> = {}, apiToken: string | null = TOKEN) {
  const store = new MemoryPreviewStore();
  const runtime = new FakeRuntime();
  const touched: string[] = [];
  const launches: string[] = [];
  const inngest = createInngest(inngestSettings({ dev: true }));
  const functions = createFunctions(inngest, { runtime, store, site: new FakeSiteFiles(), readyTimeoutMs: 1000 });
  const previews = new PreviewRoutes({
    domain: "preview.localhost",
    access: "token",
    signer: new LinkSigner(SECRET, 3_600_000),
    routing: "traefik",
    tracker: { touch: (id) => void touched.push(id) },
    store,
    requestLaunch: async (id) => void launches.push(id),
    ...overrides,
  });
  const app = createApp({ inngest, functions, store, runtime, apiToken, previews });
  return { app, store, touched, launches };
}

const fa = (host: string, extra: Record<string, string> = {}) => ({ headers: { "x-forwarded-host": host, "x-forwarded-uri": "/", "x-forwarded-proto": "http", ...extra } });
const bearer = { headers: { authorization: `Bearer ${TOKEN}` } };

describe("forward-auth through app.request()", () => {
  it("gates and records like over HTTP", async () => {
    const t = setup();
    t.store.seed("p1", "running");
    expect((await t.app.request("/forward-auth", fa("p1.preview.localhost"))).status).toBe(401);
    expect((await t.app.request("/forward-auth", fa("p1.preview.localhost.x"))).status).toBe(404);
    const { token } = new LinkSigner(SECRET, 3_600_000).sign("p1");
    const res = await t.app.request("/forward-auth", fa("p1.preview.localhost", { "x-forwarded-uri": `/?preview_token=${token}` }));
    expect(res.status).toBe(302);
    expect(res.headers.get("location")).toBe("http://p1.preview.localhost/");
    expect((await t.app.request("/forward-auth", fa("p1.preview.localhost", { cookie: `preview_access=${token}` }))).status).toBe(200);
    expect(t.touched).toEqual(["p1", "p1"]);
  });

  it("any of several access cookies opens (a sibling host's cookie cannot shadow this host's own)", async () => {
    const t = setup();
    t.store.seed("p1", "running");
    const { token } = new LinkSigner(SECRET, 3_600_000).sign("p1");
    const res = await t.app.request("/forward-auth", fa("p1.preview.localhost", { cookie: `preview_access=junk; preview_access=${token}` }));
    expect(res.status).toBe(200);
  });

  it("a stale link opened with a valid cookie: in, the token taken off the URL, no new cookie", async () => {
    const t = setup();
    t.store.seed("p1", "running");
    const { token } = new LinkSigner(SECRET, 3_600_000).sign("p1");
    const stale = new LinkSigner(SECRET, 1_000).sign("p1", Date.now() - 10_000).token;
    const res = await t.app.request("/forward-auth", fa("p1.preview.localhost", { cookie: `preview_access=${token}`, "x-forwarded-uri": `/page?preview_token=${stale}` }));
    expect(res.status).toBe(302);
    expect(res.headers.get("location")).toBe("http://p1.preview.localhost/page");
    expect(res.headers.get("set-cookie")).toBeNull();
    // Without the cookie the stale link opens nothing.
    expect((await t.app.request("/forward-auth", fa("p1.preview.localhost", { "x-forwarded-uri": `/page?preview_token=${stale}` }))).status).toBe(401);
  });

  it("public: every preview's host passes; another host, or a project without a preview, is 404 and records nothing", async () => {
    const t = setup({ access: "public", signer: null });
    t.store.seed("p1", "stopped");
    t.store.seed("gone", "removed");
    expect((await t.app.request("/forward-auth", fa("p1.preview.localhost"))).status).toBe(200);
    expect((await t.app.request("/forward-auth", fa("x.p1.preview.localhost"))).status).toBe(404);
    expect((await t.app.request("/forward-auth", fa("ghost.preview.localhost"))).status).toBe(404);
    expect((await t.app.request("/forward-auth", fa("gone.preview.localhost"))).status).toBe(404);
    expect(t.touched).toEqual(["p1"]);
  });

  it("remembers which projects have a preview: one read per project, not per request", async () => {
    const t = setup({ access: "public", signer: null });
    t.store.seed("p1", "running");
    let reads = 0;
    const get = t.store.get.bind(t.store);
    t.store.get = async (id) => (reads++, get(id));
    for (let i = 0; i < 5; i++) expect((await t.app.request("/forward-auth", fa("p1.preview.localhost"))).status).toBe(200);
    for (let i = 0; i < 5; i++) expect((await t.app.request("/forward-auth", fa("ghost.preview.localhost"))).status).toBe(404);
    expect(reads).toBe(2);
  });

  it("a flood of made-up projects holds at most a few database reads at once: the rest get 503, nothing is recorded", async () => {
    const t = setup({ access: "public", signer: null });
    let inFlight = 0;
    let most = 0;
    t.store.get = async () => {
      most = Math.max(most, ++inFlight);
      await new Promise((r) => setTimeout(r, 20));
      inFlight--;
      return null;
    };
    const answers = await Promise.all(Array.from({ length: 100 }, (_, i) => t.app.request("/forward-auth", fa(`made-up-${i}.preview.localhost`))));
    expect(most).toBeLessThanOrEqual(16);
    expect(new Set(answers.map((r) => r.status))).toEqual(new Set([404, 503]));
    expect(t.touched).toEqual([]);
  });
});

describe("heartbeat and links", () => {
  it("both need the API token", async () => {
    const t = setup();
    expect((await t.app.request("/previews/p1/activity", { method: "POST" })).status).toBe(401);
    expect((await t.app.request("/previews/p1/links", { method: "POST" })).status).toBe(401);
    expect(t.touched).toEqual([]);
  });

  it("heartbeat records activity for a preview, 404 for a project without one, 400 naming a bad id", async () => {
    const t = setup();
    t.store.seed("p1", "running");
    expect((await t.app.request("/previews/p1/activity", { method: "POST", ...bearer })).status).toBe(202);
    expect((await t.app.request("/previews/ghost/activity", { method: "POST", ...bearer })).status).toBe(404);
    const bad = await t.app.request("/previews/P..1/activity", { method: "POST", ...bearer });
    expect(bad.status).toBe(400);
    expect((await bad.json()).error).toMatch(/invalid projectId "P\.\.1"/);
    expect(t.touched).toEqual(["p1"]);
  });

  it("links: 201 with url and expiresAt; 409 in port routing; 404 for a removed preview", async () => {
    const t = setup();
    t.store.seed("p1", "stopped");
    t.store.seed("gone", "removed");
    const res = await t.app.request("/previews/p1/links", { method: "POST", ...bearer });
    expect(res.status).toBe(201);
    const body = (await res.json()) as { url: string; expiresAt: string };
    expect(body.url).toMatch(/^http:\/\/p1\.preview\.localhost\/\?preview_token=\d+\.[A-Za-z0-9_-]{43}$/);
    expect(Date.parse(body.expiresAt)).toBeGreaterThan(Date.now());
    expect((await t.app.request("/previews/gone/links", { method: "POST", ...bearer })).status).toBe(404);
    const port = setup({ routing: "port" });
    port.store.seed("p1", "running");
    const refused = await port.app.request("/previews/p1/links", { method: "POST", ...bearer });
    expect(refused.status).toBe(409);
    expect((await refused.json()).error).toMatch(/PREVIEW_ROUTING=traefik/);
  });
});

describe("wake page", () => {
  it("a failed preview is woken once; the page then says it could not start instead of relaunching in a loop", async () => {
    const t = setup({ access: "public", signer: null });
    t.store.seed("p1", "failed");
    const first = await t.app.request("/", { headers: { host: "p1.preview.localhost" } });
    expect(first.status).toBe(503);
    expect(await first.text()).toMatch(/Starting your preview/);
    expect(t.launches).toEqual(["p1"]);
    t.store.seed("p1", "failed", { updatedAt: new Date(Date.now() + 5) }); // the launch failed again
    const again = await t.app.request("/", { headers: { host: "p1.preview.localhost" } });
    expect(await again.text()).toMatch(/could not start/);
    expect(t.launches).toEqual(["p1"]);
  });

  it("a failed preview that the launch has not picked up yet: the page still says starting (the failure is the old one)", async () => {
    const t = setup({ access: "public", signer: null });
    t.store.seed("p1", "failed");
    await t.app.request("/", { headers: { host: "p1.preview.localhost" } });
    // Same row as when the wake was sent: the requested launch has not claimed it yet.
    const refresh = await t.app.request("/", { headers: { host: "p1.preview.localhost" } });
    expect(refresh.status).toBe(503);
    expect(await refresh.text()).toMatch(/Starting your preview/);
    expect(t.launches).toEqual(["p1"]);
  });

  it("a stopped preview is woken once per stop; a launch under way is left alone", async () => {
    const t = setup({ access: "public", signer: null });
    t.store.seed("p1", "stopped");
    await t.app.request("/", { headers: { host: "p1.preview.localhost" } });
    await t.app.request("/a", { headers: { host: "p1.preview.localhost" } });
    expect(t.launches).toEqual(["p1"]);
    t.store.seed("p1", "starting");
    await t.app.request("/", { headers: { host: "p1.preview.localhost" } });
    expect(t.launches).toEqual(["p1"]);
    t.store.seed("p1", "stopped", { updatedAt: new Date(Date.now() + 10) }); // stopped again later
    await t.app.request("/", { headers: { host: "p1.preview.localhost" } });
    expect(t.launches).toEqual(["p1", "p1"]);
  });
});
