/**
 * The service's whole configuration, described once: one valibot schema reads the environment
 * variables, checks the rules across them and transforms them into the nested `Config`, whose type
 * is inferred from that schema. `loadConfig` is called once at start-up (never at import time); a
 * bad value stops start-up with one message naming every bad variable. README.md and .env.example
 * document each key.
 *
 * Adapters own their settings types (`DatabaseSettings`, `DockerConnection`); this file maps the
 * environment onto them.
 */
import os from "node:os";
import path from "node:path";
import * as v from "valibot";
import type { DockerConnection } from "../docker/settings.js";
import { PROJECTS_TABLE_PATTERN } from "../sql/projects.js";
import type { DatabaseSettings } from "../sql/settings.js";
import { DEFAULT_ANTHROPIC_MODEL, type ClaudeSettings } from "../diagnosis/settings.js";
import type { ObjectStoreSettings } from "../storage/object-store.js";

const LABEL_VALUE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;
const DOMAIN = /^(?=.{1,200}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

const optionalString = v.optional(v.pipe(v.string(), v.trim(), v.minLength(1)));

/** PROJECTS_DATABASE_URL=none: no project source, chosen explicitly (ops-fixes). */
export const NO_PROJECT_SOURCE = "none";

function parsesAsUrl(s: string): boolean {
  try {
    new URL(s);
    return true;
  } catch {
    return false;
  }
}

const INNGEST_DEV_FLAG = /^(1|0|true|false)$/i;
const isDevMode = (raw: string | undefined): boolean => raw !== undefined && !/^(0|false)$/i.test(raw);

/** "512m", "1g", "1073741824" -> bytes (binary units, as Docker reads them). */
export function parseBytes(input: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)b?$/i.exec(input.trim());
  if (!m) return undefined;
  const unit = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as "" | "k" | "m" | "g"];
  return Math.round(Number(m[1]) * unit);
}

/** "90", "90s", "2m", "1500ms" -> milliseconds; a bare number is seconds. */
export function parseDuration(input: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(input.trim());
  if (!m) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? "s") as "ms" | "s" | "m" | "h"];
  return Math.round(Number(m[1]) * unit);
}

// --- Docker engine address (DOCKER_HOST), as the docker CLI and docker-modem read it -------------

const DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock";
const DOCKER_HOST_FORMS = "unix:///path, tcp://host:port or ssh://[user@]host[:port]";

/** Where the engine listens: `DockerConnection` before TLS and agent come from the other variables. */
type DockerEndpoint =
  | Extract<DockerConnection, { protocol: "unix" }>
  | Omit<Extract<DockerConnection, { protocol: "tcp" }>, "tlsVerify" | "certPath">
  | Omit<Extract<DockerConnection, { protocol: "ssh" }>, "agent">;

/** A host name, IPv4 or bracketed IPv6 address, as a URL accepts it; brackets removed. */
function hostName(raw: string): string | undefined {
  try {
    const { hostname } = new URL(`http://${raw}`);
    return hostname === "" ? undefined : hostname.replace(/^\[(.*)\]$/, "$1");
  } catch {
    return undefined;
  }
}

function portNumber(raw: string): number | undefined {
  const port = Number(raw);
  return port >= 1 && port <= 65535 ? port : undefined;
}

/** DOCKER_HOST -> endpoint, or the reason it is refused. */
export function parseDockerHost(raw: string): DockerEndpoint | { error: string } {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(raw)?.[1]?.toLowerCase();
  if (scheme === undefined) return { error: `DOCKER_HOST must be ${DOCKER_HOST_FORMS}` };
  if (scheme === "unix") {
    const socketPath = raw.slice("unix://".length);
    return path.posix.isAbsolute(socketPath) && socketPath !== "/"
      ? { protocol: "unix", socketPath }
      : { error: "DOCKER_HOST must be unix:///absolute/path/to/docker.sock" };
  }
  if (scheme === "tcp") {
    const m = /^tcp:\/\/(\[[0-9a-f:.]+\]|[^/:@[\]?#]+):(\d{1,5})\/?$/i.exec(raw);
    if (!m) return { error: "DOCKER_HOST must be tcp://host:port (with a port, no user or path)" };
    const host = hostName(m[1]!);
    const port = portNumber(m[2]!);
    if (host === undefined || port === undefined) return { error: "DOCKER_HOST has an invalid host or port" };
    return { protocol: "tcp", host, port };
  }
  if (scheme === "ssh") {
    const m = /^ssh:\/\/(?:([^@/:?#]+)@)?(\[[0-9a-f:.]+\]|[^/:@[\]?#]+)(?::(\d{1,5}))?\/?$/i.exec(raw);
    if (!m) return { error: "DOCKER_HOST must be ssh://[user@]host[:port] (no password, no path)" };
    const host = hostName(m[2]!);
    const port = m[3] === undefined ? 22 : portNumber(m[3]);
    if (host === undefined || port === undefined) return { error: "DOCKER_HOST has an invalid host or port" };
    let username: string | null = null;
    if (m[1] !== undefined) {
      try {
        username = decodeURIComponent(m[1]);
      } catch {
        return { error: "DOCKER_HOST has an invalid user name" };
      }
    }
    return { protocol: "ssh", host, port, username };
  }
  return { error: `DOCKER_HOST must be ${DOCKER_HOST_FORMS}; the ${scheme}:// scheme is not supported` };
}

/** Docker's convention: DOCKER_TLS_VERIFY set to anything but "", "0" or "false" turns TLS on. */
const tlsVerifyOn = (raw: string): boolean => raw.trim() !== "" && !/^(0|false)$/i.test(raw.trim());

// --- Object storage (issue 9): MINIO_ENDPOINT, as the seed's stack gives it -----------------------

/** MINIO_ENDPOINT: `host`, `host:port` or an `http(s)://host[:port]` URL (the scheme then decides TLS). */
export type MinioEndpoint = { host: string; port: number | null; ssl: boolean | null };

export function parseMinioEndpoint(raw: string): MinioEndpoint | { error: string } {
  const forms = "MINIO_ENDPOINT must be host:port (such as minio:9000) or an http(s)://host[:port] URL";
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(raw)?.[1]?.toLowerCase();
  if (scheme !== undefined) {
    if (scheme !== "http" && scheme !== "https") return { error: `${forms}; the ${scheme}:// scheme is not supported` };
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return { error: `${forms} (not a valid URL)` };
    }
    if (url.username || url.password) return { error: "MINIO_ENDPOINT must not carry credentials: use MINIO_ACCESS_KEY and MINIO_SECRET_KEY" };
    if ((url.pathname !== "/" && url.pathname !== "") || url.search || url.hash) return { error: `${forms} (no path: the bucket is MINIO_BUCKET)` };
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    if (host === "") return { error: forms };
    return { host, port: url.port === "" ? null : Number(url.port), ssl: scheme === "https" };
  }
  const m = /^(\[[0-9a-f:.]+\]|[^/:@[\]?#\s]+)(?::(\d{1,5}))?$/i.exec(raw);
  if (!m) return { error: forms };
  const host = hostName(m[1]!);
  const port = m[2] === undefined ? null : portNumber(m[2]);
  if (host === undefined || port === undefined) return { error: "MINIO_ENDPOINT has an invalid host or port" };
  return { host, port, ssl: null };
}

/** S3 bucket naming rules (3-63 characters, lower case, digits, dots and hyphens). */
const BUCKET_NAME = /^(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const MINIO_OPTIONAL = ["MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_BUCKET", "MINIO_USE_SSL"] as const;

// --- end object storage --------------------------------------------------------------------------

// --- Schema pieces ---------------------------------------------------------------------------------

const intIn = (name: string, min: number, max: number, fallback: string) =>
  v.pipe(
    v.optional(v.string(), fallback),
    v.trim(),
    v.regex(/^\d+$/, `${name} must be a whole number`),
    v.transform(Number),
    v.minValue(min, `${name} must be at least ${min}`),
    v.maxValue(max, `${name} must be at most ${max}`),
  );

const bool = (fallback: string) =>
  v.pipe(
    v.optional(v.string(), fallback),
    v.trim(),
    v.toLowerCase(),
    v.picklist(["1", "0", "true", "false", "yes", "no", ""], "must be true or false"),
    v.transform((s) => s === "1" || s === "true" || s === "yes"),
  );

/** A duration variable ("90", "90s", "10m", "24h", "1500ms"), bounded. */
const duration = (name: string, fallback: string, min: number, max: number, example: string) =>
  v.pipe(
    v.optional(v.string(), fallback),
    v.transform(parseDuration),
    v.number(`${name} must be a duration such as ${example}`),
    v.minValue(min, `${name} must be at least ${formatMs(min)}`),
    v.maxValue(max, `${name} must be at most ${formatMs(max)}`),
  );

/** A trimmed variable parsed by `parse`, whose `{ error }` becomes the variable's issue. */
const parsedBy = <T extends object>(parse: (raw: string) => T | { error: string }) =>
  v.pipe(
    v.string(),
    v.trim(),
    v.rawTransform<string, T>(({ dataset, addIssue, NEVER }) => {
      const parsed = parse(dataset.value);
      if ("error" in parsed) {
        addIssue({ message: parsed.error });
        return NEVER;
      }
      return parsed;
    }),
  );

function formatMs(ms: number): string {
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/**
 * A cron schedule as Inngest takes it: five fields (minute hour day-of-month month day-of-week),
 * optionally preceded by `TZ=<zone> `.
 */
export function isCronSchedule(raw: string): boolean {
  const m = /^(?:TZ=[A-Za-z0-9_+\-/]+\s+)?(.*)$/.exec(raw.trim());
  const fields = (m?.[1] ?? "").split(/\s+/).filter(Boolean);
  return fields.length === 5 && fields.every((f) => /^[0-9A-Za-z*,/?LW#-]+$/.test(f));
}

/** One entry per environment variable. */
const EnvFields = v.object({
  // 0 binds any free port (tests, side-by-side instances).
  PORT: intIn("PORT", 0, 65535, "3000"),
  // Loopback by default: /api/inngest is unauthenticated in dev mode. Set 0.0.0.0 in a container.
  HOST: v.optional(v.string(), "127.0.0.1"),
  LOG_LEVEL: v.optional(v.picklist(["trace", "debug", "info", "warn", "error", "fatal", "silent"]), "info"),

  DATABASE_URL: v.optional(
    v.pipe(
      v.string(),
      v.trim(),
      v.regex(/^postgres(ql)?:\/\/.+/, "DATABASE_URL must be a postgres:// URL"),
      v.check(parsesAsUrl, "DATABASE_URL is not a valid URL"),
    ),
  ),
  DATABASE_DRIVER: v.optional(v.picklist(["auto", "pg", "neon", "pglite"]), "auto"),
  DATA_PATH: v.optional(v.pipe(v.string(), v.minLength(1)), "./.data"),
  NEON_WS_PROXY: optionalString,
  // pg and Neon: connection, statement and query timeout. A hung server must fail a query (a
  // retryable error), not hold a step or a request until it comes back. PGlite ignores it.
  DATABASE_TIMEOUT: duration("DATABASE_TIMEOUT", "10s", 100, 600_000, "10s or 1500ms"),

  STORAGE_PATH: v.optional(v.pipe(v.string(), v.minLength(1)), "./storage"),
  STORAGE_HOST_PATH: v.optional(
    v.pipe(v.string(), v.check((s) => path.posix.isAbsolute(s), "STORAGE_HOST_PATH must be an absolute path")),
  ),

  DOCKER_HOST: v.optional(parsedBy(parseDockerHost), DEFAULT_DOCKER_HOST),
  DOCKER_TLS_VERIFY: v.pipe(v.optional(v.string(), ""), v.transform(tlsVerifyOn)),
  DOCKER_CERT_PATH: v.optional(v.pipe(v.string(), v.minLength(1))),
  // The SSH agent holding the key for an ssh:// DOCKER_HOST (set by ssh-agent; a socket path).
  SSH_AUTH_SOCK: v.optional(v.pipe(v.string(), v.minLength(1))),

  INSTANCE_ID: v.optional(v.pipe(v.string(), v.regex(LABEL_VALUE, "INSTANCE_ID must be a label value (a-z, 0-9, '.', '_', '-')")), "previews"),
  PREVIEW_IMAGE: v.optional(v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9._\/:@-]*$/i, "PREVIEW_IMAGE must be an image reference")), "preview-base:latest"),
  PREVIEW_NETWORK: v.optional(v.pipe(v.string(), v.regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/, "PREVIEW_NETWORK must be a network name")), "sitebuilder-previews"),
  PREVIEW_DOMAIN: v.optional(v.pipe(v.string(), v.toLowerCase(), v.regex(DOMAIN, "PREVIEW_DOMAIN must be a DNS name")), "preview.localhost"),
  PREVIEW_ROUTING: v.optional(v.picklist(["traefik", "port"], "PREVIEW_ROUTING must be traefik or port"), "traefik"),
  PREVIEW_MEMORY: v.pipe(
    v.optional(v.string(), "1g"),
    v.transform(parseBytes),
    v.number("PREVIEW_MEMORY must be a size such as 512m or 1g"),
    v.minValue(6 * 1024 * 1024, "PREVIEW_MEMORY must be at least 6m (Docker's minimum)"),
  ),
  PREVIEW_CPUS: v.pipe(
    v.optional(v.string(), "1"),
    v.regex(/^\d+(\.\d+)?$/, "PREVIEW_CPUS must be a number of CPUs such as 0.5 or 2"),
    v.transform(Number),
    v.minValue(0.01, "PREVIEW_CPUS must be at least 0.01"),
    v.maxValue(64, "PREVIEW_CPUS must be at most 64"),
  ),
  PREVIEW_PIDS_LIMIT: intIn("PREVIEW_PIDS_LIMIT", 16, 1_000_000, "512"),
  // Isolation of untrusted previews (see README "Security"); the defaults are the safe ones.
  PREVIEW_USER: v.optional(
    v.pipe(
      v.string(),
      v.trim(),
      v.regex(/^\d{1,10}:\d{1,10}$/, 'PREVIEW_USER must be a numeric "uid:gid" such as 1000:1000'),
      v.check((s) => s.split(":").every((n) => Number(n) !== 0), "PREVIEW_USER must not be root (uid or gid 0): previews run unprivileged"),
    ),
    "1000:1000",
  ),
  PREVIEW_READ_ONLY_ROOT: bool("true"),
  PREVIEW_TMP_SIZE: v.pipe(
    v.optional(v.string(), "512m"),
    v.transform(parseBytes),
    v.number("PREVIEW_TMP_SIZE must be a size such as 256m or 1g"),
    v.minValue(1024 * 1024, "PREVIEW_TMP_SIZE must be at least 1m"),
  ),
  PREVIEW_EGRESS: bool("true"),
  PREVIEW_BRIDGE: v.optional(v.pipe(v.string(), v.regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/, "PREVIEW_BRIDGE must be a Linux interface name of at most 15 characters"))),
  // auto: iptables when this process can (root with an iptables binary), else off with a warning.
  // external (ops-fixes): a keeper (docker-compose.yml's `firewall` service, or
  // `preview-firewall watch` under systemd) manages the rules; this process installs none, checks
  // them at start-up when it can, and warns only when they are missing.
  PREVIEW_HOST_FIREWALL: v.optional(v.picklist(["auto", "iptables", "off", "external"], "PREVIEW_HOST_FIREWALL must be auto, iptables, off or external"), "auto"),
  // auto: required when running as root (who can look into previews' processes), else path.
  PREVIEW_MOUNT_CHECK: v.optional(v.picklist(["auto", "required", "path"], "PREVIEW_MOUNT_CHECK must be auto, required or path"), "auto"),
  PREVIEW_EGRESS_DENY: v.pipe(
    v.optional(v.string(), "169.254.0.0/16"),
    v.transform((s) => s.split(",").map((x) => x.trim()).filter(Boolean)),
    v.check(
      (list) => list.every((c) => /^(\d{1,3})(\.\d{1,3}){3}\/\d{1,2}$/.test(c) && c.split("/")[0]!.split(".").every((o) => Number(o) <= 255) && Number(c.split("/")[1]) <= 32),
      "PREVIEW_EGRESS_DENY must be comma-separated IPv4 CIDRs such as 169.254.0.0/16,10.0.0.0/8",
    ),
  ),
  // Trusted peers (issue 10, README "Deployment"): the router and this service as containers on
  // the preview network (fixed addresses outside its ip range); the host firewall lets them, and
  // only them, open connections to port 3000 there. Unset: none (router and probe on the host side).
  PREVIEW_TRUSTED_PEERS: v.pipe(
    v.optional(v.string(), ""),
    v.transform((s) => s.split(",").map((x) => x.trim()).filter(Boolean)),
    v.check(
      (list) => list.every((a) => /^(\d{1,3})(\.\d{1,3}){3}$/.test(a) && a.split(".").every((o) => Number(o) <= 255)),
      "PREVIEW_TRUSTED_PEERS must be comma-separated IPv4 addresses such as 172.29.0.2,172.29.0.3",
    ),
  ),
  // A first start of a real preview installs its dependencies: minutes, not seconds.
  READY_TIMEOUT: duration("READY_TIMEOUT", "300s", 100, 3_600_000, "90s or 2m"),
  API_TOKEN: v.optional(v.pipe(v.string(), v.minLength(16, "API_TOKEN must be at least 16 characters"))),

  // The sweep (README "Sweep"): when it runs, what it removes, and its guards.
  SWEEP_CRON: v.optional(
    v.pipe(v.string(), v.trim(), v.check(isCronSchedule, "SWEEP_CRON must be a cron schedule of 5 fields such as */15 * * * * (optionally TZ=Zone first)")),
    "*/15 * * * *",
  ),
  STOPPED_RETENTION: duration("STOPPED_RETENTION", "24h", 60_000, 365 * 24 * 3_600_000, "24h or 90m"),
  SWEEP_GRACE: duration("SWEEP_GRACE", "10m", 0, 24 * 3_600_000, "10m"),
  SWEEP_MAX_ORPHAN_FRACTION: v.pipe(
    v.optional(v.string(), "0.5"),
    v.trim(),
    v.regex(/^(0(\.\d+)?|1(\.0+)?)$/, "SWEEP_MAX_ORPHAN_FRACTION must be a number from 0 to 1 such as 0.5"),
    v.transform(Number),
  ),
  // 16: removals are CPU-bound in the engine; on 2 cores 16 at once beat 8 (bench/sweep.ts).
  SWEEP_CONCURRENCY: intIn("SWEEP_CONCURRENCY", 1, 64, "16"),
  // The orchestrator's projects (read only). Unset: DATABASE_URL when that is Postgres.
  // "none" (ops-fixes): no project source, whatever DATABASE_URL is (docker-compose.yml makes
  // the operator choose: its own Postgres has no projects table).
  PROJECTS_DATABASE_URL: v.optional(
    v.pipe(
      v.string(),
      v.trim(),
      v.check((s) => s === NO_PROJECT_SOURCE || /^postgres(ql)?:\/\/.+/.test(s), "PROJECTS_DATABASE_URL must be a postgres:// URL or none"),
      v.check((s) => s === NO_PROJECT_SOURCE || parsesAsUrl(s), "PROJECTS_DATABASE_URL is not a valid URL"),
    ),
  ),
  PROJECTS_TABLE: v.optional(
    v.pipe(v.string(), v.trim(), v.regex(PROJECTS_TABLE_PATTERN, "PROJECTS_TABLE must be a table name such as projects or orchestrator.projects (a-z, 0-9, _)")),
    "projects",
  ),

  // The Inngest SDK's own variables, validated here and passed to the client explicitly.
  INNGEST_DEV: v.optional(
    v.pipe(v.string(), v.trim(), v.check((s) => INNGEST_DEV_FLAG.test(s) || /^https?:\/\/./.test(s), "INNGEST_DEV must be 1, 0 or the dev server URL")),
  ),
  INNGEST_BASE_URL: v.optional(v.pipe(v.string(), v.url("INNGEST_BASE_URL must be a URL"))),
  INNGEST_SIGNING_KEY: optionalString,
  INNGEST_SIGNING_KEY_FALLBACK: optionalString,
  INNGEST_EVENT_KEY: optionalString,
  INNGEST_ENV: optionalString,
  INNGEST_SERVE_ORIGIN: v.optional(v.pipe(v.string(), v.url("INNGEST_SERVE_ORIGIN must be a URL"))),
  INNGEST_CHECKPOINTING: bool("true"),
  // Dev mode takes unsigned calls: off loopback only when this says so explicitly.
  ALLOW_UNSIGNED_REMOTE: bool("false"),

  // Activity, wake, access and capacity (issue 7; README "Activity, wake, access, capacity").
  ACTIVITY_EVENT_INTERVAL: duration("ACTIVITY_EVENT_INTERVAL", "60s", 1_000, 3_600_000, "90s, 5m or 1h"),
  ACTIVITY_FLUSH_INTERVAL: duration("ACTIVITY_FLUSH_INTERVAL", "5s", 100, 300_000, "90s, 5m or 1h"),
  IDLE_TIMEOUT: duration("IDLE_TIMEOUT", "1h", 60_000, 7 * 24 * 3_600_000, "90s, 5m or 1h"),
  // Default depends on API_TOKEN (token when set, else public): resolved in the transform.
  PREVIEW_ACCESS: v.optional(v.picklist(["public", "token"], "PREVIEW_ACCESS must be public or token")),
  PREVIEW_LINK_TTL: duration("PREVIEW_LINK_TTL", "24h", 60_000, 366 * 24 * 3_600_000, "90s, 5m or 1h"),
  PREVIEW_LINK_SECRET: v.optional(v.pipe(v.string(), v.minLength(32, "PREVIEW_LINK_SECRET must be at least 32 characters"))),
  // Traefik middleware every preview router uses (declared once, in docker-compose.yml).
  PREVIEW_AUTH_MIDDLEWARE: v.optional(
    v.pipe(v.string(), v.trim(), v.regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*(@[a-z0-9]+)?$/, "PREVIEW_AUTH_MIDDLEWARE must be a Traefik middleware name such as preview-auth@docker")),
    "preview-auth@docker",
  ),
  // GET /metrics (issue 10; README "Metrics"): how long a scrape waits for previews per status.
  METRICS_QUERY_TIMEOUT: duration("METRICS_QUERY_TIMEOUT", "2s", 100, 60_000, "2s or 500ms"),
  // Unset, "unlimited" or 0: no cap.
  MAX_RUNNING_PREVIEWS: v.pipe(
    v.optional(v.string(), "unlimited"),
    v.trim(),
    v.toLowerCase(),
    v.regex(/^(unlimited|\d{1,6})$/, "MAX_RUNNING_PREVIEWS must be a whole number of previews, or unlimited"),
    v.transform((s) => (s === "unlimited" || Number(s) === 0 ? null : Number(s))),
  ),

  // --- First contact (issue 10): `npm run dev` builds PREVIEW_IMAGE from docker/preview-base/ when
  // missing, FROM this Node image (an Alpine-based Node 20; a mirror's copy where Docker Hub is out of reach).
  PREVIEW_NODE_IMAGE: v.optional(v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9._\/:@-]*$/i, "PREVIEW_NODE_IMAGE must be an image reference")), "node:20-alpine"),

  // Failure diagnosis (issue 9; README "Failure diagnosis"). No ANTHROPIC_API_KEY: diagnose-preview
  // is not registered. ANTHROPIC_BASE_URL as the SDK reads it, passed explicitly.
  ANTHROPIC_API_KEY: optionalString,
  ANTHROPIC_BASE_URL: v.optional(
    v.pipe(v.string(), v.trim(), v.url("ANTHROPIC_BASE_URL must be a URL such as https://api.anthropic.com"), v.regex(/^https?:\/\//i, "ANTHROPIC_BASE_URL must be an http(s) URL")),
  ),
  ANTHROPIC_MODEL: v.optional(
    v.pipe(v.string(), v.trim(), v.regex(/^[a-zA-Z0-9][a-zA-Z0-9._:@/-]{0,127}$/, "ANTHROPIC_MODEL must be a model id such as claude-sonnet-5-5")),
    DEFAULT_ANTHROPIC_MODEL,
  ),
  ANTHROPIC_MAX_TOKENS: intIn("ANTHROPIC_MAX_TOKENS", 16, 8192, "600"),
  ANTHROPIC_TIMEOUT: duration("ANTHROPIC_TIMEOUT", "60s", 1_000, 600_000, "60s or 2m"),

  // Object storage (issue 9; README "Object storage"). Every MINIO_* unset: off, the local site
  // folder is the only copy. MINIO_ENDPOINT set: the keys are required (checked below).
  MINIO_ENDPOINT: v.optional(parsedBy(parseMinioEndpoint)),
  MINIO_ACCESS_KEY: optionalString,
  MINIO_SECRET_KEY: optionalString,
  MINIO_USE_SSL: v.optional(
    v.pipe(v.string(), v.trim(), v.toLowerCase(), v.picklist(["1", "0", "true", "false", "yes", "no"], "MINIO_USE_SSL must be true or false"), v.transform((s) => s === "1" || s === "true" || s === "yes")),
  ),
  MINIO_BUCKET: v.optional(v.pipe(v.string(), v.trim(), v.regex(BUCKET_NAME, "MINIO_BUCKET must be an S3 bucket name (3-63 characters: a-z, 0-9, '.', '-')"))),
  MINIO_TIMEOUT: duration("MINIO_TIMEOUT", "30s", 1_000, 600_000, "30s or 2m"),
  MINIO_CONCURRENCY: intIn("MINIO_CONCURRENCY", 1, 128, "16"),
});

type Env = v.InferOutput<typeof EnvFields>;

// --- Mapping onto the adapters' settings ---------------------------------------------------------

const NEON_HOST = /\.neon\.(tech|build)$/i;

/** 127.0.0.0/8, ::1 and localhost: addresses no other machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || /^127(\.\d{1,3}){3}$/.test(h);
}

function databaseSettings(env: Env, cwd: string): DatabaseSettings {
  let driver: DatabaseSettings["driver"];
  if (env.DATABASE_DRIVER !== "auto") driver = env.DATABASE_DRIVER;
  else if (!env.DATABASE_URL) driver = "pglite";
  else driver = NEON_HOST.test(new URL(env.DATABASE_URL).hostname) ? "neon" : "pg";
  return {
    driver,
    url: env.DATABASE_URL ?? null,
    dataPath: path.resolve(cwd, env.DATA_PATH),
    neonWsProxy: env.NEON_WS_PROXY ?? null,
    timeoutMs: env.DATABASE_TIMEOUT,
  };
}

/**
 * Where the sweep reads which projects exist: PROJECTS_DATABASE_URL, else DATABASE_URL when the
 * state lives in Postgres (pg or Neon); null (no project source) with embedded PGlite or with
 * PROJECTS_DATABASE_URL=none.
 */
function projectsSource(env: Env, state: DatabaseSettings): { database: DatabaseSettings; table: string } | null {
  if (env.PROJECTS_DATABASE_URL === NO_PROJECT_SOURCE) return null;
  const url = env.PROJECTS_DATABASE_URL ?? (state.driver !== "pglite" ? state.url : null);
  if (!url) return null;
  const driver = url === state.url && state.driver !== "pglite" ? state.driver : NEON_HOST.test(new URL(url).hostname) ? "neon" : "pg";
  return { database: { ...state, driver, url }, table: env.PROJECTS_TABLE };
}

function dockerConnection(env: Env, cwd: string): DockerConnection {
  const endpoint = env.DOCKER_HOST;
  if (endpoint.protocol === "unix") return endpoint;
  if (endpoint.protocol === "ssh") return { ...endpoint, agent: env.SSH_AUTH_SOCK ?? null };
  const tlsVerify = env.DOCKER_TLS_VERIFY;
  const certPath =
    env.DOCKER_CERT_PATH !== undefined
      ? path.resolve(cwd, env.DOCKER_CERT_PATH)
      : tlsVerify
        ? path.join(os.homedir(), ".docker")
        : null;
  return { ...endpoint, tlsVerify, certPath };
}

/** MINIO_* -> the object store's settings and the download concurrency; null when off. */
function objectStorageSettings(env: Env): { store: ObjectStoreSettings; concurrency: number } | null {
  const endpoint = env.MINIO_ENDPOINT;
  if (!endpoint || !env.MINIO_ACCESS_KEY || !env.MINIO_SECRET_KEY) return null;
  const useSSL = endpoint.ssl ?? env.MINIO_USE_SSL ?? false;
  return {
    store: {
      endPoint: endpoint.host,
      port: endpoint.port ?? (useSSL ? 443 : 80),
      useSSL,
      accessKey: env.MINIO_ACCESS_KEY,
      secretKey: env.MINIO_SECRET_KEY,
      bucket: env.MINIO_BUCKET ?? "sitebuilder",
      timeoutMs: env.MINIO_TIMEOUT,
    },
    concurrency: env.MINIO_CONCURRENCY,
  };
}

/** Dev mode: true, or the dev server URL; false for cloud mode. */
function inngestDev(raw: string | undefined): boolean | string {
  if (raw === undefined || !isDevMode(raw)) return false;
  return INNGEST_DEV_FLAG.test(raw) ? true : raw;
}

/** PREVIEW_ACCESS, or its default: token when API_TOKEN is set, else public. */
function accessMode(e: { PREVIEW_ACCESS?: "public" | "token" | undefined; API_TOKEN?: string | undefined }): "public" | "token" {
  return e.PREVIEW_ACCESS ?? (e.API_TOKEN ? "token" : "public");
}

/** Claude for diagnose-preview, or null without ANTHROPIC_API_KEY (the function is then off). */
function diagnosisSettings(env: Env): ClaudeSettings | null {
  if (!env.ANTHROPIC_API_KEY) return null;
  return {
    apiKey: env.ANTHROPIC_API_KEY,
    baseUrl: env.ANTHROPIC_BASE_URL ?? null,
    model: env.ANTHROPIC_MODEL,
    maxTokens: env.ANTHROPIC_MAX_TOKENS,
    timeoutMs: env.ANTHROPIC_TIMEOUT,
  };
}

// --- The schema --------------------------------------------------------------------------------

/**
 * The configuration schema: environment variables -> rules across variables -> `Config`.
 * Relative paths (DATA_PATH, STORAGE_PATH, DOCKER_CERT_PATH) resolve against `cwd`; the type of
 * the schema, and so `Config`, does not depend on it.
 * Cross-variable rules use `partialCheck`, so they run even when unrelated variables are bad.
 */
export function configSchema(cwd: string) {
  return v.pipe(
    EnvFields,
    v.forward(
      v.partialCheck(
        [["DATABASE_DRIVER"], ["DATABASE_URL"]],
        (e) => !(e.DATABASE_DRIVER === "pglite" && e.DATABASE_URL),
        "DATABASE_DRIVER pglite takes no DATABASE_URL",
      ),
      ["DATABASE_DRIVER"],
    ),
    v.forward(
      v.partialCheck(
        [["DATABASE_DRIVER"], ["DATABASE_URL"]],
        (e) => !((e.DATABASE_DRIVER === "pg" || e.DATABASE_DRIVER === "neon") && !e.DATABASE_URL),
        "DATABASE_URL is required when DATABASE_DRIVER is pg or neon",
      ),
      ["DATABASE_URL"],
    ),
    v.forward(
      v.partialCheck(
        [["DOCKER_HOST"], ["DOCKER_TLS_VERIFY"]],
        (e) => !e.DOCKER_TLS_VERIFY || e.DOCKER_HOST.protocol === "tcp",
        `DOCKER_TLS_VERIFY needs a tcp://host:port DOCKER_HOST; TLS does not apply to unix sockets or ssh (DOCKER_HOST defaults to ${DEFAULT_DOCKER_HOST})`,
      ),
      ["DOCKER_TLS_VERIFY"],
    ),
    v.forward(
      v.partialCheck(
        [["INNGEST_DEV"], ["INNGEST_SIGNING_KEY"]],
        (e) => isDevMode(e.INNGEST_DEV) || Boolean(e.INNGEST_SIGNING_KEY),
        "INNGEST_SIGNING_KEY is required unless INNGEST_DEV turns dev mode on (1, true or the dev server URL): cloud mode verifies every request",
      ),
      ["INNGEST_SIGNING_KEY"],
    ),
    v.forward(
      v.partialCheck(
        [["INNGEST_DEV"], ["INNGEST_SERVE_ORIGIN"]],
        (e) => isDevMode(e.INNGEST_DEV) || Boolean(e.INNGEST_SERVE_ORIGIN),
        "INNGEST_SERVE_ORIGIN is required in cloud mode (the public origin Inngest calls, e.g. https://previews.example.com): without it an unsigned sync could register the app at the URL of a forged Host header",
      ),
      ["INNGEST_SERVE_ORIGIN"],
    ),
    v.forward(
      v.partialCheck(
        [["INNGEST_DEV"], ["HOST"], ["INNGEST_SIGNING_KEY"], ["ALLOW_UNSIGNED_REMOTE"]],
        (e) => !isDevMode(e.INNGEST_DEV) || isLoopback(e.HOST) || Boolean(e.INNGEST_SIGNING_KEY) || e.ALLOW_UNSIGNED_REMOTE,
        "HOST must be a loopback address in dev mode (INNGEST_DEV), which takes unsigned calls: anyone who reaches the port could stop or remove previews. Set INNGEST_SIGNING_KEY, or ALLOW_UNSIGNED_REMOTE=1 if the network is yours alone",
      ),
      ["HOST"],
    ),
    // Object storage: all MINIO_* or none (a half configuration is refused, not ignored).
    v.forward(
      v.partialCheck(
        [["MINIO_ENDPOINT"], ["MINIO_ACCESS_KEY"]],
        (e) => !e.MINIO_ENDPOINT || Boolean(e.MINIO_ACCESS_KEY),
        "MINIO_ACCESS_KEY is required when MINIO_ENDPOINT is set (object storage needs MINIO_ACCESS_KEY and MINIO_SECRET_KEY; unset every MINIO_* to turn it off)",
      ),
      ["MINIO_ACCESS_KEY"],
    ),
    v.forward(
      v.partialCheck(
        [["MINIO_ENDPOINT"], ["MINIO_SECRET_KEY"]],
        (e) => !e.MINIO_ENDPOINT || Boolean(e.MINIO_SECRET_KEY),
        "MINIO_SECRET_KEY is required when MINIO_ENDPOINT is set (object storage needs MINIO_ACCESS_KEY and MINIO_SECRET_KEY; unset every MINIO_* to turn it off)",
      ),
      ["MINIO_SECRET_KEY"],
    ),
    v.forward(
      v.partialCheck(
        [["MINIO_ENDPOINT"], ["MINIO_ACCESS_KEY"], ["MINIO_SECRET_KEY"], ["MINIO_BUCKET"], ["MINIO_USE_SSL"]],
        (e) => Boolean(e.MINIO_ENDPOINT) || MINIO_OPTIONAL.every((k) => e[k] === undefined),
        `MINIO_ENDPOINT is required when any of ${MINIO_OPTIONAL.join(", ")} is set (object storage is off only when every MINIO_* is unset)`,
      ),
      ["MINIO_ENDPOINT"],
    ),
    v.forward(
      v.partialCheck(
        [["MINIO_ENDPOINT"], ["MINIO_USE_SSL"]],
        (e) => e.MINIO_ENDPOINT?.ssl == null || e.MINIO_USE_SSL === undefined || e.MINIO_USE_SSL === e.MINIO_ENDPOINT.ssl,
        "MINIO_USE_SSL contradicts the scheme of MINIO_ENDPOINT (https:// is TLS, http:// is not): drop one of them",
      ),
      ["MINIO_USE_SSL"],
    ),
    v.forward(
      v.partialCheck(
        [["PREVIEW_ACCESS"], ["API_TOKEN"], ["PREVIEW_LINK_SECRET"]],
        (e) => accessMode(e) === "public" || Boolean(e.PREVIEW_LINK_SECRET),
        "PREVIEW_LINK_SECRET (32+ characters) is required when PREVIEW_ACCESS is token (the default when API_TOKEN is set); or set PREVIEW_ACCESS=public",
      ),
      ["PREVIEW_LINK_SECRET"],
    ),
    v.transform((env) => {
      const storagePath = path.resolve(cwd, env.STORAGE_PATH);
      const database = databaseSettings(env, cwd);
      return {
        port: env.PORT,
        host: env.HOST,
        logLevel: env.LOG_LEVEL,
        database,
        storage: {
          /** Where this process reads and writes site folders. Absolute. */
          path: storagePath,
          /** The same folder as the Docker daemon sees it (bind-mount source). Absolute. */
          hostPath: env.STORAGE_HOST_PATH ?? storagePath,
        },
        docker: dockerConnection(env, cwd),
        preview: {
          instanceId: env.INSTANCE_ID,
          image: env.PREVIEW_IMAGE,
          network: env.PREVIEW_NETWORK,
          domain: env.PREVIEW_DOMAIN,
          routing: env.PREVIEW_ROUTING,
          memoryBytes: env.PREVIEW_MEMORY,
          nanoCpus: Math.round(env.PREVIEW_CPUS * 1e9),
          pidsLimit: env.PREVIEW_PIDS_LIMIT,
          readyTimeoutMs: env.READY_TIMEOUT,
          user: env.PREVIEW_USER,
          readOnlyRootFs: env.PREVIEW_READ_ONLY_ROOT,
          tmpBytes: env.PREVIEW_TMP_SIZE,
          egress: env.PREVIEW_EGRESS,
          /** undefined: derived from the network name by the Docker adapter. */
          bridgeName: env.PREVIEW_BRIDGE,
          hostFirewall: env.PREVIEW_HOST_FIREWALL,
          egressDeny: env.PREVIEW_EGRESS_DENY,
          mountCheck: env.PREVIEW_MOUNT_CHECK,
          /** Addresses on the preview network allowed to reach port 3000 there (issue 10). */
          trustedPeers: env.PREVIEW_TRUSTED_PEERS,
        },
        /** `npm run dev` only: the base the preview image is built FROM when it is missing (issue 10). */
        previewBuild: { nodeImage: env.PREVIEW_NODE_IMAGE },
        apiToken: env.API_TOKEN ?? null,
        activity: {
          eventIntervalMs: env.ACTIVITY_EVENT_INTERVAL,
          flushIntervalMs: env.ACTIVITY_FLUSH_INTERVAL,
          idleTimeoutMs: env.IDLE_TIMEOUT,
        },
        access: {
          mode: accessMode(env),
          linkTtlMs: env.PREVIEW_LINK_TTL,
          /** Secret: never logged. */
          linkSecret: env.PREVIEW_LINK_SECRET ?? null,
          middleware: env.PREVIEW_AUTH_MIDDLEWARE,
        },
        /** diagnose-preview's Claude client; null (no ANTHROPIC_API_KEY): the function is not registered. */
        diagnosis: diagnosisSettings(env),
        /** GET /metrics (runtime/metrics.ts). */
        metrics: { queryTimeoutMs: env.METRICS_QUERY_TIMEOUT },
        /** MAX_RUNNING_PREVIEWS; null: unlimited. */
        maxRunningPreviews: env.MAX_RUNNING_PREVIEWS,
        /** Object storage (MINIO_*); null: off, the local site folder is the only copy. */
        objectStorage: objectStorageSettings(env),
        sweep: {
          cron: env.SWEEP_CRON,
          retentionMs: env.STOPPED_RETENTION,
          graceMs: env.SWEEP_GRACE,
          maxOrphanFraction: env.SWEEP_MAX_ORPHAN_FRACTION,
          concurrency: env.SWEEP_CONCURRENCY,
          /** Which projects exist (read only); null: no project source (orphans are containers without a row). */
          projects: projectsSource(env, database),
        },
        inngest: {
          /** Dev mode: true, or the dev server URL; false for cloud mode. */
          dev: inngestDev(env.INNGEST_DEV),
          baseUrl: env.INNGEST_BASE_URL ?? null,
          signingKey: env.INNGEST_SIGNING_KEY ?? null,
          signingKeyFallback: env.INNGEST_SIGNING_KEY_FALLBACK ?? null,
          eventKey: env.INNGEST_EVENT_KEY ?? null,
          env: env.INNGEST_ENV ?? null,
          serveOrigin: env.INNGEST_SERVE_ORIGIN ?? null,
          checkpointing: env.INNGEST_CHECKPOINTING,
        },
      };
    }),
  );
}

/** The type of the schema (the same for every `cwd`). */
export type ConfigSchema = ReturnType<typeof configSchema>;

/** The service's configuration: inferred from the schema, never written out by hand. */
export type Config = v.InferOutput<ConfigSchema>;

// --- Loading -------------------------------------------------------------------------------------

/** Variables whose values never appear in error messages (logs). */
// MINIO_ENDPOINT: a URL may carry credentials (refused, and then not echoed).
const SECRET = /KEY|TOKEN|DATABASE_URL|SECRET|MINIO_ENDPOINT/;

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
}

/**
 * What `npm run dev` sets when the environment does not: Inngest dev mode, and `port` routing
 * (previews on a loopback port: a first preview needs no Traefik).
 */
export function withDevDefaults(env: Record<string, string | undefined>): Record<string, string | undefined> {
  return { ...env, INNGEST_DEV: env.INNGEST_DEV || "1", PREVIEW_ROUTING: env.PREVIEW_ROUTING || "port" };
}

/**
 * Parses the environment; throws `ConfigError` listing every bad variable, one line each, as
 * `KEY: message (got "value")` (the raw value as given; never for secret variables).
 */
export function loadConfig(source: Record<string, string | undefined> = process.env, cwd: string = process.cwd()): Config {
  // Empty strings count as unset, as in most .env tooling.
  const input: Record<string, string> = {};
  for (const [key, value] of Object.entries(source)) if (value !== undefined && value !== "") input[key] = value;

  const parsed = v.safeParse(configSchema(cwd), input);
  if (parsed.success) return parsed.output;

  const problems = new Map<string, string>();
  for (const issue of parsed.issues) {
    const key = v.getDotPath(issue) ?? "environment";
    if (problems.has(key)) continue; // the first problem of a variable says enough
    const raw = Object.hasOwn(input, key) ? input[key] : undefined;
    const got = raw === undefined || SECRET.test(key) ? "" : ` (got ${JSON.stringify(raw)})`;
    problems.set(key, `${key}: ${issue.message}${got}`);
  }
  throw new ConfigError([...problems.values()]);
}
