/**
 * The Next.js end-to-end fixture (test/fixtures/nextjs-site): a small app whose dependencies come
 * from npm once and are kept in a cache outside the repository, keyed by its lock file
 * (scripts/nextjs-fixture-deps.sh, run by scripts/provision.sh; here again when the entry is
 * missing, which installs it). Each test copies the site and its node_modules into a fresh site
 * folder, as the site pipeline would leave it.
 */
import { execFile } from "node:child_process";
import { cp, mkdir } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

const FIXTURE_DIR = path.resolve(import.meta.dirname, "../fixtures/nextjs-site");
const DEPS_SCRIPT = path.resolve(import.meta.dirname, "../../scripts/nextjs-fixture-deps.sh");

/** The text the fixture's page shows (app/page.tsx). */
export const FIXTURE_TEXT = "sitebuilder-previews nextjs fixture: hello from next dev";

/** The cache folder holding the fixture's node_modules (installed from npm when missing: minutes). */
export async function fixtureDependencies(): Promise<string> {
  const { stdout } = await run("bash", [DEPS_SCRIPT], { timeout: 600_000, maxBuffer: 16 * 1024 * 1024 });
  const dir = stdout.trim().split("\n").at(-1) ?? "";
  if (!dir) throw new Error(`${DEPS_SCRIPT} printed no cache folder`);
  return dir;
}

/** What the site's source is made of (no build output, no dependencies). */
const SOURCE = (src: string) => !/(^|\/)(node_modules|\.next)(\/|$)|next-env\.d\.ts$/.test(path.relative(FIXTURE_DIR, src));

/**
 * Writes the fixture into `siteDir`: its source, and with `deps` (the cache folder) a copy of its
 * node_modules; without, the preview's entrypoint installs them.
 */
export async function writeNextSite(siteDir: string, deps: string | null): Promise<void> {
  await mkdir(siteDir, { recursive: true });
  await cp(FIXTURE_DIR, siteDir, { recursive: true, filter: SOURCE });
  if (deps) await cp(path.join(deps, "node_modules"), path.join(siteDir, "node_modules"), { recursive: true, verbatimSymlinks: true });
}

/** Next's native compiler in the cache: its shared libraries must be in the preview image. */
export const swcBinary = (deps: string): string => path.join(deps, "node_modules/@next/swc-linux-x64-gnu/next-swc.linux-x64-gnu.node");
