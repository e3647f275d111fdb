/**
 * The composition root for real: `startService` with a file-backed PGlite and storage in a temp
 * dir, the local Docker engine and an Inngest stand-in; then `runtime/main.ts` as a process.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, stat, symlink, writeFile } from "node:fs/promises";
import net from "node:net";
import type { AddressInfo } from "node:net";
import os from "node:os";
import { Writable } from "node:stream";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { loadConfig } from "../../runtime/config.js";
import { SHUTDOWN_GRACE_MS, startService, type RunningService } from "../../runtime/service.js";
import { SqlPreviewStore } from "../../sql/preview-store.js";
import { SITE_SCRIPTS, stubImage, testDocker } from "../helpers/docker.js";
import { removeServiceNetwork, serviceEnv } from "../helpers/service-env.js";
import { runFunction, startInngestStandIn, type InngestStandIn } from "../helpers/inngest-server.js";
import { freeLoopbackPort } from "../helpers/postgres.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const silent = pino({ level: "silent" });

let tmp: string;
let standIn: InngestStandIn;
const running: RunningService[] = [];

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "sbp-service-"));
  standIn = await startInngestStandIn();
});

afterEach(async () => {
  for (const service of running.splice(0)) await service.close().catch(() => undefined);
});

afterAll(async () => {
  await removeServiceNetwork();
  await standIn?.close();
  await rm(tmp, { recursive: true, force: true });
});

function env(dir: string, extra: Record<string, string> = {}): Record<string, string> {
  return serviceEnv(dir, standIn.url, extra);
}

async function start(vars: Record<string, string>): Promise<RunningService> {
  const service = await startService(loadConfig(vars), silent);
  running.push(service);
  return service;
}

describe("startService", () => {
  it("starts from loadConfig with PORT=0 (any free port), as RunningService.port documents", async () => {
    const service = await startService(loadConfig(env(path.join(tmp, "port-zero"), { PORT: "0" })), silent);
    running.push(service);
    expect(service.port).toBeGreaterThan(0);
    expect((await fetch(`http://127.0.0.1:${service.port}/healthz`)).status).toBe(200);
  });

  it("serves health and readiness, creates storage, and closes", async () => {
    const dir = path.join(tmp, "basic");
    const service = await start(env(dir));
    expect(service.port).toBeGreaterThan(0);
    expect(service.config.storage.path).toBe(path.join(dir, "storage"));
    expect(service.db.driver).toBe("pglite");
    const base = `http://127.0.0.1:${service.port}`;

    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok" });

    const ready = await fetch(`${base}/readyz`);
    expect(await ready.json()).toEqual({ status: "ready" });
    expect(ready.status).toBe(200);

    expect((await stat(path.join(dir, "storage"))).isDirectory()).toBe(true);
    // PGlite is file-backed under DATA_PATH.
    expect((await stat(path.join(dir, "data", "pglite"))).isDirectory()).toBe(true);

    const list = await fetch(`${base}/previews`);
    expect(list.status).toBe(200);
    expect(await list.json()).toEqual({ previews: [] });

    const inngest = await fetch(`${base}/api/inngest`);
    expect(inngest.status).toBe(200);
    // launch, stop, remove and sweep-item with their failure handlers, track-idle and sweep-previews.
    expect(await inngest.json()).toMatchObject({ function_count: 10 });

    running.splice(running.indexOf(service), 1);
    await service.close();
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
    // The PGlite lock is released: the same data path opens again.
    expect(existsSync(path.join(dir, "data", "pglite.lock"))).toBe(false);
  });

  it("keeps state across a restart on the same data path", async () => {
    const dir = path.join(tmp, "restart");
    const first = await start(env(dir));
    const store = new SqlPreviewStore(first.db);
    await store.apply("svc-1", "launch", { reason: "launch" });
    await store.apply("svc-1", "ready", { reason: "ready", url: "http://svc-1.preview.localhost", containerId: "c1" });
    running.splice(running.indexOf(first), 1);
    await first.close();

    const second = await start(env(dir));
    const res = await fetch(`http://127.0.0.1:${second.port}/previews/svc-1`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ projectId: "svc-1", status: "running", containerId: "c1" });
  });

  it("guards the previews API with API_TOKEN", async () => {
    const token = "service-token-0123456789";
    const service = await start(env(path.join(tmp, "token"), { API_TOKEN: token, PREVIEW_LINK_SECRET: "link-secret-0123456789abcdef0123456789" }));
    const base = `http://127.0.0.1:${service.port}`;
    expect((await fetch(`${base}/previews`)).status).toBe(401);
    expect((await fetch(`${base}/previews`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  });

  it("shuts down within the grace period while a readiness probe is in flight: the probe ends at once", async () => {
    const dir = path.join(tmp, "shutdown");
    const network = `sbp-test-shutdown-${randomBytes(3).toString("hex")}`;
    const docker = testDocker();
    const id = `shutdown-${randomBytes(3).toString("hex")}`;
    const site = path.join(dir, "storage", "projects", id, "site");
    await mkdir(site, { recursive: true });
    await writeFile(path.join(site, "start.sh"), SITE_SCRIPTS.silent);
    // The stub image carries the test label, so its containers do too (removed at teardown).
    const service = await start(env(dir, { PREVIEW_IMAGE: stubImage(inject("testRunId")), PREVIEW_NETWORK: network, READY_TIMEOUT: "120s" }));
    try {
      const serveUrl = `http://127.0.0.1:${service.port}/api/inngest`;
      const run = runFunction({ serveUrl, fnId: "previews-launch-preview", event: { name: "pipeline.step7", data: { projectId: id } } }).catch(
        (err: unknown) => err,
      );
      // Wait until the dev server "compiles": the launch is now probing (a 15 s slice by default).
      for (let i = 0; i < 200; i++) {
        const info = await docker.getContainer(`preview-${id}`).inspect().catch(() => null);
        if (info?.State.Running) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      await new Promise((r) => setTimeout(r, 500));
      const started = Date.now();
      running.splice(running.indexOf(service), 1);
      await service.close();
      // Well under the grace period: the probe in flight was aborted, not cut off after it.
      expect(Date.now() - started).toBeLessThan(SHUTDOWN_GRACE_MS);
      await run;
    } finally {
      await docker.getContainer(`preview-${id}`).remove({ force: true }).catch(() => undefined);
      await docker.getNetwork(network).remove().catch(() => undefined);
    }
  });

  it("warns at start-up about a container on the preview network that is neither a preview nor a trusted peer, and leaves it alone (review F2)", async () => {
    const docker = testDocker();
    const vars = env(path.join(tmp, "strangers"));
    // A first start creates the service's preview network.
    await (await start(vars)).close();
    const stranger = await docker.createContainer({
      name: `sbpt-stranger-${randomBytes(3).toString("hex")}`,
      Image: stubImage(inject("testRunId")),
      Cmd: ["/bin/busybox", "sleep", "120"],
      Labels: { "sitebuilder.test-run": inject("testRunId") },
      HostConfig: { NetworkMode: vars.PREVIEW_NETWORK },
    });
    try {
      await stranger.start();
      const lines: string[] = [];
      const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(chunk.toString()), done()) });
      const service = await startService(loadConfig(vars), pino({ level: "warn" }, sink));
      running.push(service);
      const deadline = Date.now() + 15_000;
      // pino's writes may carry several lines (or part of one): parse the whole text line by line.
      const parsed = () =>
        lines
          .join("")
          .split("\n")
          .flatMap((l) => {
            try {
              return [JSON.parse(l) as { msg: string; containerId?: string; network?: string }];
            } catch {
              return [];
            }
          });
      const warning = () => parsed().find((l) => l.containerId === stranger.id);
      while (!warning() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(warning(), lines.join("")).toMatchObject({ network: vars.PREVIEW_NETWORK, msg: expect.stringContaining("neither a preview of this instance nor a trusted peer") });
      // Reported, never touched: it still runs on the network.
      const info = await stranger.inspect();
      expect(info.State.Running).toBe(true);
      expect(Object.keys(info.NetworkSettings.Networks)).toEqual([vars.PREVIEW_NETWORK]);
    } finally {
      await stranger.remove({ force: true });
    }
  });

  it("refuses to start when STORAGE_PATH/projects is a symbolic link (what previews mount comes from there)", async () => {
    const dir = path.join(tmp, "linked-projects");
    await mkdir(path.join(dir, "storage"), { recursive: true });
    await mkdir(path.join(dir, "elsewhere"), { recursive: true });
    await symlink(path.join(dir, "elsewhere"), path.join(dir, "storage", "projects"));
    await expect(startService(loadConfig(env(dir)), silent)).rejects.toThrow(
      `storage: ${path.join(dir, "storage", "projects")} is a symbolic link; point STORAGE_PATH at the real folder`,
    );
  });

  it("releases the database when the port is taken, so a retry can start", async () => {
    const dir = path.join(tmp, "port-taken");
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    try {
      const port = String((blocker.address() as AddressInfo).port);
      await expect(startService(loadConfig(env(dir, { PORT: port })), silent)).rejects.toMatchObject({ code: "EADDRINUSE" });
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
    // The failed start must not keep the PGlite data directory open (and locked) in this process.
    const retry = await start(env(dir));
    expect((await fetch(`http://127.0.0.1:${retry.port}/healthz`)).status).toBe(200);
  });
});

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `node --import tsx runtime/main.ts` with exactly `vars` (plus PATH/HOME). */
function runMain(vars: Record<string, string>, onStdout?: (text: string, kill: (s: NodeJS.Signals) => void) => void): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "runtime/main.ts"], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? tmp, ...vars },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), 45_000);
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      onStdout?.(stdout, (s) => child.kill(s));
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

describe("runtime/main.ts as a process", () => {
  it("exits 2 with one message naming every bad variable, without a stack trace", async () => {
    const bad = {
      PORT: "abc",
      PREVIEW_ROUTING: "nginx",
      PREVIEW_MEMORY: "lots",
      READY_TIMEOUT: "soon",
      STORAGE_HOST_PATH: "relative",
      DOCKER_HOST: "ftp://x",
      API_TOKEN: "short",
    };
    const result = await runMain({ INNGEST_DEV: "1", DATA_PATH: path.join(tmp, "main-bad"), ...bad });
    expect(result.code).toBe(2);
    for (const name of Object.keys(bad)) expect(result.stderr).toContain(`${name}:`);
    expect(result.stderr.match(/invalid configuration/g)).toHaveLength(1);
    expect(result.stderr).not.toMatch(/^\s+at /m);
    expect(result.stderr).not.toContain("ConfigError");
    expect(result.stdout).toBe("");
    // Nothing was started or created.
    expect(existsSync(path.join(tmp, "main-bad"))).toBe(false);
  });

  it("exits 2 for cloud mode without a signing key", async () => {
    const result = await runMain({ DATA_PATH: path.join(tmp, "main-cloud") });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("INNGEST_SIGNING_KEY");
    expect(result.stderr).not.toMatch(/^\s+at /m);
  });

  it("starts with a valid environment and exits 0 on SIGTERM", async () => {
    const dir = path.join(tmp, "main-ok");
    let port: number | undefined;
    let healthz: Promise<number> | undefined;
    const result = await runMain(
      { ...env(dir), PORT: String(await freeLoopbackPort()), LOG_LEVEL: "info" },
      (text, kill) => {
        if (port !== undefined) return;
        for (const line of text.split("\n")) {
          if (!line.includes("previews service listening")) continue;
          port = (JSON.parse(line) as { port: number }).port;
          healthz = fetch(`http://127.0.0.1:${port}/healthz`)
            .then((r) => r.status)
            .finally(() => kill("SIGTERM"));
        }
      },
    );
    expect(port).toBeGreaterThan(0);
    expect(await healthz).toBe(200);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('"msg":"shutting down"');
    expect((await stat(path.join(dir, "storage"))).isDirectory()).toBe(true);
    expect(existsSync(path.join(dir, "data", "pglite.lock"))).toBe(false);
  });
});
