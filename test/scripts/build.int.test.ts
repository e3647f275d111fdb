/**
 * Production runs compiled JavaScript: `npm run build` emits dist/ (here into a directory of
 * this run, inside the checkout so that node_modules resolve as they do for dist/), and plain
 * `node` runs it with no tsx and no TypeScript: the host starts on a fresh Postgres database,
 * finds and applies the SQL migrations from the compiled sql/migrate.js, answers /healthz, says
 * in /readyz that Docker is unreachable (pointed at a socket that does not exist, so nothing is
 * created in the engine), and stops on SIGTERM. The compiled firewall script runs too.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { builtinModules } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testDatabaseSettings } from "../helpers/postgres.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const outDir = path.join(root, `.build-test-${randomBytes(4).toString("hex")}`);

/** Lines of pino JSON a child printed, parsed as they come. */
function jsonLines(child: ChildProcess): { logs: Array<Record<string, unknown>>; text: () => string } {
  const logs: Array<Record<string, unknown>> = [];
  let buffered = "";
  let all = "";
  const take = (chunk: Buffer) => {
    all += chunk.toString();
    buffered += chunk.toString();
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not a log line
      }
    }
  };
  child.stdout?.on("data", take);
  child.stderr?.on("data", take);
  return { logs, text: () => all };
}

async function waitFor<T>(what: string, fn: () => T | undefined, ms: number, output: () => string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; output:\n${output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("npm run build, then node on the output", () => {
  let built: ReturnType<typeof spawnSync>;
  beforeAll(() => {
    built = spawnSync("npm", ["run", "build", "--", "--out-dir", outDir], { cwd: root, encoding: "utf8", timeout: 120_000 });
  });
  afterAll(async () => {
    await rm(outDir, { recursive: true, force: true });
  });

  it("emits the entry points and the migrations beside the compiled migrator", () => {
    expect(built.status, String(built.stderr) + String(built.stdout)).toBe(0);
    for (const entry of ["runtime/main.js", "runtime/dev.js", "scripts/preview-firewall.js", "sql/migrate.js"]) expect(existsSync(path.join(outDir, entry)), entry).toBe(true);
    const sources = readdirSync(path.join(root, "sql/migrations")).filter((f) => f.endsWith(".sql")).sort();
    expect(sources.length).toBeGreaterThan(0);
    expect(readdirSync(path.join(outDir, "sql/migrations")).sort()).toEqual(sources);
    // No test, bench or TypeScript source in the output.
    expect(existsSync(path.join(outDir, "test"))).toBe(false);
    expect(existsSync(path.join(outDir, "bench"))).toBe(false);
  });

  it("production needs neither tsx nor TypeScript: they are dev dependencies", () => {
    const pkg = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as { dependencies: Record<string, string>; devDependencies: Record<string, string>; scripts: Record<string, string> };
    expect(Object.keys(pkg.dependencies)).not.toContain("tsx");
    expect(Object.keys(pkg.dependencies)).not.toContain("typescript");
    expect(pkg.devDependencies).toHaveProperty("tsx");
    expect(pkg.scripts.start).toMatch(/^node .*dist\/runtime\/main\.js$/);
  });

  it("the compiled code imports only production dependencies and Node built-ins (what `npm ci --omit=dev` installs)", () => {
    const pkg = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as { dependencies: Record<string, string> };
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith(".js")) files.push(p);
      }
    };
    walk(outDir);
    const packages = new Set<string>();
    for (const file of files) {
      const text = readFileSync(file, "utf8");
      for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["']([^"'./][^"']*)["']/g)) {
        const spec = m[1]!;
        if (spec.startsWith("node:") || builtinModules.includes(spec)) continue;
        packages.add(spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!);
      }
    }
    expect(packages.size).toBeGreaterThan(5);
    expect([...packages].filter((p) => !(p in pkg.dependencies))).toEqual([]);
  });

  it("starts with plain node on a fresh Postgres database: migrations applied, /healthz 200, /readyz names Docker, SIGTERM stops it", async () => {
    const db = await testDatabaseSettings("pg");
    const cwd = await mkdtemp(path.join(os.tmpdir(), "sbp-build-run-"));
    const child = spawn(process.execPath, ["--enable-source-maps", path.join(outDir, "runtime/main.js")], {
      cwd, // no .env here
      env: {
        PATH: process.env.PATH,
        PORT: "0",
        HOST: "127.0.0.1",
        INNGEST_DEV: "1",
        DATABASE_URL: db.settings.url!,
        STORAGE_PATH: path.join(cwd, "storage"),
        // A socket that does not exist: the host must serve anyway, and nothing touches the engine.
        DOCKER_HOST: `unix://${path.join(cwd, "no-docker.sock")}`,
        PREVIEW_HOST_FIREWALL: "off",
        PREVIEW_MOUNT_CHECK: "path",
        LOG_LEVEL: "info",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const out = jsonLines(child);
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    try {
      const listening = await waitFor("the listening line", () => out.logs.find((l) => l.msg === "previews service listening"), 30_000, out.text);
      const port = listening.port as number;
      expect(port).toBeGreaterThan(0);
      const ready = await waitFor("the database", () => out.logs.find((l) => l.msg === "database ready"), 30_000, out.text);
      const sources = readdirSync(path.join(root, "sql/migrations")).filter((f) => f.endsWith(".sql")).map((f) => f.slice(0, 3)).sort();
      expect(ready.applied).toEqual(sources);
      const health = await fetch(`http://127.0.0.1:${port}/healthz`);
      expect(health.status).toBe(200);
      const readiness = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect(readiness.status).toBe(503);
      const body = (await readiness.json()) as { failing: Record<string, string> };
      expect(Object.keys(body.failing)).toContain("docker");
      expect(Object.keys(body.failing)).not.toContain("database");
      child.kill("SIGTERM");
      expect(await Promise.race([exited, new Promise((r) => setTimeout(() => r("still running"), 12_000))])).toBe(0);
    } finally {
      child.kill("SIGKILL");
      await exited;
      await rm(cwd, { recursive: true, force: true });
      await db.cleanup();
    }
  });

  it("the compiled firewall script runs (print: the commands for a bridge, changing nothing)", () => {
    const res = spawnSync(process.execPath, [path.join(outDir, "scripts/preview-firewall.js"), "print", "--bridge", "sbp-buildtest", "--deny", "10.0.0.0/8"], { encoding: "utf8" });
    expect(res.status, res.stderr).toBe(0);
    expect(res.stdout).toContain("iptables -w -I INPUT 1 -i sbp-buildtest");
    expect(res.stdout).toContain("-d 10.0.0.0/8");
  });

  it("the compiled firewall `watch` (compose's firewall service) installs the rules, puts back one removed behind its back, and leaves them on SIGTERM", async () => {
    const bridge = `sbp-w${randomBytes(4).toString("hex")}`;
    const args = [path.join(outDir, "scripts/preview-firewall.js"), "--bridge", bridge, "--peers", "10.77.0.2", "--deny", "169.254.0.0/16"];
    const status = () => spawnSync(process.execPath, [args[0]!, "status", ...args.slice(1)], { encoding: "utf8" });
    const ours = () => spawnSync("iptables", ["-w", "5", "-S"], { encoding: "utf8" }).stdout.split("\n").filter((l) => l.includes(`sitebuilder-previews:${bridge}`));
    const watch = spawn(process.execPath, [args[0]!, "watch", ...args.slice(1), "--every", "1"], { stdio: ["ignore", "pipe", "pipe"] });
    const out = jsonLines(watch);
    const exited = new Promise<number | null>((resolve) => watch.once("exit", (code) => resolve(code)));
    try {
      await waitFor("the first round", () => (out.text().includes("rule(s) in place") ? true : undefined), 15_000, out.text);
      expect(status().status).toBe(0);
      expect(ours()).toHaveLength(3);
      // No container holds the peer's address (no such network here): the peer's rule is the
      // fail-closed DROP, no ACCEPT (its bridge port is unknown), and the keeper says why.
      expect(ours().filter((l) => l.endsWith("-j ACCEPT"))).toEqual([]);
      expect(out.text()).toContain("trusted peer 10.77.0.2: bridge port not found (no running container holds it)");
      // A firewall reload drops the peer's rule: the next round puts it back.
      const peerRule = ours().find((l) => l.includes("-s 10.77.0.2/32"))!;
      expect(peerRule).toMatch(/-j DROP$/);
      expect(spawnSync("iptables", ["-w", "5", ...peerRule.replace(/^-A /, "-D ").split(" ").map((t) => t.replace(/^"(.*)"$/, "$1"))]).status).toBe(0);
      // (No status check here: a round every second may already have put it back, a CI flake.)
      // The round logs once its rule is in (the log line can trail the rule itself).
      await waitFor("the rule back", () => (out.text().includes("1 rule(s) added") ? true : undefined), 10_000, out.text);
      expect(status().status).toBe(0);
      watch.kill("SIGTERM");
      expect(await exited).toBe(0);
      expect(ours()).toHaveLength(3);
    } finally {
      watch.kill("SIGKILL");
      await exited;
      spawnSync(process.execPath, [args[0]!, "remove", "--bridge", bridge]);
    }
    expect(ours()).toEqual([]);
  });

  it("the compiled firewall script reads the real firewall (status of a bridge nobody has: every rule MISSING, exit 1, nothing changed)", () => {
    const before = spawnSync("iptables", ["-w", "5", "-S"], { encoding: "utf8" }).stdout;
    const bridge = `sbp-b${randomBytes(4).toString("hex")}`;
    const res = spawnSync(process.execPath, [path.join(outDir, "scripts/preview-firewall.js"), "status", "--bridge", bridge, "--peers", "172.29.0.2"], { encoding: "utf8" });
    expect(res.status, res.stderr).toBe(1);
    expect(res.stdout.split("\n").filter((l) => l.startsWith("MISSING"))).toHaveLength(3);
    expect(spawnSync("iptables", ["-w", "5", "-S"], { encoding: "utf8" }).stdout.includes(bridge)).toBe(false);
    expect(before.length).toBeGreaterThan(0);
  });
});
