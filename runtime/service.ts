/**
 * The composition root: maps the parsed config onto each adapter's settings, builds every client,
 * wires the implementations into the functions and the HTTP app, and serves it. Nothing here runs
 * at import time.
 */
import { spawnSync } from "node:child_process";
import { mkdir, readFile } from "node:fs/promises";
import { serve, type ServerType } from "@hono/node-server";
import type { Inngest } from "inngest";
import { pino, type Logger } from "pino";
import { Registry } from "prom-client";
import { createDockerClient } from "../docker/client.js";
import { DockerPreviewRuntime } from "../docker/docker-runtime.js";
import { DockerPreviewInventory } from "../docker/inventory.js";
import { HostFirewall, runIptables, type IptablesRunner } from "../docker/host-firewall.js";
import { DockerNetworkAudit } from "../docker/network-audit.js";
import { bridgeName, egressDeny, previewUser } from "../docker/isolation.js";
import { assertImagePresent } from "../docker/preview-image.js";
import type { PreviewSettings } from "../docker/settings.js";
import Anthropic from "@anthropic-ai/sdk";
import { ClaudeDiagnoser, claudeClientOptions } from "../diagnosis/claude.js";
import { createDiagnosisFunctions, createFunctions, createSweepFunctions, type SweepDeps } from "../functions/index.js";
import { planSweep } from "../functions/sweep-plan.js";
import { strangerWarning, type PreviewNetworkAudit } from "../functions/ports.js";
import { connect, openDatabaseInBackground } from "../sql/connect.js";
import type { Database } from "../sql/database.js";
import { SqlPreviewStore } from "../sql/preview-store.js";
import { SqlActivityStore } from "../sql/activity-store.js";
import { previewRequested } from "../inngest.config.js";
import { LinkSigner } from "./access.js";
import { ActivityTracker } from "./activity.js";
import { PreviewRoutes } from "./preview-routes.js";
import { SqlProjectDirectory } from "../sql/projects.js";
import { SqlSweepLog } from "../sql/sweep-log.js";
import { LocalSiteFiles } from "../storage/site-files.js";
import { MinioObjectStore } from "../storage/object-store.js";
import { ObjectSites } from "../storage/site-objects.js";
import { createApp } from "./app.js";
import type { Config } from "./config.js";
import { createInngest, sendEvents } from "./inngest-client.js";
import { PromMetrics } from "./metrics.js";

export interface RunningService {
  config: Config;
  inngest: Inngest;
  db: Database;
  log: Logger;
  /** Activity recorded by forward-auth and heartbeats (flushed in the background). */
  activity: ActivityTracker;
  /** The port actually bound (differs from config.port when that is 0). */
  port: number;
  /**
   * Stops within `SHUTDOWN_GRACE_MS` plus the database close: readiness probes in flight end at
   * once (the run probes again on a live instance), other requests get the grace period, then
   * their connections are closed (Inngest retries an unanswered step). The background migration
   * loop stops (an attempt in flight ends within the database timeouts) before the pool closes.
   */
  close(): Promise<void>;
}

export const SHUTDOWN_GRACE_MS = 8_000;

/**
 * Whether this process may look into a preview's processes (`/proc/<pid>/root`, the mount
 * check): as root, or as the very uid:gid previews run as (the kernel lets a process read its
 * own user's processes when it holds every capability they hold, and previews hold none;
 * measured: the same uid reads it, another non-root uid gets EACCES). The non-root image runs
 * the service as PREVIEW_USER for that reason (README "Deployment").
 */
export function canLookIntoPreviews(previewUserSetting: string, uid = process.getuid?.(), gid = process.getgid?.()): boolean {
  return uid === 0 || previewUserSetting === `${uid}:${gid}`;
}

/** The Docker adapter's settings, from the parsed environment. */
export function previewSettings(
  config: Config,
  canFirewall: () => boolean = iptablesUsable,
  mayLookIntoPreviews: () => boolean = () => canLookIntoPreviews(config.preview.user),
): PreviewSettings {
  const { readyTimeoutMs: _readyTimeoutMs, hostFirewall, mountCheck, ...preview } = config.preview;
  return {
    ...preview,
    // external: a keeper installs the rules, this process never does (checked at start-up instead).
    hostFirewall: hostFirewall === "auto" ? (canFirewall() ? "iptables" : "off") : hostFirewall === "external" ? "off" : hostFirewall,
    mountCheck: mountCheck === "auto" ? (mayLookIntoPreviews() ? "required" : "path") : mountCheck,
    storageHostPath: config.storage.hostPath,
    authMiddleware: config.access.middleware,
  };
}

/**
 * The sweep's dependencies. The project source reuses the state database when it is the same
 * URL, else opens its own connection (lazily: a projects database that is down only trips the
 * sweep's guard, it never stops the host).
 */
async function sweepDeps(
  config: Config,
  log: Logger,
  db: Database,
  docker: ReturnType<typeof createDockerClient>,
  settings: PreviewSettings,
): Promise<{ sweep: SweepDeps; projectsDb: Database | null }> {
  const source = config.sweep.projects;
  let projectsDb: Database | null = null;
  let projects: SqlProjectDirectory | null = null;
  if (source) {
    const shared = source.database.url === config.database.url;
    projectsDb = shared ? null : await connect(source.database);
    const where = shared ? "the service's DATABASE_URL" : "PROJECTS_DATABASE_URL";
    projects = new SqlProjectDirectory(projectsDb ?? db, source.table, where);
  } else {
    log.info("sweep: no project source (PROJECTS_DATABASE_URL=none, or unset with embedded state): orphans are managed containers without a row");
  }
  const { projects: _source, ...sweepSettings } = config.sweep;
  const inventory = new DockerPreviewInventory(docker, settings, log);
  return {
    sweep: {
      inventory,
      // Strangers on the preview network (review F2): in each sweep plan and its audit log.
      network: new DockerNetworkAudit(docker, settings, inventory, log),
      projects,
      decisions: new SqlSweepLog(db),
      settings: { ...sweepSettings, idleTimeoutMs: config.activity.idleTimeoutMs },
    },
    projectsDb,
  };
}

/** Logs one warning per container on the preview network that is neither ours nor a trusted peer. */
async function warnStrangers(audit: PreviewNetworkAudit | undefined, log: Logger): Promise<void> {
  if (!audit) return;
  try {
    for (const s of await audit.strangers()) log.warn({ network: audit.network, containerId: s.containerId, name: s.name, address: s.address }, strangerWarning(audit.network, s));
  } catch (err) {
    log.warn({ err, network: audit.network }, "could not list the containers on the preview network");
  }
}

/**
 * diagnose-preview (issue 9): registered only with ANTHROPIC_API_KEY; without it the app serves
 * no such function and `preview.failed` triggers nothing more.
 */
function diagnosisFunctions(config: Config, inngest: Inngest, store: SqlPreviewStore, runtime: DockerPreviewRuntime, log: Logger) {
  const settings = config.diagnosis;
  if (!settings) {
    log.info("diagnose-preview off: ANTHROPIC_API_KEY is not set");
    return [];
  }
  const diagnoser = new ClaudeDiagnoser(new Anthropic(claudeClientOptions(settings)), settings);
  log.info({ model: settings.model, baseUrl: settings.baseUrl ?? "SDK default" }, "diagnose-preview on");
  return createDiagnosisFunctions(inngest, { diagnoser, store, secrets: runtime });
}

/**
 * The object store side (issue 9), when MINIO_* is set: site folders hydrate from the bucket, a
 * deleted project's objects go with it. The bucket is looked at in the background: a store that
 * is down or misconfigured is reported, not a reason not to serve (launches then fail, retryably
 * or for good, naming it).
 */
function objectStorage(config: Config, log: Logger): ObjectSites | null {
  const settings = config.objectStorage;
  if (!settings) return null;
  const store = new MinioObjectStore(settings.store);
  store.verify().then(
    () => log.info({ location: store.location, concurrency: settings.concurrency }, "object storage on"),
    (err: unknown) => log.error({ err, location: store.location }, "object storage not ready"),
  );
  return new ObjectSites(config.storage.path, store, { concurrency: settings.concurrency });
}

/** Whether this process can manage the host firewall itself: root, with an iptables binary. */
export function iptablesUsable(): boolean {
  if (process.getuid?.() !== 0) return false;
  return spawnSync("iptables", ["--version"], { stdio: "ignore", timeout: 5_000 }).status === 0;
}

/** One start-up line about the host firewall rules of the preview bridge. */
export interface FirewallNotice {
  level: "warn" | "info";
  fields: Record<string, unknown>;
  msg: string;
}

/**
 * What start-up says about the host firewall rules (README "Deployment"): nothing when this
 * process installs them itself (`iptables`); a warning when nobody is said to (`off`, or `auto`
 * without the permission); with `external` (a keeper such as docker-compose.yml's `firewall`
 * service manages them) the rules are checked when this process can (root with iptables, in the
 * host's network namespace) and a warning names the missing ones only; a process that cannot
 * check (the compose service: non-root, its own network namespace) says so at info level, the
 * keeper's health check being what verifies them there. Read only: never installs anything.
 */
export async function hostFirewallNotice(
  mode: Config["preview"]["hostFirewall"],
  settings: PreviewSettings,
  canCheck: () => boolean = iptablesUsable,
  run: IptablesRunner = runIptables,
): Promise<FirewallNotice | null> {
  if (settings.hostFirewall === "iptables") return null;
  const bridge = bridgeName(settings);
  // With trusted peers, the rules installed elsewhere must carry them (`--peers`), or the
  // router and the readiness probe reach no preview.
  const fields = { network: settings.network, bridge, trustedPeers: settings.trustedPeers ?? [] };
  if (mode !== "external") {
    return {
      level: "warn",
      fields,
      msg: "no host firewall rule on the preview bridge from this process: previews can reach host services unless the rules are installed by root (`node dist/scripts/preview-firewall.js install` or `watch`, as docker-compose.yml's firewall service does, then PREVIEW_HOST_FIREWALL=external; README: Security)",
    };
  }
  if (!canCheck()) {
    return {
      level: "info",
      fields,
      msg: "host firewall rules managed externally (PREVIEW_HOST_FIREWALL=external); not checked from this process (that needs root in the host's network namespace): the keeper's health check verifies them (`preview-firewall status`)",
    };
  }
  // The bridge's own rules only: a trusted peer's rules name its current bridge port, which the
  // keeper looks up (and its health check verifies); from here they could only be guessed.
  const firewall = HostFirewall.forBridge(bridge, egressDeny(settings), run, []);
  let present: boolean[];
  try {
    present = await firewall.status();
  } catch (err) {
    return { level: "warn", fields: { ...fields, err }, msg: "PREVIEW_HOST_FIREWALL=external: the host firewall rules of the preview bridge could not be checked; previews may reach host services until the keeper installs them" };
  }
  const missing = firewall.rules.filter((_, i) => !present[i]).map((r) => `${r.chain} ${r.spec.join(" ")}`);
  if (missing.length === 0) return { level: "info", fields: { ...fields, rules: firewall.rules.length }, msg: "host firewall rules of the preview bridge present (managed externally)" };
  return {
    level: "warn",
    fields: { ...fields, missing },
    msg: `PREVIEW_HOST_FIREWALL=external but ${missing.length} of ${firewall.rules.length} host firewall rules of the preview bridge are missing: previews can reach host services until the keeper (\`preview-firewall watch\`) installs them`,
  };
}

export async function startService(config: Config, log: Logger = pino({ level: config.logLevel })): Promise<RunningService> {
  await mkdir(config.storage.path, { recursive: true });
  // What is mounted into previews comes from here: a link at STORAGE_PATH/projects is refused.
  await new LocalSiteFiles(config.storage.path).verifyRoot();
  // pg and Neon: serve at once and migrate in the background until the database answers (a host
  // that refuses to start while the database is down cannot even say so). Until then the store
  // fails with a retryable "not ready": /previews answers 503, /readyz 503 naming the database,
  // Inngest steps retry. PGlite (in-process, never "down") opens and migrates here, as before.
  const driver = config.database.driver;
  const db = await openDatabaseInBackground(config.database, {
    onAttemptFailed: ({ attempt, error, retryInMs }) =>
      log.warn({ err: error, driver, attempt, retryInMs }, "database not ready: migrating failed, retrying"),
    onReady: ({ attempts, applied }) => log.info({ driver, attempts, applied }, "database ready"),
  });
  try {
    return await serveWith(config, log, db);
  } catch (err) {
    // e.g. the port is taken: release the database (PGlite holds its folder) before failing.
    await db.close().catch(() => undefined);
    throw err;
  }
}

async function serveWith(config: Config, log: Logger, db: Database): Promise<RunningService> {
  const docker = createDockerClient(config.docker);
  const settings = previewSettings(config);
  const firewallNotice = await hostFirewallNotice(config.preview.hostFirewall, settings);
  if (firewallNotice) log[firewallNotice.level](firewallNotice.fields, firewallNotice.msg);
  if ((await readFile("/proc/sys/fs/protected_hardlinks", "utf8").catch(() => "1")).trim() === "0") {
    log.warn({}, "fs.protected_hardlinks is 0: whoever writes storage can hard-link any host file into a site folder, and a race could hand it to the preview user; set it to 1 (README: Security)");
  }
  if (settings.mountCheck === "path") {
    log.warn({}, "PREVIEW_MOUNT_CHECK=path: what a preview mounts is not compared with the checked site folder, only the path is checked again after each start (README: Security)");
  }
  const runtime = new DockerPreviewRuntime(docker, settings, log);
  // At start-up, so that an existing network without isolation is reported now, not at the
  // first launch (and the host rules are in place). Docker may be down: not a reason not to serve.
  const networkReady = runtime.ensureNetwork().catch((err: unknown) => log.error({ err, network: settings.network }, "preview network not ready"));
  const store = new SqlPreviewStore(db);
  // The site folder is handed to the user the previews run as.
  const { uid, gid } = previewUser(settings);
  const site = new LocalSiteFiles(config.storage.path, { uid, gid });
  const inngest = createInngest(config.inngest, log);
  const shutdown = new AbortController();
  const activity = new SqlActivityStore(db);
  // One registry per service instance (never prom-client's global one): GET /metrics.
  const metrics = new PromMetrics({ registry: new Registry(), counts: store, queryTimeoutMs: config.metrics.queryTimeoutMs, log });

  // Object storage (MINIO_*): only when configured; otherwise the local folder is the only copy.
  const objects = objectStorage(config, log);
  const deps = {
    runtime,
    store,
    site,
    ...(objects ? { objects } : {}),
    readyTimeoutMs: config.preview.readyTimeoutMs,
    shutdown: shutdown.signal,
    activity,
    idleTimeoutMs: config.activity.idleTimeoutMs,
    metrics,
    ...(config.maxRunningPreviews !== null ? { capacity: { store: activity, max: config.maxRunningPreviews } } : {}),
  };
  const { sweep, projectsDb } = await sweepDeps(config, log, db, docker, settings);
  // Strangers on the preview network (review F2), once the network is checked: warned about at
  // start-up (and in every sweep plan), never touched. Docker may be down: not a reason not to serve.
  void networkReady.then(() => warnStrangers(sweep.network, log));
  const functions = [...createFunctions(inngest, deps), ...createSweepFunctions(inngest, deps, sweep), ...diagnosisFunctions(config, inngest, store, runtime, log)];
  const tracker = new ActivityTracker(activity, (events) => inngest.send(events), config.activity, log).start();
  const previews = new PreviewRoutes({
    domain: config.preview.domain,
    access: config.access.mode,
    signer: config.access.linkSecret ? new LinkSigner(config.access.linkSecret, config.access.linkTtlMs) : null,
    routing: config.preview.routing,
    tracker,
    store,
    requestLaunch: (projectId) => sendEvents(() => inngest.send(previewRequested.create({ projectId })), previewRequested.name),
    log,
  });
  const app = createApp({
    inngest,
    functions,
    store,
    runtime,
    apiToken: config.apiToken,
    serveOrigin: config.inngest.serveOrigin,
    log,
    previews,
    sweep: { plan: () => planSweep(store, sweep) },
    // A missing preview image makes every launch fail: not ready (issue 10).
    previewImage: () => assertImagePresent(docker, settings.image, log),
    metrics,
  });

  const server = await new Promise<ServerType>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, () => resolve(s));
    s.once("error", reject);
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  log.info({ port, inngestPath: "/api/inngest", dev: config.inngest.dev !== false, routing: config.preview.routing }, "previews service listening");

  let closing: Promise<void> | null = null;
  return {
    config,
    inngest,
    db,
    log,
    activity: tracker,
    port,
    close() {
      closing ??= (async () => {
        shutdown.abort();
        const http = server as ServerType & { closeIdleConnections?: () => void; closeAllConnections?: () => void };
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        http.closeIdleConnections?.();
        let timer: NodeJS.Timeout | undefined;
        const grace = new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            log.warn({ graceMs: SHUTDOWN_GRACE_MS }, "requests still in flight at shutdown; closing their connections");
            http.closeAllConnections?.();
            resolve();
          }, SHUTDOWN_GRACE_MS);
        });
        await Promise.race([closed, grace]);
        clearTimeout(timer);
        await tracker.close(); // the last activity marks, before the pool closes
        await networkReady; // settled (it never rejects): nothing is created after close()
        await projectsDb?.close().catch((err: unknown) => log.warn({ err }, "closing the projects database failed"));
        await db.close();
      })();
      return closing;
    },
  };
}
