/**
 * Dependencies point one way (runtime/ -> adapters -> functions/ ports), with no cycles: the rules
 * in .dependency-cruiser.cjs, run here so that a broken rule fails `npm test`. A second test plants
 * one violation of each kind in a scratch tree and checks every rule reports it, so the rules
 * cannot silently stop matching (for example if the TypeScript transpiler went missing).
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { cruise, type ICruiseResult, type IConfiguration } from "dependency-cruiser";
import extractTSConfig from "dependency-cruiser/config-utl/extract-ts-config";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(import.meta.dirname, "..");
const config = createRequire(import.meta.url)(path.join(ROOT, ".dependency-cruiser.cjs")) as IConfiguration;

async function violations(baseDir: string, paths: string[]): Promise<Array<{ rule: string; from: string; to: string }>> {
  const tsConfig = extractTSConfig(path.join(ROOT, "tsconfig.json"));
  const { output } = await cruise(
    paths,
    { ...config.options, ruleSet: { forbidden: config.forbidden ?? [] }, validate: true, baseDir, tsConfig: { fileName: path.join(ROOT, "tsconfig.json") } },
    undefined,
    { tsConfig },
  );
  const result = output as ICruiseResult;
  return result.summary.violations.map((v) => ({ rule: v.rule.name, from: v.from, to: v.to }));
}

describe("architecture", () => {
  it("the code base breaks no dependency rule", { timeout: 60_000 }, async () => {
    expect(await violations(ROOT, ["functions", "docker", "sql", "storage", "diagnosis", "runtime", "inngest.config.ts", "bench", "test"])).toEqual([]);
  });

  it("every rule reports a planted violation", { timeout: 60_000 }, async () => {
    // Inside the repository, so that `inngest` resolves from its node_modules.
    const dir = await mkdtemp(path.join(ROOT, ".arch-fixture-"));
    try {
      const files: Record<string, string> = {
        "functions/ports.ts": "export interface Port { x: number }\n",
        "functions/launch.ts": 'import { open } from "../docker/runtime.js";\nimport pg from "pg";\nexport const f = () => [open, pg];\n',
        "functions/a.ts": 'import { b } from "./b.js";\nexport const a = () => b;\n',
        "functions/b.ts": 'import { a } from "./a.js";\nexport const b = () => a;\n',
        "docker/runtime.ts":
          'import { NonRetriableError } from "inngest";\nimport type { Config } from "../runtime/config.js";\nimport { a } from "../functions/a.js";\nimport { db } from "../sql/db.js";\nexport const open = (c?: Config) => [NonRetriableError, a, db, c];\n',
        "sql/db.ts": 'import { open } from "../docker/runtime.js";\nimport { helperSql } from "./helper.js";\nexport const db = [open, helperSql];\n',
        "sql/helper.ts": "export const helperSql = 1;\n",
        "runtime/config.ts": 'import { helper } from "../test/helper.js";\nexport interface Config { x: number }\nexport const h = helper;\n',
        "test/helper.ts": "export const helper = 1;\n",
        "storage/files.ts": 'import { db } from "../sql/db.js";\nexport const files = db;\n',
        "inngest.config.ts": 'import type { Config } from "./runtime/config.js";\nexport type C = Config;\n',
      };
      for (const [file, text] of Object.entries(files)) {
        await mkdir(path.dirname(path.join(dir, file)), { recursive: true });
        await writeFile(path.join(dir, file), text);
      }
      const planted = await violations(dir, ["functions", "docker", "sql", "storage", "runtime", "inngest.config.ts"]);
      const found = new Set(planted.map((v) => v.rule));
      for (const rule of config.forbidden ?? []) expect(found, rule.name).toContain(rule.name);
      // An adapter's imports within its own folder are fine.
      expect(planted.filter((v) => v.from === "sql/db.ts" && v.to === "sql/helper.ts")).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
