/**
 * docker-compose.yml and docker-compose.prod.yml, validated by Debian's docker-compose 1.29
 * (`docker-compose config`: interpolation, schema; it cannot start the stack here, no image can
 * be pulled) and then read back (its YAML output, turned into JSON by the PyYAML docker-compose
 * itself runs on) to check what README "Deployment" claims: restart policies and health checks
 * on every service, who is on which network, Traefik without the Docker socket and behind a
 * proxy that allows only reads of containers, the previews network as the service requires it
 * (checked with the service's own `networkProblems`), trusted peers that agree everywhere, the
 * storage path the daemon sees, and an environment the service's own config schema accepts, in
 * the dev and the production variant.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { networkProblems } from "../docker/isolation.js";
import { loadConfig } from "../runtime/config.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
/** An empty env file: a developer's .env must not change what is validated. */
const scratch = mkdtempSync(path.join(os.tmpdir(), "sbp-compose-"));
const emptyEnvFile = path.join(scratch, "empty.env");
writeFileSync(emptyEnvFile, "");
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** What the stack needs from the operator (docker-compose.yml's `${VAR:?}`). */
const REQUIRED = {
  DOCKER_GID: "998",
  POSTGRES_PASSWORD: "pg-secret-for-tests",
  MINIO_ROOT_PASSWORD: "minio-secret-for-tests",
  API_TOKEN: "0123456789abcdef0123",
  PREVIEW_LINK_SECRET: "0123456789abcdef0123456789abcdef",
  // The operator chooses where the sweep reads projects: a URL, or none.
  PROJECTS_DATABASE_URL: "none",
};
const PROD = { INNGEST_SIGNING_KEY: "a1".repeat(32), INNGEST_EVENT_KEY: "event-key-for-tests" };

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  restart?: string;
  healthcheck?: { test: string[] | string; interval?: string };
  networks?: Record<string, { ipv4_address?: string; priority?: number } | null>;
  network_mode?: string;
  volumes?: Array<string | { type: string; source: string; target: string; read_only?: boolean }>;
  environment?: Record<string, string>;
  logging?: { driver: string; options?: Record<string, string> };
  working_dir?: string;
  command?: string[] | string;
  cap_add?: string[];
  cap_drop?: string[];
  user?: string;
  group_add?: string[];
  pid?: string;
  ports?: Array<string | { published: number | string; target: number; host_ip?: string }>;
  depends_on?: Record<string, { condition: string }>;
  labels?: Record<string, string>;
}
interface Compose {
  services: Record<string, Service>;
  networks: Record<string, { name?: string; internal?: boolean; driver?: string; driver_opts?: Record<string, string>; ipam?: { config: Array<{ subnet?: string; ip_range?: string; gateway?: string }> } }>;
  volumes?: Record<string, unknown>;
}

function composeConfig(files: string[], env: Record<string, string>): { code: number | null; stderr: string; stdout: string } {
  const res = spawnSync("docker-compose", ["--env-file", emptyEnvFile, ...files.flatMap((f) => ["-f", f]), "config"], {
    cwd: root,
    env: { PATH: process.env.PATH, ...env },
    encoding: "utf8",
    timeout: 60_000,
  });
  if (res.error) throw new Error(`docker-compose could not run (scripts/provision.sh installs it): ${res.error.message}`);
  return { code: res.status, stderr: res.stderr, stdout: res.stdout };
}

function parsed(files: string[], env: Record<string, string>): Compose {
  const res = composeConfig(files, env);
  expect(res.code, res.stderr).toBe(0);
  const json = spawnSync("python3", ["-c", "import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"], { input: res.stdout, encoding: "utf8" });
  expect(json.status, json.stderr).toBe(0);
  return JSON.parse(json.stdout) as Compose;
}

const BASE = ["docker-compose.yml"];
const WITH_PROD = ["docker-compose.yml", "docker-compose.prod.yml"];
const dev = parsed(BASE, REQUIRED);
const prod = parsed(WITH_PROD, { ...REQUIRED, ...PROD });
const flag = (cmd: string[] | string | undefined, name: string): string | undefined => {
  const list = Array.isArray(cmd) ? cmd : (cmd ?? "").split(/\s+/);
  const at = list.indexOf(name);
  return at >= 0 ? list[at + 1] : undefined;
};

describe("docker-compose config (Debian's docker-compose 1.29)", () => {
  it("validates the stack and the production variant", () => {
    expect(Object.keys(dev.services).sort()).toEqual(["docker-api", "firewall", "inngest", "minio", "postgres", "previews", "traefik"]);
    expect(Object.keys(prod.services).sort()).toEqual(Object.keys(dev.services).sort());
  });

  it("refuses to render without a required secret, naming it", () => {
    for (const missing of Object.keys(REQUIRED)) {
      const env: Record<string, string> = { ...REQUIRED };
      delete env[missing];
      const res = composeConfig(BASE, env);
      expect(res.code, missing).not.toBe(0);
      expect(res.stderr).toContain(missing);
    }
    for (const missing of Object.keys(PROD)) {
      const env: Record<string, string> = { ...REQUIRED, ...PROD };
      delete env[missing];
      const res = composeConfig(WITH_PROD, env);
      expect(res.code, missing).not.toBe(0);
      expect(res.stderr).toContain(missing);
    }
  });

  it.each([
    ["dev", dev],
    ["prod", prod],
  ])("%s: every service restarts and has a health check", (_name, c) => {
    for (const [name, s] of Object.entries(c.services)) {
      expect(s.restart, name).toBe("unless-stopped");
      expect(s.healthcheck?.test, name).toBeDefined();
      const test = Array.isArray(s.healthcheck!.test) ? s.healthcheck!.test : [s.healthcheck!.test];
      expect(["CMD", "CMD-SHELL"], name).toContain(test[0]);
    }
  });

  it("networks: backend = database, storage, Inngest, the service; previews = the service and Traefik; the socket proxy only with Traefik", () => {
    const on = (net: string) =>
      Object.entries(dev.services)
        .filter(([, s]) => s.networks && net in s.networks)
        .map(([n]) => n)
        .sort();
    expect(on("backend")).toEqual(["inngest", "minio", "postgres", "previews"]);
    expect(on("previews")).toEqual(["previews", "traefik"]);
    expect(on("docker-api")).toEqual(["docker-api", "traefik"]);
    expect(dev.networks["docker-api"]!.internal).toBe(true);
    // Only the firewall keeper uses the host's network namespace (iptables of the host).
    const hostNet = Object.entries(dev.services).filter(([, s]) => s.network_mode === "host").map(([n]) => n);
    expect(hostNet).toEqual(["firewall"]);
    // The service's default route is the backend network, not the previews bridge.
    const nets = dev.services.previews!.networks!;
    expect(nets.backend!.priority!).toBeGreaterThan(nets.previews!.priority ?? 0);
  });

  it("Traefik never mounts the Docker socket; it reads the engine through the proxy, which allows only reads of containers", () => {
    const traefik = dev.services.traefik!;
    expect(JSON.stringify(traefik.volumes ?? [])).not.toContain("docker.sock");
    expect(traefik.command).toContain("--providers.docker.endpoint=tcp://docker-api:2375");
    expect(traefik.command).toContain("--providers.docker.network=sitebuilder-previews");
    const proxy = dev.services["docker-api"]!;
    expect(proxy.volumes).toEqual(["/var/run/docker.sock:/var/run/docker.sock:ro"]);
    const env = proxy.environment!;
    expect(env.POST).toBe("0");
    expect(env.CONTAINERS).toBe("1");
    const allowed = Object.entries(env).filter(([, v]) => v !== "0").map(([k]) => k).sort();
    expect(allowed).toEqual(["CONTAINERS", "EVENTS", "PING", "VERSION"]);
    for (const k of ["EXEC", "IMAGES", "NETWORKS", "VOLUMES", "BUILD", "SECRETS", "SWARM", "SYSTEM", "AUTH"]) expect(env[k], k).toBe("0");
    // Only the service (the trusted controller), the firewall keeper (to find the trusted peers'
    // bridge ports) and the proxy hold the socket.
    const holders = Object.entries(dev.services).filter(([, s]) => JSON.stringify(s.volumes ?? []).includes("docker.sock")).map(([n]) => n).sort();
    expect(holders).toEqual(["docker-api", "firewall", "previews"]);
  });

  it("the previews network is what the service requires, and the trusted peers agree everywhere", () => {
    const service = dev.services.previews!;
    const env = service.environment!;
    const net = dev.networks.previews!;
    expect(net.name).toBe(env.PREVIEW_NETWORK);
    const ipam = net.ipam!.config[0]!;
    const info = {
      Driver: net.driver ?? "bridge",
      Internal: Boolean(net.internal),
      EnableIPv6: false,
      Options: net.driver_opts ?? {},
      IPAM: { Config: [{ Subnet: ipam.subnet, IPRange: ipam.ip_range, Gateway: ipam.gateway }] },
    };
    const peers = env.PREVIEW_TRUSTED_PEERS!.split(",");
    const settings = { network: env.PREVIEW_NETWORK!, bridgeName: env.PREVIEW_BRIDGE, egress: true, instanceId: "previews", trustedPeers: peers };
    expect(networkProblems(info, settings)).toEqual([]);
    // Without the ip range, or with ICC on, the service would refuse it: the check can fail.
    expect(networkProblems({ ...info, IPAM: { Config: [{ Subnet: ipam.subnet, IPRange: undefined, Gateway: ipam.gateway }] } }, settings)).not.toEqual([]);
    expect(networkProblems({ ...info, Options: { ...info.Options, "com.docker.network.bridge.enable_icc": "true" } }, settings)).not.toEqual([]);
    // The peers are exactly Traefik's and the service's fixed addresses.
    expect([dev.services.traefik!.networks!.previews!.ipv4_address, service.networks!.previews!.ipv4_address].sort()).toEqual([...peers].sort());
    // The firewall keeper installs (and its health check verifies) the same bridge and peers.
    const fw = dev.services.firewall!;
    for (const cmd of [fw.command, fw.healthcheck!.test]) {
      expect(flag(cmd as string[], "--bridge")).toBe(env.PREVIEW_BRIDGE);
      // The network: the keeper asks the engine which container holds each peer's address on it.
      expect(flag(cmd as string[], "--network")).toBe(env.PREVIEW_NETWORK);
      expect(flag(cmd as string[], "--peers")).toBe(env.PREVIEW_TRUSTED_PEERS);
      expect(flag(cmd as string[], "--deny")).toBe(env.PREVIEW_EGRESS_DENY);
    }
    expect(fw.command).toContain("watch");
    expect(fw.healthcheck!.test).toContain("status");
    expect(fw.user).toBe("0:0");
    expect(fw.cap_drop).toEqual(["ALL"]);
    expect([...fw.cap_add!].sort()).toEqual(["NET_ADMIN", "NET_RAW"]);
    // The host's pid namespace: it reads /proc/<peer pid>/net to find the peer's bridge port.
    expect(fw.pid).toBe("host");
    // The keeper manages the rules: the service is told so (no "nobody installs them" warning).
    expect(env.PREVIEW_HOST_FIREWALL).toBe("external");
    expect(loadConfig(env, "/srv/previews").preview.hostFirewall).toBe("external");
  });

  it("the service: the image's non-root user is the preview user, the Docker socket's group, the host pid namespace, storage at the path the daemon sees", () => {
    const s = dev.services.previews!;
    const env = s.environment!;
    expect(s.build?.dockerfile).toBe("docker/previews/Dockerfile");
    expect(s.user).toBeUndefined(); // the image's USER
    const imageUser = /^USER (\S+)$/m.exec(readFileSync(path.join(root, "docker/previews/Dockerfile"), "utf8"))?.[1];
    expect(env.PREVIEW_USER).toBe(imageUser);
    expect(s.group_add).toEqual([REQUIRED.DOCKER_GID]);
    expect(s.pid).toBe("host");
    expect(s.cap_drop).toEqual(["ALL"]);
    expect(s.cap_add).toBeUndefined();
    expect(env.PREVIEW_MOUNT_CHECK).toBe("required");
    expect(env.HOST).toBe("0.0.0.0");
    expect(env.STORAGE_PATH).toBe(env.STORAGE_HOST_PATH);
    expect(s.volumes).toContain(`${env.STORAGE_HOST_PATH}:${env.STORAGE_HOST_PATH}:rw`);
    expect(env).toMatchObject({ MINIO_ENDPOINT: "minio:9000", MINIO_USE_SSL: "false", MINIO_SECRET_KEY: REQUIRED.MINIO_ROOT_PASSWORD });
    expect(env.MINIO_ACCESS_KEY).toBe(dev.services.minio!.environment!.MINIO_ROOT_USER);
    expect(Object.keys(env)).toEqual(expect.arrayContaining(["MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_USE_SSL", "MINIO_BUCKET"]));
    expect(env.DATABASE_URL).toBe(`postgresql://previews:${REQUIRED.POSTGRES_PASSWORD}@postgres:5432/previews`);
    for (const dep of ["postgres", "minio", "firewall"]) expect(s.depends_on?.[dep]?.condition, dep).toBe("service_healthy");
    // The wake router catches exactly the preview domain the service serves.
    const domain = env.PREVIEW_DOMAIN!;
    // (docker-compose config writes a literal $ as $$.)
    const wake = (s.labels?.["traefik.http.routers.preview-wake.rule"] ?? "").replace(/\$\$/g, "$");
    expect(wake).toBe(`HostRegexp(\`^[a-z0-9-]+\\.${domain.replace(/\./g, "\\.")}$\`)`);
    // The firewall keeper runs the service's image, built the same way (never pulled).
    expect(dev.services.firewall!.image).toBe(s.image);
    expect(dev.services.firewall!.build).toEqual(s.build);
    // Forward-auth goes to the service over the previews network.
    expect(s.labels?.["traefik.http.middlewares.preview-auth.forwardauth.address"]).toBe("http://previews:3000/forward-auth");
    expect(s.labels?.["traefik.docker.network"]).toBe(env.PREVIEW_NETWORK);
  });

  it("the service's environment passes its own config schema: dev (Inngest dev server) and prod (signed)", () => {
    const devConfig = loadConfig(dev.services.previews!.environment!, "/srv/previews");
    expect(devConfig.inngest.dev).toBe("http://inngest:8288");
    expect(devConfig.preview.trustedPeers).toEqual(["172.29.0.2", "172.29.0.3"]);
    expect(devConfig.storage).toEqual({ path: "/srv/sitebuilder/storage", hostPath: "/srv/sitebuilder/storage" });
    expect(devConfig.database.driver).toBe("pg");

    const prodConfig = loadConfig(prod.services.previews!.environment!, "/srv/previews");
    expect(prodConfig.inngest).toMatchObject({ dev: false, signingKey: `signkey-prod-${PROD.INNGEST_SIGNING_KEY}`, eventKey: PROD.INNGEST_EVENT_KEY, baseUrl: "http://inngest:8288", serveOrigin: "http://previews:3000" });
    // Inngest Cloud: INNGEST_BASE_URL set to empty turns the self-hosted URL off.
    const cloud = parsed(WITH_PROD, { ...REQUIRED, ...PROD, INNGEST_BASE_URL: "" });
    expect(loadConfig(cloud.services.previews!.environment!, "/srv/previews").inngest.baseUrl).toBeNull();
  });

  it("Inngest: the dev server syncs the service, dashboard on loopback 8288, state on a volume; prod runs `inngest start` with the keys", () => {
    const d = dev.services.inngest!;
    expect(d.command).toEqual(expect.arrayContaining(["dev", "-u", "http://previews:3000/api/inngest"]));
    expect(JSON.stringify(d.ports)).toMatch(/8288/);
    expect(JSON.stringify(d.ports)).toMatch(/127\.0\.0\.1/);
    expect(d.volumes?.some((v) => typeof v === "string" && v.startsWith("inngest:"))).toBe(true);
    expect(dev.volumes).toHaveProperty("inngest");
    const p = prod.services.inngest!;
    expect((p.command as string[]).slice(0, 2)).toEqual(["inngest", "start"]);
    expect(flag(p.command, "--sdk-url")).toBe("http://previews:3000/api/inngest");
    expect(p.environment).toMatchObject(PROD);
    expect(prod.services.previews!.environment).toMatchObject({ INNGEST_DEV: "0", ALLOW_UNSIGNED_REMOTE: "0" });
  });

  it("Postgres has a health check and a volume; nothing but Traefik is published beyond loopback", () => {
    expect(JSON.stringify(dev.services.postgres!.healthcheck!.test)).toContain("pg_isready");
    for (const [name, s] of Object.entries(dev.services)) {
      for (const port of s.ports ?? []) {
        const text = typeof port === "string" ? port : `${port.host_ip ?? ""}:${port.published}:${port.target}`;
        if (name !== "traefik") expect(text, name).toMatch(/^127\.0\.0\.1:/);
      }
    }
  });
  it.each([
    ["dev", dev],
    ["prod", prod],
  ])("%s: every service's log is rotated (json-file, max-size, max-file)", (_name, c) => {
    for (const [name, s] of Object.entries(c.services)) {
      expect(s.logging?.driver, name).toBe("json-file");
      expect(s.logging?.options?.["max-size"], name).toBe("10m");
      expect(s.logging?.options?.["max-file"], name).toBe("5");
    }
    const custom = parsed(BASE, { ...REQUIRED, LOG_MAX_SIZE: "50m", LOG_MAX_FILES: "2" });
    expect(custom.services.previews!.logging?.options).toEqual({ "max-size": "50m", "max-file": "2" });
  });

  it("the firewall keeper binds the host's xtables lock in long syntax (a missing file fails the start, never becomes a directory)", () => {
    const vols = dev.services.firewall!.volumes!;
    expect(vols).toContainEqual({ type: "bind", source: "/run/xtables.lock", target: "/run/xtables.lock" });
    expect(vols.filter((v) => JSON.stringify(v).includes("xtables"))).toHaveLength(1);
  });

  it("Inngest: health check with curl (current debian-slim images) or wget (older ones), state writable on the volume", () => {
    for (const c of [dev, prod]) {
      const s = c.services.inngest!;
      const test = JSON.stringify(s.healthcheck!.test);
      expect(test).toContain("curl -fsS -o /dev/null http://127.0.0.1:8288/health");
      // The image's user has no home: a fresh named volume is root's. Root without capabilities writes there.
      expect(s.user).toBe("0:0");
      expect(s.cap_drop).toEqual(["ALL"]);
      expect(s.environment?.HOME).toBe("/home/inngest");
      expect(s.volumes).toContain("inngest:/home/inngest:rw");
    }
    expect(flag(prod.services.inngest!.command, "--sqlite-dir")!.startsWith("/home/inngest/")).toBe(true);
  });

  it("every image tag is a variable (pin these)", () => {
    const pinned = parsed(BASE, { ...REQUIRED, INNGEST_TAG: "v9.9.9", POSTGRES_TAG: "17.1-alpine", MINIO_TAG: "RELEASE.x", SOCKET_PROXY_TAG: "0.3.0", TRAEFIK_TAG: "v3.4.1", PREVIEWS_TAG: "1.2.3" });
    expect(Object.fromEntries(Object.entries(pinned.services).map(([n, s]) => [n, s.image]))).toEqual({
      previews: "sitebuilder-previews:1.2.3",
      firewall: "sitebuilder-previews:1.2.3",
      postgres: "postgres:17.1-alpine",
      minio: "minio/minio:RELEASE.x",
      "docker-api": "tecnativa/docker-socket-proxy:0.3.0",
      traefik: "traefik:v3.4.1",
      inngest: "inngest/inngest:v9.9.9",
    });
  });

  it("PROJECTS_DATABASE_URL: required; none = no project source, a URL = the sweep reads projects there", () => {
    expect(loadConfig(dev.services.previews!.environment!, "/srv/previews").sweep.projects).toBeNull();
    const url = "postgresql://readonly:s3cret@orchestrator.internal:5432/app";
    const withSource = parsed(BASE, { ...REQUIRED, PROJECTS_DATABASE_URL: url, PROJECTS_TABLE: "orchestrator.projects" });
    const projects = loadConfig(withSource.services.previews!.environment!, "/srv/previews").sweep.projects;
    expect(projects?.database.url).toBe(url);
    expect(projects?.table).toBe("orchestrator.projects");
  });

  it("operator settings pass through from .env, and their defaults are the service's own", () => {
    const defaults = loadConfig(dev.services.previews!.environment!, "/srv/previews");
    const bare = loadConfig({ ...dev.services.previews!.environment!, INSTANCE_ID: "", LOG_LEVEL: "", MAX_RUNNING_PREVIEWS: "", IDLE_TIMEOUT: "", READY_TIMEOUT: "", PREVIEW_MEMORY: "", PREVIEW_CPUS: "", SWEEP_CRON: "", STOPPED_RETENTION: "", SWEEP_GRACE: "", SWEEP_MAX_ORPHAN_FRACTION: "", SWEEP_CONCURRENCY: "", PROJECTS_TABLE: "" }, "/srv/previews");
    expect(defaults).toEqual(bare);
    const set = {
      INSTANCE_ID: "host-b",
      LOG_LEVEL: "debug",
      MAX_RUNNING_PREVIEWS: "12",
      IDLE_TIMEOUT: "30m",
      READY_TIMEOUT: "120s",
      PREVIEW_MEMORY: "2g",
      PREVIEW_CPUS: "2",
      SWEEP_CRON: "0 * * * *",
      STOPPED_RETENTION: "48h",
      SWEEP_GRACE: "5m",
      SWEEP_MAX_ORPHAN_FRACTION: "0.25",
      SWEEP_CONCURRENCY: "4",
    };
    const env = parsed(BASE, { ...REQUIRED, ...set }).services.previews!.environment!;
    expect(env).toMatchObject(set);
    const c = loadConfig(env, "/srv/previews");
    expect(c.preview.instanceId).toBe("host-b");
    expect(c.logLevel).toBe("debug");
    expect(c.maxRunningPreviews).toBe(12);
    expect(c.activity.idleTimeoutMs).toBe(30 * 60_000);
    expect(c.preview.readyTimeoutMs).toBe(120_000);
    expect(c.sweep).toMatchObject({ cron: "0 * * * *", retentionMs: 48 * 3_600_000, graceMs: 5 * 60_000, maxOrphanFraction: 0.25, concurrency: 4 });
    const rotated = parsed(WITH_PROD, { ...REQUIRED, ...PROD, INNGEST_SIGNING_KEY_FALLBACK: `signkey-prod-${"b2".repeat(32)}` });
    expect(loadConfig(rotated.services.previews!.environment!, "/srv/previews").inngest.signingKeyFallback).toBe(`signkey-prod-${"b2".repeat(32)}`);
    expect(loadConfig(prod.services.previews!.environment!, "/srv/previews").inngest.signingKeyFallback).toBeNull();
  });

  it("POSTGRES_PASSWORD is pasted into DATABASE_URL: a hex one (openssl rand -hex 32) round-trips, one with URL characters does not", () => {
    const hex = "9f".repeat(32);
    const url = parsed(BASE, { ...REQUIRED, POSTGRES_PASSWORD: hex }).services.previews!.environment!.DATABASE_URL!;
    expect(new URL(url).password).toBe(hex);
    // Why README says hex: `/`, `#`, `?` or `@` in the password break the URL.
    const bad = parsed(BASE, { ...REQUIRED, POSTGRES_PASSWORD: "pa/ss#word" }).services.previews!.environment!.DATABASE_URL!;
    expect(() => loadConfig({ ...dev.services.previews!.environment!, DATABASE_URL: bad }, "/srv/previews")).toThrow(/DATABASE_URL/);
  });
});
