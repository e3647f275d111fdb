/**
 * The HTTP host: the Inngest serve endpoint, health and readiness probes, and a small JSON API
 * over previews. Everything it needs is passed in; it opens nothing itself.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { Hono, type MiddlewareHandler } from "hono";
import type { Inngest, InngestFunction } from "inngest";
import { serve } from "inngest/hono";
import type { Logger } from "pino";
import { currentDiagnosis, type PreviewRecord, type PreviewRuntime, type PreviewStore } from "../functions/ports.js";
import { projectIdParam } from "./params.js";
import { FORWARD_AUTH_PATH, type PreviewRoutes } from "./preview-routes.js";
import { summarize, type SweepPlan } from "../functions/sweep-plan.js";
import { previewsSweepRequested } from "../inngest.config.js";
import { sendEvents } from "./inngest-client.js";
import { within } from "./timeout.js";

export interface AppDeps {
  inngest: Inngest;
  functions: readonly InngestFunction.Like[];
  store: PreviewStore;
  runtime: Pick<PreviewRuntime, "ping">;
  /** When set, `/previews*` require `Authorization: Bearer <token>`. */
  apiToken: string | null;
  /** Public origin Inngest should call back (behind a proxy); default: the request's. */
  serveOrigin?: string | null;
  /** How long a readiness check may take before it counts as failed. */
  readinessTimeoutMs?: number;
  log?: Logger;
  /** Forward-auth, the wake page, the heartbeat and links (runtime/preview-routes.ts). */
  previews?: PreviewRoutes;
  /**
   * `POST /sweep`: `plan` answers a dry run (reads only); a real sweep is requested by sending
   * `previews.sweep.requested` with `inngest`. Absent: no `/sweep` route.
   */
  sweep?: { plan(): Promise<SweepPlan> };
  /**
   * Readiness of the preview image (issue 10): resolves when the engine has it, else rejects with
   * a message naming it (`/readyz` answers 503 with it under `image`). Absent: not checked.
   */
  previewImage?: () => Promise<void>;
  /**
   * `GET /metrics` (runtime/metrics.ts): the Prometheus exposition. Open without `apiToken`
   * (keep the port private), `Authorization: Bearer <token>` with it. Absent: no route.
   */
  metrics?: { exposition(): Promise<{ contentType: string; body: string }> };
}

export const INNGEST_PATH = "/api/inngest";

/** The API's JSON shape of a preview (dates as ISO strings). */
export function previewJson(r: PreviewRecord) {
  return {
    projectId: r.projectId,
    status: r.status,
    url: r.url,
    containerId: r.containerId,
    reason: r.reason,
    logTail: r.logTail,
    stoppedAt: r.stoppedAt?.toISOString() ?? null,
    createdAt: r.createdAt.toISOString(),
    updatedAt: r.updatedAt.toISOString(),
    /** diagnose-preview's text for the current failure (or "diagnosis unavailable: ..."); null otherwise. */
    diagnosis: currentDiagnosis(r)?.text ?? null,
  };
}

async function check(name: string, probe: () => Promise<void>, timeoutMs: number): Promise<[string, string | null]> {
  try {
    await within(probe(), timeoutMs, `no answer within ${timeoutMs}ms`);
    return [name, null];
  } catch (err) {
    return [name, err instanceof Error ? err.message : String(err)];
  }
}

/**
 * A dependency momentarily out (down, hung, timed out, not migrated yet): an adapter's error that
 * carries `unavailable`, the dependency's name, and `publicReason`, what failed in words safe to
 * show (the SQL adapter's `DatabaseUnavailableError` does). Read structurally, so the host depends
 * on no adapter. The request may succeed later: 503, not 500.
 */
export function outage(err: unknown): { dependency: string; reason: string } | null {
  if (typeof err !== "object" || err === null) return null;
  const { unavailable, publicReason } = err as { unavailable?: unknown; publicReason?: unknown };
  if (typeof unavailable !== "string" || unavailable === "") return null;
  return { dependency: unavailable, reason: typeof publicReason === "string" && publicReason ? publicReason : "try again later" };
}

/** Seconds a client is asked to wait after a 503 for an outage. */
export const OUTAGE_RETRY_AFTER_S = 5;

const digest = (s: string) => createHash("sha256").update(s).digest();

/**
 * `Authorization: Bearer <token>` or 401, whatever is wrong with the header (missing, another
 * scheme, a wrong token). Compared in constant time over digests, so lengths leak nothing.
 */
function requireBearer(token: string): MiddlewareHandler {
  const expected = digest(token);
  return async (c, next) => {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header("authorization") ?? "");
    if (!match || !timingSafeEqual(digest(match[1]!), expected)) {
      c.header("WWW-Authenticate", 'Bearer realm="previews"');
      return c.json({ error: "unauthorized: send Authorization: Bearer <API_TOKEN>" }, 401);
    }
    await next();
  };
}

/**
 * `?flag`: absent, 0 or false -> false; 1, true or present without a value -> true (a bare
 * `?dryRun` must never run the real thing); anything else -> null (refused).
 */
function parseFlag(raw: string | undefined): boolean | null {
  if (raw === undefined || raw === "0" || raw === "false") return false;
  if (raw === "" || raw === "1" || raw === "true") return true;
  return null;
}

export function createApp(deps: AppDeps): Hono {
  const app = new Hono();
  // Forward-auth first: the hot path goes through no middleware. Then requests for a preview's
  // own host (Traefik's catch-all wake router), which never reach the API.
  if (deps.previews) {
    app.all(FORWARD_AUTH_PATH, deps.previews.forwardAuth);
    app.use("*", deps.previews.wake);
  }

  const inngestHandler = serve({
    client: deps.inngest,
    functions: deps.functions,
    servePath: INNGEST_PATH,
    ...(deps.serveOrigin ? { serveOrigin: deps.serveOrigin } : {}),
  });
  app.on(["GET", "PUT", "POST"], INNGEST_PATH, (c) => inngestHandler(c));

  app.get("/healthz", (c) => c.json({ status: "ok" }));

  app.get("/readyz", async (c) => {
    const timeoutMs = deps.readinessTimeoutMs ?? 2_000;
    const results = await Promise.all([
      check("docker", () => deps.runtime.ping(), timeoutMs),
      check("database", () => deps.store.ping(), timeoutMs),
      ...(deps.previewImage ? [check("image", deps.previewImage, timeoutMs)] : []),
    ]);
    const failing = Object.fromEntries(results.filter(([, err]) => err !== null));
    if (Object.keys(failing).length === 0) return c.json({ status: "ready" });
    return c.json({ status: "unavailable", failing }, 503);
  });

  // GET /metrics (issue 10): behind the API token when there is one, like /previews; Prometheus
  // sends it with `authorization: { credentials: <token> }` in its scrape config.
  if (deps.metrics) {
    const metrics = deps.metrics;
    const scrape = new Hono();
    if (deps.apiToken) scrape.use("*", requireBearer(deps.apiToken));
    scrape.get("/", async (c) => {
      const { contentType, body } = await metrics.exposition();
      c.header("Cache-Control", "no-store");
      return c.body(body, 200, { "Content-Type": contentType });
    });
    app.route("/metrics", scrape);
  }

  const api = new Hono();
  if (deps.apiToken) api.use("*", requireBearer(deps.apiToken));
  api.get("/", async (c) => c.json({ previews: (await deps.store.list()).map(previewJson) }));
  api.get("/:projectId", async (c) => {
    const projectId = projectIdParam(c);
    if (typeof projectId !== "string") return projectId;
    const record = await deps.store.get(projectId);
    if (!record) return c.json({ error: `no preview for project ${projectId}` }, 404);
    return c.json(previewJson(record));
  });
  if (deps.previews) {
    api.post("/:projectId/activity", deps.previews.heartbeat);
    api.post("/:projectId/links", deps.previews.links);
  }
  app.route("/previews", api);

  if (deps.sweep) {
    const sweep = deps.sweep;
    const sweepApi = new Hono();
    // A sweep removes containers: never open to anyone who reaches the port.
    if (deps.apiToken) sweepApi.use("*", requireBearer(deps.apiToken));
    else sweepApi.use("*", async (c) => c.json({ error: "POST /sweep needs API_TOKEN to be configured (it removes containers)" }, 403));
    sweepApi.post("/", async (c) => {
      // A misspelt `?dryrun=1` must not run the real thing: only known parameters are taken.
      const unknown = Object.keys(c.req.queries()).filter((k) => k !== "dryRun");
      if (unknown.length) return c.json({ error: `unknown query parameter ${unknown.map((k) => JSON.stringify(k)).join(", ")}: only dryRun is accepted` }, 400);
      const dryRun = parseFlag(c.req.query("dryRun"));
      if (dryRun === null) return c.json({ error: `dryRun must be 1, 0, true or false (got ${JSON.stringify(c.req.query("dryRun"))})` }, 400);
      if (dryRun) {
        const plan = await sweep.plan();
        return c.json({ ...summarize(plan, true), items: plan.items, skipped: plan.skipped, guards: plan.guards });
      }
      const { ids } = await sendEvents(() => deps.inngest.send(previewsSweepRequested.create({ dryRun: false })), previewsSweepRequested.name);
      deps.log?.info({ eventIds: ids }, "sweep requested over HTTP");
      return c.json({ requested: true, event: previewsSweepRequested.name, ids }, 202);
    });
    app.route("/sweep", sweepApi);
  }

  app.onError((err, c) => {
    const down = outage(err);
    if (down) {
      // Expected during an outage, and the message has the details: not an error of ours.
      deps.log?.warn({ err, method: c.req.method, path: c.req.path }, `request failed: ${down.dependency} unavailable`);
      c.header("Retry-After", String(OUTAGE_RETRY_AFTER_S));
      return c.json({ error: `${down.dependency} unavailable: ${down.reason}` }, 503);
    }
    deps.log?.error({ err, method: c.req.method, path: c.req.path }, "request failed");
    return c.json({ error: "internal error" }, 500);
  });
  return app;
}
