/**
 * `loadConfig` as the process sees it: a plain record of environment variables in, a typed
 * `Config` or one `ConfigError` naming every bad variable out.
 */
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, parseBytes, parseDuration } from "../../runtime/config.js";

const CWD = "/srv/previews";
/** The smallest valid environment: dev mode (no signing key needed). */
const DEV = { INNGEST_DEV: "1" } as const;

function configError(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env, CWD);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(env)}`);
}

describe("loadConfig defaults", () => {
  const config = loadConfig({ ...DEV }, CWD);

  it("serves on 127.0.0.1:3000 at info level", () => {
    expect(config.port).toBe(3000);
    expect(config.host).toBe("127.0.0.1");
    expect(config.logLevel).toBe("info");
  });

  it("uses embedded PGlite under an absolute data path when DATABASE_URL is unset", () => {
    expect(config.database).toEqual({
      url: null,
      driver: "pglite",
      dataPath: path.join(CWD, ".data"),
      neonWsProxy: null,
    });
    expect(path.isAbsolute(config.database.dataPath)).toBe(true);
  });

  it("resolves storage to an absolute path and defaults the host path to it", () => {
    expect(config.storage.path).toBe(path.join(CWD, "storage"));
    expect(path.isAbsolute(config.storage.path)).toBe(true);
    expect(config.storage.hostPath).toBe(config.storage.path);
  });

  it("uses dockerode's default engine and traefik routing with bounded resources", () => {
    expect(config.docker).toBeNull();
    expect(config.preview).toEqual({
      instanceId: "previews",
      image: "preview-base:latest",
      network: "sitebuilder-previews",
      domain: "preview.localhost",
      routing: "traefik",
      memoryBytes: 1024 ** 3,
      nanoCpus: 1_000_000_000,
      pidsLimit: 512,
      readyTimeoutMs: 300_000,
    });
  });

  it("has no API token and runs Inngest in dev mode with checkpointing", () => {
    expect(config.apiToken).toBeNull();
    expect(config.inngest).toEqual({
      dev: true,
      baseUrl: null,
      signingKey: null,
      signingKeyFallback: null,
      eventKey: null,
      env: null,
      serveOrigin: null,
      checkpointing: true,
    });
  });

  it("reads process.cwd() when no cwd is given", () => {
    expect(loadConfig({ ...DEV }).storage.path).toBe(path.resolve(process.cwd(), "storage"));
  });

  it("treats empty strings as unset", () => {
    const c = loadConfig({ ...DEV, PORT: "", PREVIEW_ROUTING: "", DATABASE_URL: "", API_TOKEN: "" }, CWD);
    expect(c.port).toBe(3000);
    expect(c.preview.routing).toBe("traefik");
    expect(c.database.driver).toBe("pglite");
    expect(c.apiToken).toBeNull();
  });
});

describe("loadConfig explicit values", () => {
  it("parses every setting", () => {
    const c = loadConfig(
      {
        PORT: "8080",
        HOST: "127.0.0.1",
        LOG_LEVEL: "warn",
        DATA_PATH: "var/data",
        STORAGE_PATH: "/var/lib/previews/storage",
        STORAGE_HOST_PATH: "/srv/host/storage",
        DOCKER_HOST: "tcp://docker.internal:2375",
        INSTANCE_ID: "previews-eu.1",
        PREVIEW_IMAGE: "registry.local:5000/preview-base:1.2",
        PREVIEW_NETWORK: "previews_net",
        PREVIEW_DOMAIN: "Preview.Example.COM",
        PREVIEW_ROUTING: "port",
        PREVIEW_MEMORY: "512m",
        PREVIEW_CPUS: "0.5",
        PREVIEW_PIDS_LIMIT: "256",
        READY_TIMEOUT: "90s",
        API_TOKEN: "0123456789abcdef",
        INNGEST_DEV: "http://127.0.0.1:8288",
        INNGEST_EVENT_KEY: "evt",
        INNGEST_SERVE_ORIGIN: "https://previews.example.com",
        INNGEST_CHECKPOINTING: "false",
      },
      CWD,
    );
    expect(c.port).toBe(8080);
    expect(c.host).toBe("127.0.0.1");
    expect(c.logLevel).toBe("warn");
    expect(c.database.dataPath).toBe(path.join(CWD, "var/data"));
    expect(c.storage).toEqual({ path: "/var/lib/previews/storage", hostPath: "/srv/host/storage" });
    expect(c.docker).toEqual({ host: "docker.internal", port: 2375 });
    expect(c.preview).toEqual({
      instanceId: "previews-eu.1",
      image: "registry.local:5000/preview-base:1.2",
      network: "previews_net",
      domain: "preview.example.com",
      routing: "port",
      memoryBytes: 512 * 1024 ** 2,
      nanoCpus: 500_000_000,
      pidsLimit: 256,
      readyTimeoutMs: 90_000,
    });
    expect(c.apiToken).toBe("0123456789abcdef");
    expect(c.inngest.dev).toBe("http://127.0.0.1:8288");
    expect(c.inngest.eventKey).toBe("evt");
    expect(c.inngest.serveOrigin).toBe("https://previews.example.com");
    expect(c.inngest.checkpointing).toBe(false);
  });

  it("reads a unix DOCKER_HOST as a socket path", () => {
    expect(loadConfig({ ...DEV, DOCKER_HOST: "unix:///run/user/1000/docker.sock" }, CWD).docker).toEqual({
      socketPath: "/run/user/1000/docker.sock",
    });
  });

  it("accepts cloud mode with a signing key", () => {
    const c = loadConfig({ INNGEST_SIGNING_KEY: "signkey-prod-abc123", INNGEST_EVENT_KEY: "evt" }, CWD);
    expect(c.inngest.dev).toBe(false);
    expect(c.inngest.signingKey).toBe("signkey-prod-abc123");
  });

  it.each([
    ["0", false],
    ["false", false],
    ["FALSE", false],
    ["1", true],
    ["true", true],
    ["https://inngest.local", "https://inngest.local"],
  ] as const)("INNGEST_DEV=%s -> dev %s", (raw, dev) => {
    expect(loadConfig({ INNGEST_DEV: raw, INNGEST_SIGNING_KEY: "signkey-test-1" }, CWD).inngest.dev).toBe(dev);
  });
});

describe("loadConfig database driver", () => {
  const driver = (env: Record<string, string>) => loadConfig({ ...DEV, ...env }, CWD).database;

  it("picks pg for a postgres:// or postgresql:// URL", () => {
    expect(driver({ DATABASE_URL: "postgres://u:p@db.internal:5432/previews" })).toMatchObject({
      driver: "pg",
      url: "postgres://u:p@db.internal:5432/previews",
    });
    expect(driver({ DATABASE_URL: "postgresql://localhost/previews" }).driver).toBe("pg");
  });

  it("picks neon for a *.neon.tech host", () => {
    expect(driver({ DATABASE_URL: "postgres://u:p@ep-cool-123456.eu-central-1.aws.neon.tech/neondb?sslmode=require" }).driver).toBe(
      "neon",
    );
  });

  it("does not take a host that merely contains neon.tech for Neon", () => {
    expect(driver({ DATABASE_URL: "postgres://u:p@neon.tech.example.com/db" }).driver).toBe("pg");
  });

  it("lets DATABASE_DRIVER force the driver", () => {
    expect(driver({ DATABASE_DRIVER: "neon", DATABASE_URL: "postgres://u:p@localhost/db", NEON_WS_PROXY: "127.0.0.1:9000" })).toMatchObject({
      driver: "neon",
      neonWsProxy: "127.0.0.1:9000",
    });
    expect(driver({ DATABASE_DRIVER: "pg", DATABASE_URL: "postgres://u:p@ep-x.aws.neon.tech/db" }).driver).toBe("pg");
    expect(driver({ DATABASE_DRIVER: "pglite" }).driver).toBe("pglite");
  });

  it("refuses pglite with a URL and pg/neon without one", () => {
    expect(configError({ ...DEV, DATABASE_DRIVER: "pglite", DATABASE_URL: "postgres://localhost/db" }).message).toContain(
      "DATABASE_DRIVER",
    );
    expect(configError({ ...DEV, DATABASE_DRIVER: "pg" }).message).toContain("DATABASE_URL");
    expect(configError({ ...DEV, DATABASE_DRIVER: "neon" }).message).toContain("DATABASE_URL");
  });

  it("refuses a DATABASE_URL that is not a postgres URL", () => {
    expect(configError({ ...DEV, DATABASE_URL: "mysql://localhost/db" }).message).toMatch(/DATABASE_URL.*postgres/);
  });

  it("reports a malformed postgres URL as a ConfigError, not a TypeError", () => {
    // Matches the /^postgres:\/\/.+/ check, but `new URL` cannot parse it (non-numeric port).
    const err = configError({ ...DEV, DATABASE_URL: "postgres://user:secret@host:port/db" });
    expect(err.message).toContain("DATABASE_URL");
  });

  it("never prints the value of a secret variable", () => {
    const err = configError({ ...DEV, DATABASE_URL: "postgres://user:hunter2@host:port/db", API_TOKEN: "short-s3cret" });
    expect(err.message).toContain("DATABASE_URL");
    expect(err.message).toContain("API_TOKEN");
    expect(err.message).not.toContain("hunter2");
    expect(err.message).not.toContain("short-s3cret");
    expect(configError({ ...DEV, PORT: "abc" }).message).toContain('(got "abc")');
  });
});

describe("loadConfig errors", () => {
  it("names every bad variable in one ConfigError", () => {
    const err = configError({
      ...DEV,
      PORT: "abc",
      PREVIEW_ROUTING: "nginx",
      PREVIEW_MEMORY: "lots",
      READY_TIMEOUT: "soon",
      STORAGE_HOST_PATH: "relative/storage",
      DOCKER_HOST: "ftp://x",
      API_TOKEN: "short",
      LOG_LEVEL: "loud",
      PREVIEW_CPUS: "many",
      INSTANCE_ID: "bad id!",
      PREVIEW_DOMAIN: "not a domain",
    });
    const names = [
      "PORT",
      "PREVIEW_ROUTING",
      "PREVIEW_MEMORY",
      "READY_TIMEOUT",
      "STORAGE_HOST_PATH",
      "DOCKER_HOST",
      "API_TOKEN",
      "LOG_LEVEL",
      "PREVIEW_CPUS",
      "INSTANCE_ID",
      "PREVIEW_DOMAIN",
    ];
    for (const name of names) expect(err.message).toContain(`${name}:`);
    // One problem per variable, each on its own line.
    expect(err.problems).toHaveLength(names.length);
    expect(err.message.split("\n")).toHaveLength(names.length + 1);
    expect(err.message).toContain('(got "abc")');
    expect(err.name).toBe("ConfigError");
  });

  it("checks numeric bounds", () => {
    expect(configError({ ...DEV, PORT: "70000" }).message).toContain("PORT must be at most 65535");
    expect(configError({ ...DEV, PORT: "0x50" }).message).toContain("PORT must be a whole number");
    expect(configError({ ...DEV, PREVIEW_MEMORY: "1m" }).message).toContain("PREVIEW_MEMORY must be at least 6m");
    expect(configError({ ...DEV, PREVIEW_PIDS_LIMIT: "4" }).message).toContain("PREVIEW_PIDS_LIMIT must be at least 16");
    expect(configError({ ...DEV, READY_TIMEOUT: "2h" }).message).toContain("READY_TIMEOUT must be at most 1h");
    expect(configError({ ...DEV, PREVIEW_CPUS: "0" }).message).toContain("PREVIEW_CPUS must be at least 0.01");
  });

  it("refuses cloud mode without a signing key", () => {
    for (const env of [{}, { INNGEST_DEV: "0" }, { INNGEST_DEV: "false" }]) {
      expect(configError(env).message).toContain("INNGEST_SIGNING_KEY");
    }
  });

  it("refuses an INNGEST_DEV that is neither a flag nor a URL", () => {
    expect(configError({ INNGEST_DEV: "maybe" }).message).toContain("INNGEST_DEV");
  });

  it("reports the missing signing key together with bad values of other variables", () => {
    // Cloud mode (no INNGEST_DEV, no signing key) AND a bad PORT: both must be named at once.
    const err = configError({ PORT: "abc" });
    expect(err.message).toContain("PORT");
    expect(err.message).toContain("INNGEST_SIGNING_KEY");
  });

  it("reports an out-of-range DOCKER_HOST port as a ConfigError, not a TypeError", () => {
    // Matches the tcp://host:port pattern, but `new URL` refuses port 99999.
    expect(configError({ ...DEV, DOCKER_HOST: "tcp://localhost:99999" }).message).toContain("DOCKER_HOST");
  });
});

describe("parseBytes", () => {
  it.each([
    ["1073741824", 1073741824],
    ["0", 0],
    ["512", 512],
    ["1k", 1024],
    ["1kb", 1024],
    ["512m", 512 * 1024 ** 2],
    ["512M", 512 * 1024 ** 2],
    ["512mb", 512 * 1024 ** 2],
    ["1g", 1024 ** 3],
    ["1G", 1024 ** 3],
    ["1.5g", 1.5 * 1024 ** 3],
    [" 64 m ", 64 * 1024 ** 2],
  ])("%j -> %d bytes", (input, bytes) => {
    expect(parseBytes(input)).toBe(bytes);
  });

  it.each(["lots", "", "-1m", "1t", "1 gigabyte", "m", "1.g", "1e6"])("%j is not a size", (input) => {
    expect(parseBytes(input)).toBeUndefined();
  });
});

describe("parseDuration", () => {
  it.each([
    ["90", 90_000],
    ["90s", 90_000],
    ["2m", 120_000],
    ["1h", 3_600_000],
    ["1500ms", 1_500],
    ["0.5s", 500],
    ["1.5m", 90_000],
    [" 30s ", 30_000],
  ])("%j -> %d ms", (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it.each(["soon", "", "-5s", "1d", "5 s", "s", "10sec"])("%j is not a duration", (input) => {
    expect(parseDuration(input)).toBeUndefined();
  });
});
