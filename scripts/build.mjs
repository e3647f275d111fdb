// `npm run build [-- --out-dir DIR]`: compiles the service (tsconfig.build.json) to dist/ (or
// DIR) and copies what the compiled code reads at run time from next to itself: the SQL
// migrations (sql/migrate.js looks for ./migrations/ beside its own file). The output is
// replaced as a whole, so a file deleted from the sources never lingers in it. Plain Node, no
// dependency but the TypeScript compiler (a dev dependency: the production image builds in a
// stage of its own and copies the output).
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
let outDir = path.join(root, "dist");
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--out-dir" && args[i + 1]) outDir = path.resolve(args[++i]);
  else {
    console.error(`build: unknown argument ${JSON.stringify(args[i])} (usage: npm run build [-- --out-dir DIR])`);
    process.exit(2);
  }
}
/** Non-TypeScript files the compiled code reads, relative to the repository root. */
const ASSETS = ["sql/migrations"];

rmSync(outDir, { recursive: true, force: true });
const tsc = path.join(root, "node_modules", "typescript", "bin", "tsc");
if (!existsSync(tsc)) {
  console.error("build: the TypeScript compiler is missing (a dev dependency): run `npm ci` first");
  process.exit(1);
}
const result = spawnSync(process.execPath, [tsc, "-p", path.join(root, "tsconfig.build.json"), "--outDir", outDir], { stdio: "inherit" });
if (result.status !== 0) process.exit(result.status ?? 1);
for (const asset of ASSETS) cpSync(path.join(root, asset), path.join(outDir, asset), { recursive: true });
console.log(`build: ${path.relative(process.cwd(), outDir) || "."} ready (node ${path.relative(process.cwd(), path.join(outDir, "runtime", "main.js"))})`);
