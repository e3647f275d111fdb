/**
 * `npm run dev` with the bundled Inngest dev server (runtime/dev.ts spawned for real): what it
 * prints when that server cannot start, and when it does. `npx` is replaced (first on PATH) by a
 * script: one that fails as a failed inngest-cli download does, one that serves HTTP on the dev
 * server's port (INNGEST_BASE_URL, a free port) as a started dev server would. Everything else is
 * real: the service, its PGlite state, Docker (the run's stub image as the preview image, so
 * nothing is built; a private network, removed at the end; PREVIEW_HOST_FIREWALL=off, so no host
 * rule is installed).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import Docker from "dockerode";
import { afterAll, describe, expect, inject, it } from "vitest";
import { stubImage } from "../helpers/docker.js";
import { freeLoopbackPort } from "../helpers/postgres.js";

const REPO = path.resolve(import.meta.dirname, "../..");
const TSX = path.join(REPO, "node_modules/tsx/dist/cli.mjs");
const docker = new Docker();
const suffix = randomBytes(4).toString("hex");
const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
}, 60_000);

/** Starts `npm run dev -- --demo=<id>` in a fresh folder with `fakeNpx` as npx; returns its output so far and a waiter. */
async function startDev(name: string, fakeNpx: string, extraEnv: Record<string, string> = {}) {
  const dir = await mkdtemp(path.join(os.tmpdir(), `sbp-devsrv-${name}-`));
  const bin = path.join(dir, "bin");
  await mkdir(bin);
  await writeFile(path.join(bin, "npx"), fakeNpx);
  await chmod(path.join(bin, "npx"), 0o755);
  const network = `sbp-test-devsrv-${name}-${suffix}`;
  const env: Record<string, string> = {
    PATH: `${bin}:${path.dirname(process.execPath)}:${process.env.PATH ?? "/usr/bin:/bin"}`,
    HOME: process.env.HOME ?? "/root",
    PORT: "0",
    LOG_LEVEL: "warn",
    STORAGE_PATH: "storage",
    DATA_PATH: "data",
    PREVIEW_NETWORK: network,
    PREVIEW_IMAGE: stubImage(inject("testRunId")),
    PREVIEW_HOST_FIREWALL: "off",
    ...extraEnv,
  };
  const child: ChildProcess = spawn(process.execPath, [TSX, path.join(REPO, "runtime/dev.ts"), `--demo=demo-${suffix}`], { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (c: Buffer) => (output += c.toString("utf8")));
  child.stderr!.on("data", (c: Buffer) => (output += c.toString("utf8")));
  cleanups.push(async () => {
    if (child.exitCode === null) {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    }
    await docker.getNetwork(network).remove().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });
  const lines = () => output.split("\n");
  async function printed(pattern: RegExp, ms = 60_000): Promise<string> {
    const started = Date.now();
    while (Date.now() - started < ms) {
      const line = lines().find((l) => pattern.test(l));
      if (line !== undefined) return line;
      if (child.exitCode !== null) throw new Error(`npm run dev exited with ${child.exitCode} before printing ${pattern}:\n${output}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`npm run dev did not print ${pattern} within ${ms} ms:\n${output}`);
  }
  return { dir, lines, printed };
}

describe("npm run dev: the bundled Inngest dev server", () => {
  it("cannot start: a [dev] line says it is not running and how to use INNGEST_DEV in .env, before the JSON warning; no launch curl", async () => {
    const dev = await startDev("down", "#!/bin/sh\necho 'inngest-cli: could not download the dev server binary' >&2\nexit 1\n");
    const down = await dev.printed(/^\[dev\] Inngest dev server is not running/);
    expect(down).toContain("inngest-cli exited with code 1");
    expect(down).toContain("INNGEST_DEV=");
    expect(down).toContain(".env");
    const warning = await dev.printed(/Inngest dev server unavailable/);
    expect(dev.lines().indexOf(down)).toBeLessThan(dev.lines().indexOf(warning));
    // Its output was kept where the line says.
    const log = /output in (\S+inngest-dev\.log)/.exec(down)?.[1];
    expect(await readFile(log!, "utf8")).toContain("could not download");
    // The site hints still came; the dashboard and a curl to a port nobody listens on did not.
    await dev.printed(/^\[dev\] demo site written to/);
    await dev.printed(/^\[dev\] follow it: /);
    expect(dev.lines().filter((l) => /curl -sS -X POST|Inngest dashboard/.test(l))).toEqual([]);
  }, 90_000);

  it("starts: the dashboard and the launch curl are printed once it answers HTTP", async () => {
    const port = await freeLoopbackPort();
    const server = `http://127.0.0.1:${port}`;
    // exec: the server is npx's own process, in the process group dev.ts stops on exit.
    const fake = `#!/bin/sh\nexec node -e "require('http').createServer((q, r) => r.end('dev server')).listen(${port}, '127.0.0.1')"\n`;
    const dev = await startDev("up", fake, { INNGEST_BASE_URL: server });
    expect(await dev.printed(/^\[dev\] Inngest dashboard:/)).toBe(`[dev] Inngest dashboard: ${server}`);
    expect(await dev.printed(/^\[dev\]\s+curl -sS -X POST/)).toContain(`${server}/e/dev`);
    expect(dev.lines().filter((l) => l.includes("not running"))).toEqual([]);
  }, 90_000);
});
