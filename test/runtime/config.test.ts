/**
 * `loadConfig` as the process sees it: a plain record of environment variables in, a typed
 * `Config` or one `ConfigError` naming every bad variable out.
 */
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseEnv } from "node:util";
import * as v from "valibot";
import { describe, expect, expectTypeOf, it } from "vitest";
import type { ClaudeSettings } from "../../diagnosis/settings.js";
import type { DockerConnection } from "../../docker/settings.js";
import { type Config, type ConfigSchema, ConfigError, configSchema, loadConfig, parseBytes, parseDuration, withDevDefaults } from "../../runtime/config.js";
import type { DatabaseSettings } from "../../sql/settings.js";
import type { ObjectStoreSettings } from "../../storage/object-store.js";

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
      timeoutMs: 10_000,
    });
    expect(path.isAbsolute(config.database.dataPath)).toBe(true);
  });

  it("resolves storage to an absolute path and defaults the host path to it", () => {
    expect(config.storage.path).toBe(path.join(CWD, "storage"));
    expect(path.isAbsolute(config.storage.path)).toBe(true);
    expect(config.storage.hostPath).toBe(config.storage.path);
  });

  it("uses the engine's default unix socket and traefik routing with bounded resources", () => {
    expect(config.docker).toEqual({ protocol: "unix", socketPath: "/var/run/docker.sock" });
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
      user: "1000:1000",
      readOnlyRootFs: true,
      tmpBytes: 512 * 1024 * 1024,
      egress: true,
      bridgeName: undefined,
      hostFirewall: "auto",
      egressDeny: ["169.254.0.0/16"],
      mountCheck: "auto",
      trustedPeers: [],
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
        PREVIEW_LINK_SECRET: "link-secret-0123456789abcdef0123456789",
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
    expect(c.docker).toEqual({ protocol: "tcp", host: "docker.internal", port: 2375, tlsVerify: false, certPath: null });
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
      user: "1000:1000",
      readOnlyRootFs: true,
      tmpBytes: 512 * 1024 * 1024,
      egress: true,
      bridgeName: undefined,
      hostFirewall: "auto",
      egressDeny: ["169.254.0.0/16"],
      mountCheck: "auto",
      trustedPeers: [],
    });
    expect(c.apiToken).toBe("0123456789abcdef");
    expect(c.inngest.dev).toBe("http://127.0.0.1:8288");
    expect(c.inngest.eventKey).toBe("evt");
    expect(c.inngest.serveOrigin).toBe("https://previews.example.com");
    expect(c.inngest.checkpointing).toBe(false);
  });

  it("accepts cloud mode with a signing key", () => {
    const c = loadConfig({ INNGEST_SIGNING_KEY: "signkey-prod-abc123", INNGEST_EVENT_KEY: "evt", INNGEST_SERVE_ORIGIN: "https://previews.example.com" }, CWD);
    expect(c.inngest.dev).toBe(false);
    expect(c.inngest.signingKey).toBe("signkey-prod-abc123");
    expect(c.inngest.serveOrigin).toBe("https://previews.example.com");
  });

  it("refuses cloud mode without a pinned serve origin, naming INNGEST_SERVE_ORIGIN (a forged Host must not re-register the app)", () => {
    const err = configError({ INNGEST_SIGNING_KEY: "signkey-prod-abc123" });
    expect(err.problems).toEqual([expect.stringMatching(/^INNGEST_SERVE_ORIGIN: INNGEST_SERVE_ORIGIN is required in cloud mode/)]);
    expect(err.message).not.toContain("signkey-prod-abc123");
  });

  it.each([
    ["127.0.0.1", {}, true],
    ["localhost", {}, true],
    ["::1", {}, true],
    ["127.1.2.3", {}, true],
    ["0.0.0.0", {}, false],
    ["192.168.1.10", {}, false],
    ["0.0.0.0", { ALLOW_UNSIGNED_REMOTE: "1" }, true],
    ["0.0.0.0", { INNGEST_SIGNING_KEY: "signkey-test-1" }, true],
  ] as const)("dev mode on HOST=%s with %j: %s", (host, extra, ok) => {
    const env = { INNGEST_DEV: "1", HOST: host, ...extra };
    if (ok) expect(loadConfig(env, CWD).host).toBe(host);
    else expect(configError(env).problems).toEqual([expect.stringMatching(/^HOST: HOST must be a loopback address in dev mode/)]);
  });

  it("cloud mode listens anywhere (every call is signed)", () => {
    const env = { HOST: "0.0.0.0", INNGEST_SIGNING_KEY: "signkey-prod-abc123", INNGEST_SERVE_ORIGIN: "https://p.example.com" };
    expect(loadConfig(env, CWD).host).toBe("0.0.0.0");
  });

  it.each([
    ["0", false],
    ["false", false],
    ["FALSE", false],
    ["1", true],
    ["true", true],
    ["https://inngest.local", "https://inngest.local"],
  ] as const)("INNGEST_DEV=%s -> dev %s", (raw, dev) => {
    expect(loadConfig({ INNGEST_DEV: raw, INNGEST_SIGNING_KEY: "signkey-test-1", INNGEST_SERVE_ORIGIN: "https://p.example.com" }, CWD).inngest.dev).toBe(dev);
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

  it("reads DATABASE_TIMEOUT as a duration (default 10s; a bare number is seconds)", () => {
    expect(driver({}).timeoutMs).toBe(10_000);
    expect(driver({ DATABASE_URL: "postgres://u:p@db/previews", DATABASE_TIMEOUT: "1500ms" }).timeoutMs).toBe(1_500);
    expect(driver({ DATABASE_TIMEOUT: "3" }).timeoutMs).toBe(3_000);
    expect(driver({ DATABASE_TIMEOUT: "2m" }).timeoutMs).toBe(120_000);
  });

  it("refuses a DATABASE_TIMEOUT that is not a duration, or out of bounds", () => {
    expect(configError({ ...DEV, DATABASE_TIMEOUT: "soon" }).problems).toEqual([
      'DATABASE_TIMEOUT: DATABASE_TIMEOUT must be a duration such as 10s or 1500ms (got "soon")',
    ]);
    expect(configError({ ...DEV, DATABASE_TIMEOUT: "-1s" }).message).toContain("DATABASE_TIMEOUT must be a duration");
    expect(configError({ ...DEV, DATABASE_TIMEOUT: "50ms" }).message).toContain("DATABASE_TIMEOUT must be at least 100ms");
    expect(configError({ ...DEV, DATABASE_TIMEOUT: "0" }).message).toContain("DATABASE_TIMEOUT must be at least 100ms");
    expect(configError({ ...DEV, DATABASE_TIMEOUT: "1h" }).message).toContain("DATABASE_TIMEOUT must be at most 10m");
  });

  it("refuses a DATABASE_URL that is not a postgres URL", () => {
    expect(configError({ ...DEV, DATABASE_URL: "mysql://localhost/db" }).message).toMatch(/DATABASE_URL.*postgres/);
  });

  it("reports a malformed postgres URL as a ConfigError, not a TypeError", () => {
    // Matches the /^postgres:\/\/.+/ check, but `new URL` cannot parse it (non-numeric port).
    const err = configError({ ...DEV, DATABASE_URL: "postgres://user:secret@host:port/db" });
    expect(err.message).toContain("DATABASE_URL");
  });

  it("never prints the value of a secret variable, even in a rule across variables", () => {
    // The pglite rule is reported on DATABASE_DRIVER, a non-secret key: only its own value shows.
    const err = configError({ ...DEV, DATABASE_DRIVER: "pglite", DATABASE_URL: "postgres://u:hunter2@db/previews" });
    expect(err.problems).toEqual(['DATABASE_DRIVER: DATABASE_DRIVER pglite takes no DATABASE_URL (got "pglite")']);
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
      DATABASE_TIMEOUT: "never",
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
      "DATABASE_TIMEOUT",
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

  it("quotes the value as given, not as transformed", () => {
    expect(configError({ ...DEV, PREVIEW_MEMORY: "1m" }).problems).toEqual([
      `PREVIEW_MEMORY: PREVIEW_MEMORY must be at least 6m (Docker's minimum) (got "1m")`,
    ]);
  });

  it("reports one problem per variable", () => {
    // Fails both the postgres:// pattern and the URL parse: the first problem is enough.
    expect(configError({ ...DEV, DATABASE_URL: "not a url" }).problems).toEqual(["DATABASE_URL: DATABASE_URL must be a postgres:// URL"]);
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

describe("loadConfig docker engine (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH)", () => {
  const docker = (env: Record<string, string>) => loadConfig({ ...DEV, ...env }, CWD).docker;
  const defaultCerts = path.join(os.homedir(), ".docker");

  it("reads a unix DOCKER_HOST as a socket path", () => {
    expect(docker({ DOCKER_HOST: "unix:///run/user/1000/docker.sock" })).toEqual({
      protocol: "unix",
      socketPath: "/run/user/1000/docker.sock",
    });
  });

  it("reads tcp://host:port without TLS", () => {
    expect(docker({ DOCKER_HOST: "tcp://10.0.0.5:2375" })).toEqual({
      protocol: "tcp",
      host: "10.0.0.5",
      port: 2375,
      tlsVerify: false,
      certPath: null,
    });
    // A port that is the default of http is still kept (URL parsing would drop it).
    expect(docker({ DOCKER_HOST: "tcp://docker.internal:80/" })).toMatchObject({ host: "docker.internal", port: 80 });
    expect(docker({ DOCKER_HOST: "tcp://[::1]:2375" })).toMatchObject({ host: "::1", port: 2375 });
  });

  it("turns TLS on with DOCKER_TLS_VERIFY, with certificates from ~/.docker by default", () => {
    expect(docker({ DOCKER_HOST: "tcp://docker.example.com:2376", DOCKER_TLS_VERIFY: "1" })).toEqual({
      protocol: "tcp",
      host: "docker.example.com",
      port: 2376,
      tlsVerify: true,
      certPath: defaultCerts,
    });
  });

  it("reads certificates from DOCKER_CERT_PATH, resolved against the working directory", () => {
    const tcp = { DOCKER_HOST: "tcp://docker.example.com:2376", DOCKER_TLS_VERIFY: "1" };
    expect(docker({ ...tcp, DOCKER_CERT_PATH: "/etc/docker/certs" })).toMatchObject({ tlsVerify: true, certPath: "/etc/docker/certs" });
    expect(docker({ ...tcp, DOCKER_CERT_PATH: "certs/docker" })).toMatchObject({ certPath: path.join(CWD, "certs/docker") });
    // Without TLS verification a given cert path is still passed on (docker-modem uses it as given).
    expect(docker({ DOCKER_HOST: tcp.DOCKER_HOST, DOCKER_CERT_PATH: "/etc/docker/certs" })).toMatchObject({
      tlsVerify: false,
      certPath: "/etc/docker/certs",
    });
  });

  it.each([
    ["1", true],
    ["true", true],
    ["yes", true],
    ["anything", true],
    ["0", false],
    ["false", false],
    ["FALSE", false],
    ["", false],
  ] as const)("DOCKER_TLS_VERIFY=%j -> tlsVerify %s", (raw, on) => {
    expect(docker({ DOCKER_HOST: "tcp://docker.example.com:2376", DOCKER_TLS_VERIFY: raw })).toMatchObject({
      tlsVerify: on,
      certPath: on ? defaultCerts : null,
    });
  });

  it("reads ssh://[user@]host[:port], port 22 by default, agent from SSH_AUTH_SOCK", () => {
    expect(docker({ DOCKER_HOST: "ssh://deploy@build.example.com" })).toEqual({
      protocol: "ssh",
      host: "build.example.com",
      port: 22,
      username: "deploy",
      agent: null,
    });
    expect(docker({ DOCKER_HOST: "ssh://build.example.com:2222", SSH_AUTH_SOCK: "/tmp/ssh-agent.sock" })).toEqual({
      protocol: "ssh",
      host: "build.example.com",
      port: 2222,
      username: null,
      agent: "/tmp/ssh-agent.sock",
    });
  });

  it.each(["ftp://x", "http://docker.internal:2375", "npipe:////./pipe/docker_engine", "fd://"])(
    "refuses the scheme of %j, naming the supported ones",
    (host) => {
      const err = configError({ ...DEV, DOCKER_HOST: host });
      expect(err.problems).toHaveLength(1);
      expect(err.problems[0]).toMatch(/^DOCKER_HOST: DOCKER_HOST must be unix:\/\/\/path, tcp:\/\/host:port or ssh:\/\/\[user@\]host\[:port\]/);
      expect(err.problems[0]).toContain("scheme is not supported");
      expect(err.problems[0]).toContain(`(got ${JSON.stringify(host)})`);
    },
  );

  it.each([
    "docker.internal:2375",
    "unix://relative.sock",
    "tcp://docker.internal",
    "tcp://docker.internal:2375/v1.41",
    "tcp://user@docker.internal:2375",
    "tcp://:2375",
    "tcp://docker.internal:0",
    "tcp://docker.internal:99999",
    "ssh://user:secret@build.example.com",
    "ssh://build.example.com/path",
    "ssh://build.example.com:70000",
  ])("refuses DOCKER_HOST=%j", (host) => {
    const err = configError({ ...DEV, DOCKER_HOST: host });
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatch(/^DOCKER_HOST: /);
  });

  it("refuses DOCKER_TLS_VERIFY with a unix socket (given or default) or an ssh host", () => {
    for (const env of [
      { DOCKER_HOST: "unix:///var/run/docker.sock", DOCKER_TLS_VERIFY: "1" },
      { DOCKER_TLS_VERIFY: "1" },
      { DOCKER_HOST: "ssh://deploy@build.example.com", DOCKER_TLS_VERIFY: "true" },
    ]) {
      const err = configError({ ...DEV, ...env });
      expect(err.problems).toHaveLength(1);
      expect(err.problems[0]).toMatch(/^DOCKER_TLS_VERIFY: DOCKER_TLS_VERIFY needs a tcp:\/\/host:port DOCKER_HOST/);
    }
    // Off is off, whatever the host.
    expect(docker({ DOCKER_HOST: "unix:///var/run/docker.sock", DOCKER_TLS_VERIFY: "0" })).toEqual({
      protocol: "unix",
      socketPath: "/var/run/docker.sock",
    });
  });

  it("reports the TLS rule together with other bad variables, and a bad DOCKER_HOST alone", () => {
    const err = configError({ ...DEV, PORT: "abc", DOCKER_TLS_VERIFY: "1" });
    expect(err.problems.map((p) => p.split(":")[0])).toEqual(["PORT", "DOCKER_TLS_VERIFY"]);
    // When DOCKER_HOST itself is bad, the TLS rule cannot be judged and stays silent.
    expect(configError({ ...DEV, DOCKER_HOST: "ftp://x", DOCKER_TLS_VERIFY: "1" }).problems.map((p) => p.split(":")[0])).toEqual([
      "DOCKER_HOST",
    ]);
  });
});

describe("preview isolation settings", () => {
  it("defaults to the safe ones", () => {
    expect(loadConfig(DEV, CWD).preview).toMatchObject({
      user: "1000:1000",
      readOnlyRootFs: true,
      tmpBytes: 512 * 1024 * 1024,
      egress: true,
      bridgeName: undefined,
      hostFirewall: "auto",
      egressDeny: ["169.254.0.0/16"],
      mountCheck: "auto",
      trustedPeers: [],
    });
  });

  it("reads every variable", () => {
    const p = loadConfig(
      {
        ...DEV,
        PREVIEW_USER: "1001:1002",
        PREVIEW_READ_ONLY_ROOT: "false",
        PREVIEW_TMP_SIZE: "64m",
        PREVIEW_EGRESS: "0",
        PREVIEW_BRIDGE: "sbp-custom",
        PREVIEW_HOST_FIREWALL: "iptables",
        PREVIEW_EGRESS_DENY: "169.254.0.0/16, 10.0.0.0/8",
        PREVIEW_MOUNT_CHECK: "path",
      },
      CWD,
    ).preview;
    expect(p).toMatchObject({ user: "1001:1002", readOnlyRootFs: false, tmpBytes: 64 * 1024 * 1024, egress: false, bridgeName: "sbp-custom", hostFirewall: "iptables", egressDeny: ["169.254.0.0/16", "10.0.0.0/8"], mountCheck: "path" });
  });

  it.each([
    ["PREVIEW_USER", "0:0", /must not be root/],
    ["PREVIEW_USER", "1000:0", /must not be root/],
    ["PREVIEW_USER", "node", /numeric "uid:gid"/],
    ["PREVIEW_BRIDGE", "a-bridge-name-too-long", /at most 15 characters/],
    ["PREVIEW_HOST_FIREWALL", "nftables", /auto, iptables, off or external/],
    ["PREVIEW_MOUNT_CHECK", "inode", /auto, required or path/],
    ["PREVIEW_EGRESS_DENY", "10.0.0.0/33", /IPv4 CIDRs/],
    ["PREVIEW_EGRESS_DENY", "example.com", /IPv4 CIDRs/],
    ["PREVIEW_TMP_SIZE", "lots", /size/],
  ])("refuses %s=%s", (key, value, message) => {
    const err = configError({ ...DEV, [key]: value });
    expect(err.problems).toEqual([expect.stringMatching(new RegExp(`^${key}: .*${message.source}`))]);
  });
});

describe("trusted peers (PREVIEW_TRUSTED_PEERS)", () => {
  it("defaults to none and reads a comma-separated list of IPv4 addresses", () => {
    expect(loadConfig(DEV, CWD).preview.trustedPeers).toEqual([]);
    expect(loadConfig({ ...DEV, PREVIEW_TRUSTED_PEERS: " 172.29.0.2 ,172.29.0.3," }, CWD).preview.trustedPeers).toEqual(["172.29.0.2", "172.29.0.3"]);
  });

  it.each(["172.29.0.0/24", "traefik", "256.1.1.1", "fd00::2"])("refuses %s, naming the variable", (value) => {
    const err = configError({ ...DEV, PREVIEW_TRUSTED_PEERS: value });
    expect(err.problems).toEqual([expect.stringMatching(/^PREVIEW_TRUSTED_PEERS: PREVIEW_TRUSTED_PEERS must be comma-separated IPv4 addresses/)]);
  });
});

describe("sweep settings", () => {
  it("defaults: every 15 minutes, 24h retention, 10m grace, half the previews at most, 16 at once, no project source with PGlite", () => {
    expect(loadConfig(DEV, CWD).sweep).toEqual({
      cron: "*/15 * * * *",
      retentionMs: 24 * 3_600_000,
      graceMs: 10 * 60_000,
      maxOrphanFraction: 0.5,
      concurrency: 16,
      projects: null,
    });
  });

  it("the project source defaults to DATABASE_URL when that is Postgres, table projects", () => {
    const url = "postgres://u:p@db.internal:5432/app";
    const c = loadConfig({ ...DEV, DATABASE_URL: url }, CWD);
    expect(c.sweep.projects).toEqual({ database: { ...c.database, driver: "pg", url }, table: "projects" });
    const neon = "postgres://u:p@ep-x.eu-central-1.aws.neon.tech/app";
    expect(loadConfig({ ...DEV, DATABASE_URL: neon }, CWD).sweep.projects?.database).toMatchObject({ driver: "neon", url: neon });
  });

  it("PROJECTS_DATABASE_URL=none: no project source, even when DATABASE_URL is Postgres", () => {
    const url = "postgres://u:p@db.internal:5432/app";
    expect(loadConfig({ ...DEV, DATABASE_URL: url, PROJECTS_DATABASE_URL: "none" }, CWD).sweep.projects).toBeNull();
    expect(loadConfig({ ...DEV, PROJECTS_DATABASE_URL: "none" }, CWD).sweep.projects).toBeNull();
    // Anything else that is not a postgres:// URL is still refused, naming the choices.
    expect(configError({ ...DEV, PROJECTS_DATABASE_URL: "None!" }).message).toMatch(/PROJECTS_DATABASE_URL must be a postgres:\/\/ URL or none/);
  });

  it("reads every variable; PROJECTS_DATABASE_URL works with PGlite state too", () => {
    const projects = "postgres://ro:secret@orchestrator.internal:5432/orchestrator";
    const c = loadConfig(
      {
        ...DEV,
        SWEEP_CRON: "TZ=Europe/Paris 0 3 * * *",
        STOPPED_RETENTION: "48h",
        SWEEP_GRACE: "0",
        SWEEP_MAX_ORPHAN_FRACTION: "1",
        SWEEP_CONCURRENCY: "4",
        PROJECTS_DATABASE_URL: projects,
        PROJECTS_TABLE: "orchestrator.projects",
      },
      CWD,
    );
    expect(c.sweep).toEqual({
      cron: "TZ=Europe/Paris 0 3 * * *",
      retentionMs: 48 * 3_600_000,
      graceMs: 0,
      maxOrphanFraction: 1,
      concurrency: 4,
      projects: { database: { ...c.database, driver: "pg", url: projects }, table: "orchestrator.projects" },
    });
    expect(c.database.driver).toBe("pglite");
  });

  it.each([
    ["SWEEP_CRON", "every 15 minutes", /cron schedule of 5 fields/],
    ["SWEEP_CRON", "* * * *", /cron schedule of 5 fields/],
    ["STOPPED_RETENTION", "a day", /STOPPED_RETENTION must be a duration/],
    ["STOPPED_RETENTION", "10s", /at least 1m/],
    ["SWEEP_GRACE", "-1m", /SWEEP_GRACE must be a duration/],
    ["SWEEP_GRACE", "25h", /at most 24h/],
    ["SWEEP_MAX_ORPHAN_FRACTION", "1.5", /from 0 to 1/],
    ["SWEEP_MAX_ORPHAN_FRACTION", "50%", /from 0 to 1/],
    ["SWEEP_CONCURRENCY", "0", /at least 1/],
    ["PROJECTS_DATABASE_URL", "mysql://x/y", /postgres:\/\/ URL/],
    ["PROJECTS_TABLE", "projects; drop table previews", /table name/],
    ["PROJECTS_TABLE", "Projects", /table name/],
  ])("refuses %s=%s, naming it", (key, value, message) => {
    const err = configError({ ...DEV, [key]: value });
    expect(err.problems).toEqual([expect.stringMatching(new RegExp(`^${key}: .*${message.source}`))]);
  });

  it(".env.example shows the real defaults", () => {
    // The defaults are shown commented out (`# KEY=value`): read them uncommented.
    const example = parseEnv(readFileSync(new URL("../../.env.example", import.meta.url), "utf8").replace(/^# ([A-Z_][A-Z0-9_]*=)/gm, "$1"));
    expect(loadConfig({ ...example, ...DEV }, CWD).sweep).toEqual(loadConfig(DEV, CWD).sweep);
    for (const key of ["SWEEP_CRON", "STOPPED_RETENTION", "SWEEP_GRACE", "SWEEP_MAX_ORPHAN_FRACTION", "SWEEP_CONCURRENCY", "PROJECTS_DATABASE_URL", "PROJECTS_TABLE"]) {
      expect(Object.keys(example), key).toContain(key);
    }
  });

  it("never prints PROJECTS_DATABASE_URL (it may carry a password)", () => {
    const err = configError({ ...DEV, PROJECTS_DATABASE_URL: "postgres://u:hunter2@[bad" });
    expect(err.message).toMatch(/PROJECTS_DATABASE_URL/);
    expect(err.message).not.toContain("hunter2");
  });
});

describe("Config is inferred from the schema", () => {
  it("is the output of ConfigSchema, with the adapters' settings types", () => {
    expectTypeOf<Config>().toEqualTypeOf<v.InferOutput<ConfigSchema>>();
    expectTypeOf<Config>().toEqualTypeOf<v.InferOutput<ReturnType<typeof configSchema>>>();
    expectTypeOf(loadConfig).returns.toEqualTypeOf<Config>();
    expectTypeOf<Config["database"]>().toEqualTypeOf<DatabaseSettings>();
    expectTypeOf<Config["docker"]>().toEqualTypeOf<DockerConnection>();
    expectTypeOf<Config>().toEqualTypeOf<{
      port: number;
      host: string;
      logLevel: "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "silent";
      database: DatabaseSettings;
      storage: { path: string; hostPath: string };
      docker: DockerConnection;
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
        user: string;
        readOnlyRootFs: boolean;
        tmpBytes: number;
        egress: boolean;
        bridgeName: string | undefined;
        hostFirewall: "auto" | "iptables" | "off" | "external";
        egressDeny: string[];
        mountCheck: "auto" | "required" | "path";
        trustedPeers: string[];
      };
      previewBuild: { nodeImage: string };
      apiToken: string | null;
      activity: { eventIntervalMs: number; flushIntervalMs: number; idleTimeoutMs: number };
      access: { mode: "public" | "token"; linkTtlMs: number; linkSecret: string | null; middleware: string };
      metrics: { queryTimeoutMs: number };
      maxRunningPreviews: number | null;
      diagnosis: ClaudeSettings | null;
      objectStorage: { store: ObjectStoreSettings; concurrency: number } | null;
      sweep: {
        cron: string;
        retentionMs: number;
        graceMs: number;
        maxOrphanFraction: number;
        concurrency: number;
        projects: { database: DatabaseSettings; table: string } | null;
      };
      inngest: {
        dev: boolean | string;
        baseUrl: string | null;
        signingKey: string | null;
        signingKeyFallback: string | null;
        eventKey: string | null;
        env: string | null;
        serveOrigin: string | null;
        checkpointing: boolean;
      };
    }>();
  });

  it("parses the same with the schema directly as through loadConfig", () => {
    const env = { INNGEST_DEV: "1", STORAGE_PATH: "sites", DOCKER_HOST: "tcp://docker.internal:2375" };
    expect(v.parse(configSchema(CWD), env)).toEqual(loadConfig(env, CWD));
    expect(v.parse(configSchema("/elsewhere"), env).storage.path).toBe("/elsewhere/sites");
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

describe("npm run dev's defaults", () => {
  it("Inngest dev mode and port routing (no Traefik needed for a first preview), unless the environment or .env says otherwise", () => {
    const dev = loadConfig(withDevDefaults({ STORAGE_PATH: "/srv/storage" }), "/app");
    expect(dev.inngest.dev).toBe(true);
    expect(dev.preview.routing).toBe("port");
    const chosen = loadConfig(withDevDefaults({ STORAGE_PATH: "/srv/storage", PREVIEW_ROUTING: "traefik", INNGEST_DEV: "http://127.0.0.1:8288" }), "/app");
    expect(chosen.preview.routing).toBe("traefik");
    expect(chosen.inngest.dev).toBe("http://127.0.0.1:8288");
  });
});

// --- Object storage (issue 9) ------------------------------------------------------------------------
describe("loadConfig object storage (MINIO_*)", () => {
  const KEYS = { MINIO_ACCESS_KEY: "minioadmin", MINIO_SECRET_KEY: "minio-secret-123" };

  it("is off when every MINIO_* is unset (or empty): the local folder only", () => {
    expect(loadConfig(DEV, CWD).objectStorage).toBeNull();
    expect(loadConfig({ ...DEV, MINIO_ENDPOINT: "", MINIO_ACCESS_KEY: "", MINIO_BUCKET: "" }, CWD).objectStorage).toBeNull();
  });

  it("reads host:port, with the seed's defaults (bucket sitebuilder, no TLS)", () => {
    expect(loadConfig({ ...DEV, ...KEYS, MINIO_ENDPOINT: "minio:9000" }, CWD).objectStorage).toEqual({
      store: { endPoint: "minio", port: 9000, useSSL: false, accessKey: "minioadmin", secretKey: "minio-secret-123", bucket: "sitebuilder", timeoutMs: 30_000 },
      concurrency: 16,
    });
  });

  it("reads a URL: the scheme decides TLS and the default port", () => {
    const https = loadConfig({ ...DEV, ...KEYS, MINIO_ENDPOINT: "https://s3.example.com" }, CWD).objectStorage!.store;
    expect(https).toMatchObject({ endPoint: "s3.example.com", port: 443, useSSL: true });
    const http = loadConfig({ ...DEV, ...KEYS, MINIO_ENDPOINT: "http://127.0.0.1:9000/" }, CWD).objectStorage!.store;
    expect(http).toMatchObject({ endPoint: "127.0.0.1", port: 9000, useSSL: false });
    const v6 = loadConfig({ ...DEV, ...KEYS, MINIO_ENDPOINT: "[::1]:9000", MINIO_USE_SSL: "true" }, CWD).objectStorage!.store;
    expect(v6).toMatchObject({ endPoint: "::1", port: 9000, useSSL: true });
    expect(loadConfig({ ...DEV, ...KEYS, MINIO_ENDPOINT: "minio", MINIO_USE_SSL: "1" }, CWD).objectStorage!.store.port).toBe(443);
  });

  it("takes MINIO_BUCKET, MINIO_TIMEOUT and MINIO_CONCURRENCY", () => {
    const c = loadConfig({ ...DEV, ...KEYS, MINIO_ENDPOINT: "minio:9000", MINIO_BUCKET: "sites.prod-1", MINIO_TIMEOUT: "2m", MINIO_CONCURRENCY: "4" }, CWD).objectStorage!;
    expect(c).toMatchObject({ store: { bucket: "sites.prod-1", timeoutMs: 120_000 }, concurrency: 4 });
  });

  it.each([
    ["MINIO_ENDPOINT", "ftp://minio:21", /ftp:\/\/ scheme is not supported/],
    ["MINIO_ENDPOINT", "http://minio:9000/bucket", /no path/],
    ["MINIO_ENDPOINT", "minio:99999", /invalid host or port/],
    ["MINIO_ENDPOINT", "minio:9000/x", /host:port/],
    ["MINIO_BUCKET", "Bad_Bucket", /S3 bucket name/],
    ["MINIO_BUCKET", "ab", /S3 bucket name/],
    ["MINIO_USE_SSL", "maybe", /true or false/],
    ["MINIO_CONCURRENCY", "0", /at least 1/],
  ])("refuses %s=%s, naming it", (key, value, message) => {
    const err = configError({ ...DEV, ...KEYS, MINIO_ENDPOINT: "minio:9000", [key]: value });
    expect(err.problems).toEqual([expect.stringMatching(new RegExp(`^${key}: .*${message.source}`))]);
  });

  it("refuses an endpoint without keys, naming both", () => {
    const err = configError({ ...DEV, MINIO_ENDPOINT: "minio:9000" });
    expect(err.problems).toEqual([
      expect.stringMatching(/^MINIO_ACCESS_KEY: MINIO_ACCESS_KEY is required when MINIO_ENDPOINT is set/),
      expect.stringMatching(/^MINIO_SECRET_KEY: MINIO_SECRET_KEY is required when MINIO_ENDPOINT is set/),
    ]);
  });

  it.each([["MINIO_ACCESS_KEY"], ["MINIO_SECRET_KEY"], ["MINIO_BUCKET"], ["MINIO_USE_SSL"]])("refuses %s without MINIO_ENDPOINT (a half configuration)", (key) => {
    const err = configError({ ...DEV, [key]: key === "MINIO_USE_SSL" ? "true" : "sitebuilder" });
    expect(err.problems).toEqual([expect.stringMatching(/^MINIO_ENDPOINT: MINIO_ENDPOINT is required when any of/)]);
  });

  it("refuses MINIO_USE_SSL that contradicts the URL's scheme", () => {
    const err = configError({ ...DEV, ...KEYS, MINIO_ENDPOINT: "https://minio:9000", MINIO_USE_SSL: "false" });
    expect(err.problems).toEqual([expect.stringMatching(/^MINIO_USE_SSL: .*contradicts/)]);
  });

  it("never prints the keys, nor an endpoint (a URL may carry credentials)", () => {
    const err = configError({ ...DEV, MINIO_ENDPOINT: "http://admin:hunter2@minio:9000", MINIO_ACCESS_KEY: "AKIAHUNTER3", MINIO_SECRET_KEY: "x", MINIO_USE_SSL: "nope" });
    expect(err.message).toMatch(/MINIO_ENDPOINT: MINIO_ENDPOINT must not carry credentials/);
    expect(err.message).not.toMatch(/hunter2|AKIAHUNTER3/);
  });
});
