/**
 * The preview-facing side of the host:
 *   - `/forward-auth`: Traefik's ForwardAuth middleware on every preview router calls it with
 *     `X-Forwarded-Host/-Method/-Uri/-Proto`. The host must be exactly `{id}.{PREVIEW_DOMAIN}`
 *     (else 404, nothing recorded). With `PREVIEW_ACCESS=token` the request needs the access
 *     cookie or a link's token (a valid token: cookie set, 302 to the same URL without it; else
 *     401). An allowed request records activity in memory (no database round trip) and gets 200.
 *   - the wake page: Traefik's low-priority catch-all router sends requests for a preview whose
 *     container is stopped or gone here, with their own `Host`. A known preview gets a "starting
 *     your preview" page that refreshes itself (no-store) and `preview.requested` is sent at most
 *     once per wake; once the preview runs, Traefik's own router for it wins and the refresh lands
 *     on the site. Unknown, invalid or removed projects get a plain 404 and trigger nothing.
 *   - `POST /previews/:projectId/activity` (heartbeat) and `POST /previews/:projectId/links`
 *     (signed links), mounted under the API token by `createApp`.
 */
import type { IncomingMessage } from "node:http";
import type { Context, MiddlewareHandler } from "hono";
import type { Logger } from "pino";
import type { PreviewRecord, PreviewStore, ProjectId } from "../functions/ports.js";
import { TOKEN_PARAM, accessCookie, isPreviewHost, projectOfHost, readCookies, takeToken, ACCESS_COOKIE, type LinkSigner } from "./access.js";
import type { ActivityTracker } from "./activity.js";
import { projectIdParam } from "./params.js";
import { hasPreview } from "../functions/lifecycle.js";

export const FORWARD_AUTH_PATH = "/forward-auth";

/** Seconds between two refreshes of the wake page. */
export const WAKE_REFRESH_S = 2;
/** A failed preview is woken again by its page at most this often. */
const WAKE_FAILED_RETRY_MS = 60_000;
/** Wake bookkeeping kept in memory (projects); the oldest are forgotten beyond it. */
const WAKE_MEMORY = 10_000;
/** Hosts remembered by forward-auth; cleared when full. */
const HOST_MEMORY = 10_000;
/**
 * Which projects have a preview (a row, not removed), as forward-auth remembers it: a project
 * with one is trusted for KNOWN_TTL_MS, one without for UNKNOWN_TTL_MS; at most KNOWN_MEMORY
 * projects (the oldest forgotten first). A project not remembered costs one database read, at
 * most LOOKUPS_AT_ONCE at a time (beyond: 503, Traefik's client retries): a flood of made-up
 * ids neither records anything nor holds more of the database than that.
 */
const KNOWN_TTL_MS = 30_000;
const UNKNOWN_TTL_MS = 5_000;
const KNOWN_MEMORY = 20_000;
const LOOKUPS_AT_ONCE = 16;

export interface PreviewRoutesDeps {
  /** PREVIEW_DOMAIN (lower case). */
  domain: string;
  /** PREVIEW_ACCESS. */
  access: "public" | "token";
  /** Required in `token` mode; without it no links can be made. */
  signer: LinkSigner | null;
  /** PREVIEW_ROUTING: links and the gate need Traefik. */
  routing: "traefik" | "port";
  tracker: Pick<ActivityTracker, "touch">;
  store: Pick<PreviewStore, "get">;
  /** Sends `preview.requested` (the Inngest client's `send`). */
  requestLaunch(projectId: ProjectId): Promise<unknown>;
  log?: Logger;
}

/** `cookie` null: the request already had a valid cookie (only the token is taken off the URL). */
type Gate = { allow: true } | { allow: false } | { allow: "redirect"; location: string; cookie: string | null };

const html = (title: string, body: string, extraHead = "") =>
  `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title>${extraHead}</head><body><h1>${title}</h1><p>${body}</p></body></html>\n`;

const UNAUTHORIZED_PAGE = html("Private preview", "Open this preview through a link from the site builder.");
const NOT_FOUND_PAGE = html("No preview here", "There is no preview at this address.");

/**
 * A request header by lower-case name. Under @hono/node-server the Node request is at hand
 * (`c.env.incoming`): reading its parsed headers directly spares the hot path building a Fetch
 * `Headers` object per request (most of forward-auth's cost). Elsewhere (`app.request()` in
 * tests, other runtimes), Hono's own accessor.
 */
function headerReader(c: Context): (name: string) => string | undefined {
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  if (incoming?.headers) {
    const headers = incoming.headers;
    return (name) => {
      const value = headers[name];
      return Array.isArray(value) ? value.join(", ") : value;
    };
  }
  return (name) => c.req.header(name);
}

/** Sets `key` as the map's newest entry; beyond `max` entries the oldest is forgotten. */
function setNewest<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > max) map.delete(map.keys().next().value!);
}

/** A row's version, as the wake bookkeeping compares them: its status and when it last changed. */
const versionOf = (row: PreviewRecord) => `${row.status}@${row.updatedAt.getTime()}`;

export class PreviewRoutes {
  /** Per project: the row version a wake was sent for, and when. */
  readonly #woken = new Map<ProjectId, { version: string; at: number }>();
  /** Host header -> project (null: not a preview host). */
  readonly #hosts = new Map<string, ProjectId | null>();
  /** Project -> whether it has a preview, and until when that is trusted. */
  readonly #known = new Map<ProjectId, { live: boolean; until: number }>();
  #lookups = 0;

  constructor(private readonly deps: PreviewRoutesDeps) {}

  /**
   * Whether a request for `projectId` may pass. `uri` is the original request URI (with its
   * query), `cookies` its Cookie header.
   */
  gate(projectId: ProjectId, host: string, uri: string, proto: string | undefined, cookies: string | undefined): Gate {
    if (this.deps.access === "public") return { allow: true };
    const signer = this.deps.signer;
    if (!signer) return { allow: false };
    // Any of the access cookies sent (a sibling host may shadow this host's own with its own).
    const cookie = readCookies(cookies, ACCESS_COOKIE).some((value) => signer.verify(projectId, value) !== null);
    if (uri.includes(TOKEN_PARAM)) {
      const link = takeToken(uri);
      if (link.hasToken) {
        const secure = proto?.toLowerCase() === "https";
        const location = `${secure ? "https" : "http"}://${host}${link.rest}`;
        const expiresAt = signer.verify(projectId, link.token);
        // A stale link opened by someone who already has access: in, without the token.
        if (!expiresAt) return cookie ? { allow: "redirect", location, cookie: null } : { allow: false };
        return { allow: "redirect", location, cookie: accessCookie(link.token!, expiresAt, secure) };
      }
    }
    return cookie ? { allow: true } : { allow: false };
  }

  /**
   * `GET|...|/forward-auth`: the hot path. A host that is not exactly `{id}.{PREVIEW_DOMAIN}`, or
   * whose project has no preview, gets 404 and records nothing; a project remembered as having
   * one is answered from memory.
   */
  forwardAuth = (c: Context): Response | Promise<Response> => {
    const header = headerReader(c);
    const host = header("x-forwarded-host");
    const projectId = this.#projectOf(host);
    if (!projectId) return c.text("unknown preview host\n", 404);
    const known = this.#known.get(projectId);
    if (known && known.until > Date.now()) return known.live ? this.#pass(c, header, projectId, host!) : c.text("no preview here\n", 404);
    return this.#lookUp(projectId).then((live) => {
      if (live === "busy") return c.text("busy, try again\n", 503);
      return live ? this.#pass(c, header, projectId, host!) : c.text("no preview here\n", 404);
    });
  };

  /** Forward-auth for a project that has a preview: the access gate, then activity. */
  #pass(c: Context, header: (name: string) => string | undefined, projectId: ProjectId, host: string): Response {
    const gate = this.gate(projectId, host.trim(), header("x-forwarded-uri") ?? "/", header("x-forwarded-proto"), header("cookie"));
    if (gate.allow === false) {
      c.header("Cache-Control", "no-store");
      return c.html(UNAUTHORIZED_PAGE, 401);
    }
    this.deps.tracker.touch(projectId);
    if (gate.allow === "redirect") {
      if (gate.cookie) c.header("Set-Cookie", gate.cookie);
      c.header("Cache-Control", "no-store");
      return c.redirect(gate.location, 302);
    }
    return c.body(null, 200);
  }

  /** Whether the project has a preview now (one read, remembered); "busy": too many reads at once. */
  async #lookUp(projectId: ProjectId): Promise<boolean | "busy"> {
    if (this.#lookups >= LOOKUPS_AT_ONCE) return "busy";
    this.#lookups++;
    try {
      const row = await this.deps.store.get(projectId);
      const live = hasPreview(row);
      setNewest(this.#known, projectId, { live, until: Date.now() + (live ? KNOWN_TTL_MS : UNKNOWN_TTL_MS) }, KNOWN_MEMORY);
      return live;
    } finally {
      this.#lookups--;
    }
  }

  /**
   * The wake page, as a middleware in front of everything but forward-auth (its route comes
   * first and always answers, so it never gets here): requests whose `Host` is under the preview
   * domain are the catch-all router's; everything else goes on to the API.
   */
  wake: MiddlewareHandler = async (c, next) => {
    const header = headerReader(c);
    const host = header("host");
    if (!isPreviewHost(host, this.deps.domain)) return next();
    c.header("Cache-Control", "no-store");
    const projectId = this.#projectOf(host);
    if (!projectId) return c.html(NOT_FOUND_PAGE, 404);
    const url = new URL(c.req.url);
    const gate = this.gate(projectId, host!.trim(), url.pathname + url.search, header("x-forwarded-proto"), header("cookie"));
    if (gate.allow === false) return c.html(UNAUTHORIZED_PAGE, 401);
    if (gate.allow === "redirect") {
      if (gate.cookie) c.header("Set-Cookie", gate.cookie);
      return c.redirect(gate.location, 302);
    }
    const row = await this.deps.store.get(projectId);
    if (!hasPreview(row)) return c.html(NOT_FOUND_PAGE, 404);
    this.deps.tracker.touch(projectId);
    if (row.status === "failed" && this.#failedSinceWake(projectId, row)) {
      // The launch this page asked for failed: no relaunch loop from the page's refreshes.
      return c.html(html("Your preview could not start", "Ask the site builder to rebuild it, or reload this page in a minute."), 503);
    }
    await this.#wakeOnce(projectId, row);
    c.header("Retry-After", String(WAKE_REFRESH_S));
    return c.html(
      html("Starting your preview…", "This page reloads by itself and shows the site as soon as it answers.", `<meta http-equiv="refresh" content="${WAKE_REFRESH_S}">`),
      503,
    );
  };

  /** `POST /previews/:projectId/activity` (under the API token): the builder UI's heartbeat. */
  heartbeat = async (c: Context): Promise<Response> => {
    const projectId = projectIdParam(c);
    if (typeof projectId !== "string") return projectId;
    const row = await this.deps.store.get(projectId);
    if (!hasPreview(row)) return c.json({ error: `no preview for project ${projectId}` }, 404);
    this.deps.tracker.touch(projectId);
    return c.json({ projectId, recorded: true }, 202);
  };

  /** `POST /previews/:projectId/links` (under the API token): a signed, expiring link. */
  links = async (c: Context): Promise<Response> => {
    const projectId = projectIdParam(c);
    if (typeof projectId !== "string") return projectId;
    if (this.deps.routing !== "traefik") {
      return c.json({ error: "links need PREVIEW_ROUTING=traefik: in port routing previews are served on loopback, without the access gate" }, 409);
    }
    if (!this.deps.signer) return c.json({ error: "PREVIEW_LINK_SECRET is not set: previews are public (PREVIEW_ACCESS=public), no link is needed" }, 409);
    const row = await this.deps.store.get(projectId);
    if (!hasPreview(row)) return c.json({ error: `no preview for project ${projectId}` }, 404);
    const { token, expiresAt } = this.deps.signer.sign(projectId);
    const url = `http://${projectId}.${this.deps.domain}/?${TOKEN_PARAM}=${encodeURIComponent(token)}`;
    this.deps.log?.info({ projectId, expiresAt }, "preview link issued");
    return c.json({ url, expiresAt: expiresAt.toISOString() }, 201);
  };

  /** `projectOfHost`, remembered per host string (bounded): the hot path parses each host once. */
  #projectOf(host: string | undefined): ProjectId | null {
    if (host === undefined) return null;
    const known = this.#hosts.get(host);
    if (known !== undefined) return known;
    const projectId = projectOfHost(host, this.deps.domain);
    if (this.#hosts.size >= HOST_MEMORY) this.#hosts.clear();
    this.#hosts.set(host, projectId);
    return projectId;
  }

  /**
   * Whether the launch this page asked for (within the last minute) has failed: the row is
   * failed in another version than the one the wake was sent for. The same version means the
   * launch has not even claimed the preview yet: the page keeps saying it is starting.
   */
  #failedSinceWake(projectId: ProjectId, row: PreviewRecord): boolean {
    return this.#recentlyWoken(projectId) && this.#woken.get(projectId)!.version !== versionOf(row);
  }

  #recentlyWoken(projectId: ProjectId): boolean {
    const last = this.#woken.get(projectId);
    return last !== undefined && Date.now() - last.at < WAKE_FAILED_RETRY_MS;
  }

  /**
   * `preview.requested`, at most once per wake: once per version of the row (status and update
   * time), so the page's refreshes send nothing more while the launch it asked for runs (the row
   * moves to `starting`, then `running`), and a preview stopped again later wakes again. A
   * launch or stop under way (`starting`, `stopping`) is left to finish; a preview found
   * `running` or `failed` within a minute of this page's last wake is not asked again.
   */
  async #wakeOnce(projectId: ProjectId, row: PreviewRecord): Promise<void> {
    if (row.status === "starting" || row.status === "stopping") return;
    const version = versionOf(row);
    if (this.#woken.get(projectId)?.version === version) return;
    // Running (Traefik has not picked the container up yet) or failed right after a wake of this
    // page: the wake is still the one sent; only a later visit may ask again.
    if (row.status !== "stopped" && this.#recentlyWoken(projectId)) return;
    setNewest(this.#woken, projectId, { version, at: Date.now() }, WAKE_MEMORY);
    try {
      await this.deps.requestLaunch(projectId);
      this.deps.log?.info({ projectId, status: row.status }, "wake: preview.requested sent");
    } catch (err) {
      // Sent again by the next refresh.
      this.#woken.delete(projectId);
      throw err;
    }
  }
}
