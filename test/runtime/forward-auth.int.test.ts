/**
 * Forward-auth, heartbeat and links over real HTTP against the real host (`startService`:
 * file-backed PGlite, an Inngest stand-in receiving the events), with the headers Traefik's
 * ForwardAuth middleware sends: activity recorded and flushed to `last_activity_at`, events
 * coalesced, exact host matching, and with PREVIEW_ACCESS=token forged, expired and cross-project
 * tokens refused and the cookie's attributes checked.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LinkSigner } from "../../runtime/access.js";
import { loadConfig } from "../../runtime/config.js";
import { startService, type RunningService } from "../../runtime/service.js";
import { SqlActivityStore } from "../../sql/activity-store.js";
import { SqlPreviewStore } from "../../sql/preview-store.js";
import { startInngestStandIn, type InngestStandIn } from "../helpers/inngest-server.js";
import { removeServiceNetwork, serviceEnv } from "../helpers/service-env.js";

const TOKEN = "api-token-0123456789abcdef";
const SECRET = "link-secret-for-tests-0123456789abcdef";
const DOMAIN = "preview.localhost";
const auth = { authorization: `Bearer ${TOKEN}` };

let tmp: string;
let standIn: InngestStandIn;
let open: RunningService; // PREVIEW_ACCESS=public
let gated: RunningService; // PREVIEW_ACCESS=token (the default with API_TOKEN)

async function start(name: string, extra: Record<string, string>): Promise<RunningService> {
  const dir = path.join(tmp, name);
  const config = loadConfig(serviceEnv(dir, standIn.url, {
    PREVIEW_DOMAIN: DOMAIN,
    ACTIVITY_EVENT_INTERVAL: "1s",
    ACTIVITY_FLUSH_INTERVAL: "100ms",
    ...extra,
  }));
  const service = await startService(config, pino({ level: "silent" }));
  const store = new SqlPreviewStore(service.db);
  for (const id of ["p1", "p2", "p11", "11", "1"]) {
    await store.apply(id, "launch", { reason: "test", claim: "run" });
    await store.apply(id, "ready", { reason: "test", claim: "run", url: `http://${id}.${DOMAIN}`, containerId: `c-${id}` });
  }
  return service;
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "sbp-forward-auth-"));
  standIn = await startInngestStandIn();
  open = await start("open", { PREVIEW_ACCESS: "public" });
  gated = await start("gated", { API_TOKEN: TOKEN, PREVIEW_LINK_SECRET: SECRET, PREVIEW_LINK_TTL: "2h" });
});

afterAll(async () => {
  await open?.close();
  await gated?.close();
  await removeServiceNetwork();
  await standIn?.close();
  await rm(tmp, { recursive: true, force: true });
});

const base = (s: RunningService) => `http://127.0.0.1:${s.port}`;

/** A request as Traefik's ForwardAuth middleware makes it. */
function forwardAuth(s: RunningService, host: string | null, opts: { uri?: string; proto?: string; method?: string; cookie?: string } = {}) {
  const headers: Record<string, string> = {
    "x-forwarded-method": opts.method ?? "GET",
    "x-forwarded-proto": opts.proto ?? "http",
    "x-forwarded-uri": opts.uri ?? "/",
  };
  if (host !== null) headers["x-forwarded-host"] = host;
  if (opts.cookie) headers.cookie = opts.cookie;
  return fetch(`${base(s)}/forward-auth`, { headers, redirect: "manual" });
}

const activityEvents = (projectId: string) => standIn.eventsNamed("preview.activity").filter((e) => e.data.projectId === projectId);
const lastActivity = (s: RunningService, id: string) => new SqlActivityStore(s.db).lastActivity(id);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(probe: () => Promise<T> | T, ok: (v: T) => boolean, ms = 5_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (ok(v) || Date.now() > end) return v;
    await sleep(50);
  }
}

describe("forward-auth (public)", () => {
  it("answers 200 for a preview host and records the activity: flushed to last_activity_at, one preview.activity", async () => {
    const before = Date.now();
    expect(await lastActivity(open, "p2")).toBeNull();
    const res = await forwardAuth(open, "p2.preview.localhost");
    expect(res.status).toBe(200);
    const at = await until(() => lastActivity(open, "p2"), (d) => d !== null);
    expect(at!.getTime()).toBeGreaterThanOrEqual(before - 5);
    expect(at!.getTime()).toBeLessThanOrEqual(Date.now());
    await until(() => activityEvents("p2").length, (n) => n >= 1);
    expect(activityEvents("p2")).toHaveLength(1);
  });

  it("matches hosts exactly: 1. is not 11., subdomains and suffixes are unknown (404, nothing recorded)", async () => {
    const touched = () => standIn.eventsNamed("preview.activity").length;
    // ... and a well-formed id of a project without a preview ("ghost") is unknown too.
    for (const host of ["1.preview.localhost.evil.com", "x.1.preview.localhost", "1preview.localhost", "preview.localhost", "1.other.localhost", "UPPER_CASE.preview.localhost", "", "ghost.preview.localhost"]) {
      const before = touched();
      const res = await forwardAuth(open, host);
      expect(res.status, host).toBe(404);
      await sleep(20);
      expect(touched(), host).toBe(before);
    }
    expect((await forwardAuth(open, null)).status).toBe(404);

    expect((await forwardAuth(open, "11.preview.localhost:8443")).status).toBe(200);
    await until(() => lastActivity(open, "11"), (d) => d !== null);
    await sleep(300); // several flushes later
    expect(await lastActivity(open, "1")).toBeNull();
    expect(activityEvents("1")).toHaveLength(0);
    expect(activityEvents("11")).toHaveLength(1);
  });

  it("coalesces events: at most one per interval for a burst, the last one not before the last use, none while quiet", async () => {
    // Timing-robust on a loaded machine: asserted on the events' own times, not on sleeps.
    const first = Date.now();
    const responses = await Promise.all(Array.from({ length: 40 }, () => forwardAuth(open, "p1.preview.localhost", { method: "POST", uri: "/api/x" })));
    expect(responses.map((r) => r.status)).toEqual(Array(40).fill(200));
    await until(() => activityEvents("p1").length, (n) => n >= 1);
    await sleep(300);
    expect((await forwardAuth(open, "p1.preview.localhost")).status).toBe(200);
    const lastUse = Date.now();
    // The trailing event: sent once the interval since the previous event is over.
    await until(() => activityEvents("p1").at(-1)!.ts!, (ts) => ts >= lastUse - 5, 4_000);
    const burst = activityEvents("p1");
    expect(burst.at(-1)!.ts!).toBeGreaterThanOrEqual(lastUse - 5);
    // 41 requests over (lastUse - first) ms: at most one event per 1 s interval, plus the leading one.
    expect(burst.length).toBeGreaterThanOrEqual(2);
    expect(burst.length).toBeLessThanOrEqual(2 + Math.floor((lastUse - first) / 1_000));
    for (let i = 1; i < burst.length; i++) expect(burst[i]!.ts! - burst[i - 1]!.ts!).toBeGreaterThanOrEqual(950);
    await sleep(1_500); // quiet for longer than the interval: nothing more
    expect(activityEvents("p1")).toHaveLength(burst.length);
  });

  it("heartbeat: POST /previews/:id/activity records activity like a request; a bad id is 400", async () => {
    const res = await fetch(`${base(open)}/previews/p1/activity`, { method: "POST" });
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ projectId: "p1", recorded: true });
    const bad = await fetch(`${base(open)}/previews/Bad..Id/activity`, { method: "POST" });
    expect(bad.status).toBe(400);
    expect((await bad.json()).error).toMatch(/invalid projectId "Bad\.\.Id"/);
  });

  it("links need a secret: 409 naming PREVIEW_LINK_SECRET in public mode without one", async () => {
    const res = await fetch(`${base(open)}/previews/p1/links`, { method: "POST" });
    expect(res.status).toBe(409);
    expect((await res.json()).error).toMatch(/PREVIEW_LINK_SECRET/);
  });
});

describe("access gate (PREVIEW_ACCESS=token)", () => {
  async function link(projectId: string) {
    const res = await fetch(`${base(gated)}/previews/${projectId}/links`, { method: "POST", headers: auth });
    expect(res.status).toBe(201);
    const body = (await res.json()) as { url: string; expiresAt: string };
    const url = new URL(body.url);
    return { ...body, url, token: url.searchParams.get("preview_token")! };
  }

  it("links: API token required, id validated, unknown preview 404, expiry PREVIEW_LINK_TTL", async () => {
    expect((await fetch(`${base(gated)}/previews/p1/links`, { method: "POST" })).status).toBe(401);
    expect((await fetch(`${base(gated)}/previews/p1/activity`, { method: "POST" })).status).toBe(401);
    expect((await fetch(`${base(gated)}/previews/a..b/links`, { method: "POST", headers: auth })).status).toBe(400);
    expect((await fetch(`${base(gated)}/previews/nope/links`, { method: "POST", headers: auth })).status).toBe(404);
    const before = Date.now();
    const l = await link("p1");
    expect(l.url.host).toBe("p1.preview.localhost");
    expect(l.token).toMatch(/^\d+\.[A-Za-z0-9_-]{43}$/);
    const ttl = Date.parse(l.expiresAt) - before;
    expect(ttl).toBeGreaterThan(2 * 3_600_000 - 5_000);
    expect(ttl).toBeLessThanOrEqual(2 * 3_600_000);
  });

  it("without cookie or token: 401 with a short page, nothing recorded", async () => {
    const before = activityEvents("p2").length;
    const res = await forwardAuth(gated, "p2.preview.localhost", { uri: "/" });
    expect(res.status).toBe(401);
    expect(res.headers.get("content-type")).toMatch(/text\/html/);
    expect(await res.text()).toMatch(/Private preview/);
    await sleep(50);
    expect(activityEvents("p2")).toHaveLength(before);
  });

  it("a link's token sets the cookie (HttpOnly, SameSite=Lax, host-only, not Secure over http) and redirects without the token; the cookie then opens", async () => {
    const l = await link("p1");
    const res = await forwardAuth(gated, "p1.preview.localhost", { uri: `/blog/post?x=1&preview_token=${l.token}` });
    expect(res.status).toBe(302);
    expect(res.headers.get("location")).toBe("http://p1.preview.localhost/blog/post?x=1");
    const cookie = res.headers.get("set-cookie")!;
    expect(cookie).toMatch(/^preview_access=[^;]+; /);
    expect(cookie).toMatch(/; HttpOnly/);
    expect(cookie).toMatch(/; SameSite=Lax/);
    expect(cookie).toMatch(/; Path=\//);
    expect(cookie).not.toMatch(/Domain=/i);
    expect(cookie).not.toMatch(/Secure/);
    const maxAge = Number(/Max-Age=(\d+)/.exec(cookie)![1]);
    expect(maxAge).toBeGreaterThan(2 * 3600 - 10);
    expect(maxAge).toBeLessThanOrEqual(2 * 3600);

    const pair = cookie.split(";")[0]!;
    expect((await forwardAuth(gated, "p1.preview.localhost", { uri: "/blog/post", cookie: `other=1; ${pair}` })).status).toBe(200);
    // The same cookie sent to another preview's host opens nothing.
    expect((await forwardAuth(gated, "p2.preview.localhost", { uri: "/", cookie: pair })).status).toBe(401);
    expect((await forwardAuth(gated, "p11.preview.localhost", { uri: "/", cookie: pair })).status).toBe(401);
  });

  it("over https the cookie is Secure and the redirect stays on https", async () => {
    const l = await link("p2");
    const res = await forwardAuth(gated, "p2.preview.localhost", { uri: `/?preview_token=${l.token}`, proto: "https" });
    expect(res.status).toBe(302);
    expect(res.headers.get("location")).toBe("https://p2.preview.localhost/");
    expect(res.headers.get("set-cookie")).toMatch(/; Secure/);
  });

  it("refuses forged, expired and cross-project tokens, in the link and in the cookie", async () => {
    const p1 = await link("p1");
    const [exp, sig] = p1.token.split(".") as [string, string];
    const forgedSig = `${exp}.${sig.slice(0, 20)}${sig[20] === "a" ? "b" : "a"}${sig.slice(21)}`;
    const laterExpiry = `${Number(exp) + 86_400}.${sig}`;
    const otherSecret = new LinkSigner("another-secret-0123456789abcdef-xyz", 3_600_000).sign("p1").token;
    const expired = new LinkSigner(SECRET, 1_000).sign("p1", Date.now() - 60_000).token;
    const crossProject = (await link("p2")).token;
    for (const [what, token] of Object.entries({ forgedSig, laterExpiry, otherSecret, expired, crossProject, empty: "" })) {
      const viaLink = await forwardAuth(gated, "p1.preview.localhost", { uri: `/?preview_token=${encodeURIComponent(token)}` });
      expect(viaLink.status, `${what} in the link`).toBe(401);
      expect(viaLink.headers.get("set-cookie"), what).toBeNull();
      const viaCookie = await forwardAuth(gated, "p1.preview.localhost", { uri: "/", cookie: `preview_access=${token}` });
      expect(viaCookie.status, `${what} in the cookie`).toBe(401);
    }
    // The genuine one still opens.
    expect((await forwardAuth(gated, "p1.preview.localhost", { uri: "/", cookie: `preview_access=${p1.token}` })).status).toBe(200);
  });

  it("a request let through by the gate records activity; an unknown host is 404 before the gate", async () => {
    const l = await link("11");
    const before = await lastActivity(gated, "11");
    expect(before).toBeNull();
    expect((await forwardAuth(gated, "11.preview.localhost", { cookie: `preview_access=${l.token}` })).status).toBe(200);
    expect(await until(() => lastActivity(gated, "11"), (d) => d !== null)).not.toBeNull();
    expect((await forwardAuth(gated, "11.preview.localhost.evil", { cookie: `preview_access=${l.token}` })).status).toBe(404);
  });
});
