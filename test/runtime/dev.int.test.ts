/**
 * `npm run dev` from clone to preview, for real: the dev entry (runtime/dev.ts) spawned as a
 * process in a fresh working directory whose `.env` names a preview image the engine lacks, with
 * a private preview network and any free port. It must: read `.env`; try to build the image from
 * docker/preview-base/ and, where its base cannot be pulled, say so in ONE line and keep running;
 * answer /readyz 503 naming the image, then 200 once the image exists; with `--demo=<id>` write
 * the sample site and print the dashboard, a curl that (pasted into a shell) sends
 * `pipeline.step7` for it to the dev server, and the preview's URL once the preview answers.
 *
 * The Inngest dev server is a stand-in (test/helpers/inngest-server.ts) named by INNGEST_DEV, so
 * dev.ts starts none; the launch it would schedule is driven over /api/inngest as it would drive
 * it. The "image" is the run's stub image tagged with the missing name (busybox serving the
 * site folder's start.sh), so the launch is quick; the Next.js dev server itself is proven in
 * test/functions/launch-nextjs.int.test.ts. Cleans up the container (by id), the image tag, the
 * network and the host firewall rules dev.ts created.
 */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile, chmod } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { DEMO_TEXT } from "../../runtime/demo-site.js";
import { SITE_SCRIPTS, stubImage } from "../helpers/docker.js";
import { startInngestStandIn, type InngestStandIn } from "../helpers/inngest-server.js";

const run = promisify(execFile);
const REPO = path.resolve(import.meta.dirname, "../..");
const TSX = path.join(REPO, "node_modules/tsx/dist/cli.mjs");

const suffix = randomBytes(4).toString("hex");
const NETWORK = `sbp-test-dev-${suffix}`;
const PROJECT = `demo-${suffix}`;
const MISSING_IMAGE = `sitebuilder-previews-test/dev-missing-${suffix}:latest`;
/** A base no registry has (and none can be reached here): the build fails the same everywhere. */
const ABSENT_BASE = `sitebuilder-previews-test/absent-node-${suffix}:20`;

const docker = new Docker();
let dir: string;
let standIn: InngestStandIn;
let child: ChildProcess;
let output = "";
let containerId: string | null = null;

/** Waits until the dev process printed a line matching `pattern`; returns that line. */
async function printed(pattern: RegExp, ms = 60_000): Promise<string> {
  const started = Date.now();
  while (Date.now() - started < ms) {
    const line = output.split("\n").find((l) => pattern.test(l));
    if (line !== undefined) return line;
    if (child.exitCode !== null) throw new Error(`npm run dev exited with ${child.exitCode} before printing ${pattern}:\n${output}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`npm run dev did not print ${pattern} within ${ms} ms:\n${output}`);
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "sbp-dev-"));
  standIn = await startInngestStandIn();
  // Read from .env by dev.ts (the environment below does not set these).
  await writeFile(path.join(dir, ".env"), `PREVIEW_IMAGE=${MISSING_IMAGE}\nPREVIEW_NODE_IMAGE=${ABSENT_BASE}\n`);
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/root",
    PORT: "0",
    LOG_LEVEL: "warn",
    STORAGE_PATH: "storage",
    DATA_PATH: "data",
    PREVIEW_NETWORK: NETWORK,
    INNGEST_DEV: standIn.url,
    READY_TIMEOUT: "60s",
  };
  child = spawn(process.execPath, [TSX, path.join(REPO, "runtime/dev.ts"), `--demo=${PROJECT}`], { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout!.on("data", (c: Buffer) => (output += c.toString("utf8")));
  child.stderr!.on("data", (c: Buffer) => (output += c.toString("utf8")));
}, 60_000);

afterAll(async () => {
  if (child && child.exitCode === null) {
    child.kill("SIGTERM");
    await new Promise((r) => child.once("exit", r));
  }
  if (containerId) await docker.getContainer(containerId).remove({ force: true }).catch(() => undefined);
  // Only the tag: the stub image itself is the run's, removed at the end of the run.
  await docker.getImage(MISSING_IMAGE).remove({ noprune: true }).catch(() => undefined);
  await run(process.execPath, [TSX, path.join(REPO, "scripts/preview-firewall.ts"), "remove", "--network", NETWORK], { cwd: REPO }).catch(() => undefined);
  await docker.getNetwork(NETWORK).remove().catch(() => undefined);
  await standIn?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("npm run dev -- --demo", () => {
  let base: string;

  it("says in one line that the preview image is missing and cannot be built, and keeps running", async () => {
    const line = await printed(/could not be built/);
    expect(line).toContain(`preview image ${MISSING_IMAGE} is missing and could not be built from docker/preview-base/`);
    expect(line).toContain(`docker build -t ${MISSING_IMAGE} docker/preview-base`);
    expect(output.split("\n").filter((l) => l.includes(MISSING_IMAGE))).toHaveLength(1);
    // Still serving (at the port the hints name: PORT=0 binds any free one).
    base = `http://127.0.0.1:${await portFromHints()}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  });

  it("writes the demo site where the pipeline writes sites, and prints the next steps", async () => {
    const site = path.join(dir, "storage", "projects", PROJECT, "site");
    expect(await printed(/demo site written to/)).toContain(site);
    expect(await readFile(path.join(site, "app", "page.jsx"), "utf8")).toContain(DEMO_TEXT);
    expect(JSON.parse(await readFile(path.join(site, "package.json"), "utf8")).dependencies.next).toMatch(/^15\./);
    expect(await readFile(path.join(site, "next.config.mjs"), "utf8")).toContain('"*.preview.localhost"');
    expect(await printed(/Inngest dashboard:/)).toContain(`Inngest dashboard: ${standIn.url}`);
    expect(await printed(/\/previews\/demo-/)).toContain(`${base}/previews/${PROJECT}`);
  });

  it("the printed curl, pasted into a shell, sends pipeline.step7 for the demo to the dev server", async () => {
    const curl = (await printed(/^\[dev\]\s+curl -sS -X POST/)).replace(/^\[dev\]\s+/, "");
    expect(curl).toContain(`${standIn.url}/e/`);
    await run("sh", ["-c", curl]);
    expect(standIn.eventsNamed("pipeline.step7").map((e) => e.data)).toEqual([{ projectId: PROJECT }]);
  });

  it("/readyz answers 503 naming the missing image, and 200 once the engine has it", async () => {
    const missing = await fetch(`${base}/readyz`);
    expect(missing.status).toBe(503);
    const body = (await missing.json()) as { failing: Record<string, string> };
    expect(body.failing.image).toContain(`preview image ${MISSING_IMAGE} not found`);
    const [repo, tag] = MISSING_IMAGE.split(":") as [string, string];
    await docker.getImage(stubImage(inject("testRunId"))).tag({ repo, tag });
    const present = await fetch(`${base}/readyz`);
    expect(await present.json()).toEqual({ status: "ready" });
    expect(present.status).toBe(200);
  });

  it("prints the preview's URL once the launch the event asked for is ready", async () => {
    // The stub image serves what the site folder's start.sh says (a real Next.js site is the
    // end-to-end test's): the demo's files stay, a start script and a page are added.
    const site = path.join(dir, "storage", "projects", PROJECT, "site");
    await writeFile(path.join(site, "start.sh"), SITE_SCRIPTS.http);
    await writeFile(path.join(site, "index.html"), `<h1>${DEMO_TEXT}</h1>\n`);
    await chmod(site, 0o755);
    const sent = standIn.eventsNamed("pipeline.step7").at(-1)!;
    const result = await standIn.run({ serveUrl: `${base}/api/inngest`, fnId: "previews-launch-preview", event: { name: sent.name, data: sent.data }, onFailure: true });
    expect(result.outcome, JSON.stringify(result.error)).toBe("completed");
    containerId = (result.result as { containerId: string }).containerId;
    const line = await printed(new RegExp(`${PROJECT} preview ready: `), 30_000);
    const url = /ready: (http:\/\/127\.0\.0\.1:\d+)/.exec(line)?.[1];
    expect(url).toBe((result.result as { url: string }).url);
    expect(await (await fetch(`${url}/index.html`)).text()).toContain(DEMO_TEXT);
  }, 120_000);
});

describe("npm run dev with a misspelt flag", () => {
  it("exits 2 naming it, before starting anything", async () => {
    const res = await run(process.execPath, [TSX, path.join(REPO, "runtime/dev.ts"), "--dmeo"], { cwd: dir, env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } }).then(
      () => ({ code: 0, stderr: "" }),
      (err: { code: number; stderr: string }) => err,
    );
    expect(res.code).toBe(2);
    expect(res.stderr.trim()).toBe('npm run dev: unknown argument "--dmeo" (takes --demo or --demo=<projectId>)');
  });
});

/** The port the host bound, from the "follow it" hint. */
async function portFromHints(): Promise<string> {
  const line = await printed(/follow it: curl/);
  return /127\.0\.0\.1:(\d+)\/previews/.exec(line)![1]!;
}
