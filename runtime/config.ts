/**
 * The service's whole configuration, read from environment variables by one valibot schema.
 * `loadConfig` is called once at start-up (never at import time); a bad value stops start-up
 * with one message naming every bad variable. README.md and .env.example document each key.
 */
import path from "node:path";
import * as v from "valibot";

const LABEL_VALUE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;
const DOMAIN = /^(?=.{1,200}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

const optionalString = v.optional(v.pipe(v.string(), v.trim(), v.minLength(1)));

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

  STORAGE_PATH: v.optional(v.pipe(v.string(), v.minLength(1)), "./storage"),
  STORAGE_HOST_PATH: v.optional(
    v.pipe(v.string(), v.check((s) => path.posix.isAbsolute(s), "STORAGE_HOST_PATH must be an absolute path")),
  ),

  DOCKER_HOST: v.optional(
    v.pipe(
      v.string(),
      v.regex(/^(unix:\/\/\/.+|tcp:\/\/[^/]+:\d+)$/, "DOCKER_HOST must be unix:///path or tcp://host:port"),
      v.check((s) => s.startsWith("unix:") || parsesAsUrl(s.replace(/^tcp:/, "http:")), "DOCKER_HOST has an invalid host or port"),
    ),
  ),
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
  READY_TIMEOUT: v.pipe(
    // A first start of a real preview installs its dependencies: minutes, not seconds.
    v.optional(v.string(), "300s"),
    v.transform(parseDuration),
    v.number("READY_TIMEOUT must be a duration such as 90s or 2m"),
    v.minValue(100, "READY_TIMEOUT must be at least 100ms"),
    v.maxValue(3_600_000, "READY_TIMEOUT must be at most 1h"),
  ),
  API_TOKEN: v.optional(v.pipe(v.string(), v.minLength(16, "API_TOKEN must be at least 16 characters"))),

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
});

/** Rules across variables: `partialCheck` runs them even when unrelated variables are bad. */
const EnvSchema = v.pipe(
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
      [["INNGEST_DEV"], ["INNGEST_SIGNING_KEY"]],
      (e) => isDevMode(e.INNGEST_DEV) || Boolean(e.INNGEST_SIGNING_KEY),
      "INNGEST_SIGNING_KEY is required unless INNGEST_DEV is set (cloud mode verifies every request)",
    ),
    ["INNGEST_SIGNING_KEY"],
  ),
);

export type Env = v.InferOutput<typeof EnvSchema>;

export interface Config {
  port: number;
  host: string;
  logLevel: Env["LOG_LEVEL"];
  database: {
    /** null: embedded PGlite under `dataPath`. */
    url: string | null;
    driver: "pg" | "neon" | "pglite";
    dataPath: string;
    /** host:port[/path] of a WebSocket-to-TCP proxy for the Neon driver (local development). */
    neonWsProxy: string | null;
  };
  storage: {
    /** Where this process reads and writes site folders. Absolute. */
    path: string;
    /** The same folder as the Docker daemon sees it (bind-mount source). Absolute. */
    hostPath: string;
  };
  docker: { socketPath: string } | { host: string; port: number } | null;
  preview: {
    instanceId: string;
    image: string;
    network: string;
    domain: string;
    routing: "traefik" | "port";
    memoryBytes: number;
    nanoCpus: number;
    pidsLimit: number;
    readyTimeoutMs: number;
  };
  apiToken: string | null;
  inngest: {
    /** Dev mode: true, or the dev server URL; false for cloud mode. */
    dev: boolean | string;
    baseUrl: string | null;
    signingKey: string | null;
    signingKeyFallback: string | null;
    eventKey: string | null;
    env: string | null;
    serveOrigin: string | null;
    checkpointing: boolean;
  };
}

/** Variables whose values never appear in error messages (logs). */
const SECRET = /KEY|TOKEN|DATABASE_URL/;

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
}

const NEON_HOST = /\.neon\.(tech|build)$/i;

function pickDriver(env: Env): Config["database"]["driver"] {
  if (env.DATABASE_DRIVER !== "auto") return env.DATABASE_DRIVER;
  if (!env.DATABASE_URL) return "pglite";
  const host = new URL(env.DATABASE_URL).hostname;
  return NEON_HOST.test(host) ? "neon" : "pg";
}

function dockerTarget(raw: string | undefined): Config["docker"] {
  if (!raw) return null;
  if (raw.startsWith("unix://")) return { socketPath: raw.slice("unix://".length) };
  const u = new URL(raw.replace(/^tcp:/, "http:"));
  return { host: u.hostname, port: Number(u.port) };
}

function inngestDev(raw: string | undefined): boolean | string {
  if (!isDevMode(raw)) return false;
  return INNGEST_DEV_FLAG.test(raw!) ? true : raw!;
}

/** Parses the environment; throws `ConfigError` listing every bad variable. */
export function loadConfig(source: Record<string, string | undefined> = process.env, cwd = process.cwd()): Config {
  // Empty strings count as unset, as in most .env tooling.
  const input = Object.fromEntries(Object.entries(source).filter(([, val]) => val !== undefined && val !== ""));
  const parsed = v.safeParse(EnvSchema, input);
  if (!parsed.success) {
    const problems = parsed.issues.map((issue) => {
      const key = v.getDotPath(issue) ?? "environment";
      const got = issue.input === undefined || SECRET.test(key) ? "" : ` (got ${JSON.stringify(issue.input)})`;
      return `${key}: ${issue.message}${got}`;
    });
    throw new ConfigError(problems);
  }
  const env = parsed.output;
  const dev = inngestDev(env.INNGEST_DEV);

  const storagePath = path.resolve(cwd, env.STORAGE_PATH);
  return {
    port: env.PORT,
    host: env.HOST,
    logLevel: env.LOG_LEVEL,
    database: {
      url: env.DATABASE_URL ?? null,
      driver: pickDriver(env),
      dataPath: path.resolve(cwd, env.DATA_PATH),
      neonWsProxy: env.NEON_WS_PROXY ?? null,
    },
    storage: { path: storagePath, hostPath: env.STORAGE_HOST_PATH ?? storagePath },
    docker: dockerTarget(env.DOCKER_HOST),
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
    },
    apiToken: env.API_TOKEN ?? null,
    inngest: {
      dev,
      baseUrl: env.INNGEST_BASE_URL ?? null,
      signingKey: env.INNGEST_SIGNING_KEY ?? null,
      signingKeyFallback: env.INNGEST_SIGNING_KEY_FALLBACK ?? null,
      eventKey: env.INNGEST_EVENT_KEY ?? null,
      env: env.INNGEST_ENV ?? null,
      serveOrigin: env.INNGEST_SERVE_ORIGIN ?? null,
      checkpointing: env.INNGEST_CHECKPOINTING,
    },
  };
}
