/**
 * docker/previews/Dockerfile's build stage, replayed without an engine (no base image can be
 * pulled on the development machines): the build context as the engine would send it (the
 * repository filtered by .dockerignore), and in it the stage's `npm run build`, with the
 * repository's dependencies. A source folder the context left out (diagnosis/ once was) fails
 * here as it would in `docker build`.
 */
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { dockerignore } from "../helpers/dockerignore.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const context = mkdtempSync(path.join(os.tmpdir(), "sbp-build-context-"));
afterAll(() => rmSync(context, { recursive: true, force: true }));

describe("docker/previews/Dockerfile build stage, on exactly its build context", () => {
  it("npm run build succeeds and emits the entry points and the migrations", () => {
    const ignored = dockerignore();
    for (const name of readdirSync(root)) {
      if (ignored(name)) continue;
      cpSync(path.join(root, name), path.join(context, name), { recursive: true, filter: (src) => !ignored(path.relative(root, src)) });
    }
    expect(existsSync(path.join(context, "test"))).toBe(false); // the context really is filtered
    // The stage's `npm ci` (all dependencies): the repository's own, as installed.
    symlinkSync(path.join(root, "node_modules"), path.join(context, "node_modules"));
    const build = spawnSync("npm", ["run", "build"], { cwd: context, encoding: "utf8" });
    expect(build.status, `${build.stdout}\n${build.stderr}`).toBe(0);
    for (const out of ["runtime/main.js", "scripts/preview-firewall.js", "diagnosis/claude.js", "storage/object-store.js", "sql/migrations/001_init.sql"]) {
      expect(existsSync(path.join(context, "dist", out)), out).toBe(true);
    }
  }, 120_000);
});
