/**
 * `npm run dev`: the host in Inngest dev mode plus the Inngest dev server, as Inngest documents
 * (`npx inngest-cli@latest dev -u <serve URL>`). The dev server is a binary that inngest-cli
 * downloads at install time; where that is impossible (no access to its download host), this
 * says so in one line and the host keeps running, reachable by a dev server started elsewhere.
 */
import { spawn } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { existsSync } from "node:fs";
import { withDevDefaults } from "./config.js";
import { main } from "./main.js";

/** Output of the dev server is held back this long, so a failed download prints one line only. */
const SETTLE_MS = 20_000;

// A local .env fills in what the environment does not set, as for `npm start` (before the dev
// defaults, so that .env can choose another routing).
if (existsSync(".env")) process.loadEnvFile(".env");
const env = withDevDefaults(process.env);
const service = await main(env);
const serveUrl = `http://127.0.0.1:${service.port}/api/inngest`;
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

async function unavailable(why: string): Promise<void> {
  clearTimeout(settle);
  let where = "no output";
  if (held.length) {
    const logFile = path.join(service.config.database.dataPath, "inngest-dev.log");
    await mkdir(path.dirname(logFile), { recursive: true });
    await writeFile(logFile, Buffer.concat(held));
    where = `output in ${logFile}`;
  }
  service.log.warn(
    `Inngest dev server unavailable (${why}, ${where}): the host keeps running in dev mode at ${serveUrl}; start a dev server where it can be installed with \`npx inngest-cli@latest dev -u ${serveUrl}\``,
  );
}

child.on("error", (err) => void unavailable(`cannot run npx: ${err.message}`));
child.on("exit", (code, signal) => {
  if (!live) void unavailable(`inngest-cli exited with ${signal ?? `code ${code}`}`);
  else service.log.warn({ code, signal }, "Inngest dev server stopped; the host keeps running");
});
process.once("exit", () => {
  try {
    if (child.pid) process.kill(-child.pid, "SIGTERM");
  } catch {
    // already gone
  }
});
