/**
 * `npm run dev`: the host in Inngest dev mode plus the Inngest dev server, as Inngest documents
 * (`npx inngest-cli@latest dev -u <serve URL>`). The dev server is a binary that inngest-cli
 * downloads at install time; where that is impossible (no access to its download host), this
 * says so in one line and the host keeps running, reachable by a dev server started elsewhere.
 * When INNGEST_DEV names a dev server (a URL), that one is used and none is started here.
 *
 * First contact (issue 10): builds the preview image (PREVIEW_IMAGE) from docker/preview-base/ when
 * the engine lacks it (one line when it cannot, and the host keeps running), and with
 * `--demo[=<projectId>]` writes a sample site and prints what to do next: the dashboard, a curl
 * that sends `pipeline.step7` for it, and the preview's URL once it answers.
 *
 * The dashboard and that curl are printed only once a dev server is known to answer (INNGEST_DEV
 * names one, or the bundled one answered HTTP); when the bundled one cannot start, a `[dev]` line
 * says so first and how to point this at another (INNGEST_DEV in .env), before the JSON warning.
 */
import { spawn } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { existsSync } from "node:fs";
import { createDockerClient } from "../docker/client.js";
import { ensurePreviewImage, imagePresent } from "../docker/preview-image.js";
import { SqlPreviewStore } from "../sql/preview-store.js";
import { withDevDefaults } from "./config.js";
import { writeDemoSite } from "./demo-site.js";
import { demoFailedHint, demoSiteHints, devServerDownHint, devServerUrl, inngestHints, parseDevArgs } from "./dev-hints.js";
import { main } from "./main.js";
import type { RunningService } from "./service.js";

/** Output of the dev server is held back this long, so a failed download prints one line only. */
const SETTLE_MS = 20_000;
/** How often the demo's row is read to print its URL once it is ready. */
const DEMO_POLL_MS = 2_000;
/** A build still running after this long says it is building (a failure before that prints one line only). */
const BUILD_NOTICE_MS = 3_000;
/** How often the bundled dev server is asked whether it answers yet. */
const DEV_SERVER_POLL_MS = 1_000;

const say = (line: string) => process.stdout.write(`[dev] ${line}\n`);

const args = parseDevArgs(process.argv.slice(2));
if ("error" in args) {
  console.error(args.error);
  process.exit(2);
}

// A local .env fills in what the environment does not set, as for `npm start` (before the dev
// defaults, so that .env can choose another routing).
if (existsSync(".env")) process.loadEnvFile(".env");
const env = withDevDefaults(process.env);
const service = await main(env);
const serveUrl = `http://127.0.0.1:${service.port}/api/inngest`;

void previewImage(service);
const external = typeof service.config.inngest.dev === "string";
if (args.demo !== null) {
  // A demo that cannot be written (storage not writable ...) is said in one line; the host runs on.
  await demo(service, args.demo).catch((err: unknown) => say(`demo site not written: ${err instanceof Error ? err.message : String(err)}`));
}
if (external) {
  say(`using the Inngest dev server at ${service.config.inngest.dev} (INNGEST_DEV); sync this app there with: curl -X PUT ${serveUrl}`);
  if (args.demo !== null) for (const line of inngestHints({ config: service.config, port: service.port, projectId: args.demo })) say(line);
} else {
  // The dashboard and the launch curl only once the bundled dev server answers; when it cannot
  // start, one [dev] line says so and how to use another (INNGEST_DEV in .env).
  startDevServer({
    up: () => {
      if (args.demo !== null) for (const line of inngestHints({ config: service.config, port: service.port, projectId: args.demo })) say(line);
      else say(`Inngest dev server running: dashboard ${devServerUrl(service.config)}`);
    },
    down: (why) => say(devServerDownHint(why, serveUrl)),
  });
}

/** Builds the preview image when the engine lacks it; one line for each outcome that matters. */
async function previewImage(svc: RunningService): Promise<void> {
  const image = svc.config.preview.image;
  const from = svc.config.previewBuild.nodeImage;
  const docker = createDockerClient(svc.config.docker);
  const present = await imagePresent(docker, image).catch((err: unknown) => err as Error);
  if (present === true) return;
  if (present instanceof Error) {
    say(`cannot check the preview image ${image}: ${present.message}; previews cannot start until Docker answers`);
    return;
  }
  const notice = setTimeout(() => say(`preview image ${image} is missing: building it from docker/preview-base/ (FROM ${from}; a few minutes the first time)`), BUILD_NOTICE_MS);
  const result = await ensurePreviewImage(docker, image, { buildArgs: { NODE_IMAGE: from } });
  clearTimeout(notice);
  if (result.outcome === "built") say(`preview image ${image} built from docker/preview-base/ in ${(result.ms / 1000).toFixed(0)} s`);
  if (result.outcome === "failed") {
    say(
      `preview image ${image} is missing and could not be built from docker/preview-base/ (FROM ${from}: ${result.reason}); build it where ${from} can be pulled: \`docker build -t ${image} docker/preview-base\` (or set PREVIEW_NODE_IMAGE to a Node 20 Alpine image this engine has, or PREVIEW_IMAGE to a preview image it has); the host keeps running, launches fail until then`,
    );
  }
}

/** Writes the demo site, prints the next steps, and the preview's URL once it answers. */
async function demo(svc: RunningService, projectId: string): Promise<void> {
  const { dir, created } = await writeDemoSite(svc.config.storage.path, projectId);
  for (const line of demoSiteHints({ config: svc.config, port: svc.port, projectId, siteDir: dir, created })) say(line);
  const store = new SqlPreviewStore(svc.db);
  let readyUrl: string | null = null;
  let failedAt = 0;
  const timer = setInterval(() => {
    store.get(projectId).then(
      (row) => {
        if (row?.status === "running" && row.url && row.url !== readyUrl) say(`${projectId} preview ready: ${row.url}`);
        if (row?.status === "failed" && row.updatedAt.getTime() !== failedAt) {
          failedAt = row.updatedAt.getTime();
          say(demoFailedHint({ config: svc.config, port: svc.port, projectId, reason: row.reason, logTail: row.logTail }));
        }
        readyUrl = row?.status === "running" ? row.url : null;
      },
      () => undefined, // the database is out: a later poll tells
    );
  }, DEMO_POLL_MS);
  timer.unref();
}

function startDevServer(on: { up: () => void; down: (why: string) => void }): void {
  const command = ["--yes", "inngest-cli@latest", "dev", "--no-discovery", "-u", serveUrl];
  // Its own process group, so stopping the host also stops the dev server npx started.
  const child = spawn("npx", command, { stdio: ["ignore", "pipe", "pipe"], env, detached: true });
  const held: Buffer[] = [];
  let live = false;
  const forward = (chunk: Buffer) => (live ? process.stdout.write(chunk) : held.push(chunk));
  child.stdout.on("data", forward);
  child.stderr.on("data", forward);
  const settle = setTimeout(() => {
    live = true;
    for (const chunk of held.splice(0)) process.stdout.write(chunk);
  }, SETTLE_MS);

  // Up = its HTTP port answers (any status), asked until then while the process lives.
  let known: "up" | "down" | null = null;
  const server = devServerUrl(service.config);
  const poll = setInterval(() => {
    fetch(server, { signal: AbortSignal.timeout(DEV_SERVER_POLL_MS) }).then(
      async (res) => {
        await res.body?.cancel();
        if (known !== null) return;
        known = "up";
        clearInterval(poll);
        on.up();
      },
      () => undefined, // not yet
    );
  }, DEV_SERVER_POLL_MS);
  poll.unref();

  async function unavailable(why: string): Promise<void> {
    clearTimeout(settle);
    clearInterval(poll);
    let where = "no output";
    if (held.length) {
      const logFile = path.join(service.config.database.dataPath, "inngest-dev.log");
      await mkdir(path.dirname(logFile), { recursive: true });
      await writeFile(logFile, Buffer.concat(held));
      where = `output in ${logFile}`;
    }
    if (known === null) {
      known = "down";
      on.down(`${why}; ${where}`);
    }
    service.log.warn(
      `Inngest dev server unavailable (${why}, ${where}): the host keeps running in dev mode at ${serveUrl}; start a dev server where it can be installed with \`npx inngest-cli@latest dev -u ${serveUrl}\``,
    );
  }

  child.on("error", (err) => void unavailable(`cannot run npx: ${err.message}`));
  child.on("exit", (code, signal) => {
    if (!live) void unavailable(`inngest-cli exited with ${signal ?? `code ${code}`}`);
    else {
      clearInterval(poll);
      if (known === null) {
        known = "down";
        on.down(`inngest-cli exited with ${signal ?? `code ${code}`} before it answered`);
      }
      service.log.warn({ code, signal }, "Inngest dev server stopped; the host keeps running");
    }
  });
  process.once("exit", () => {
    try {
      if (child.pid) process.kill(-child.pid, "SIGTERM");
    } catch {
      // already gone
    }
  });
}
