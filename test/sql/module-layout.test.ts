/**
 * Pure: the shape of sql/'s imports, read from the source. `database.ts` is the interface only
 * and the drivers implement it without importing what opens them, so the interface, the drivers,
 * `connect.ts` and `migrate.ts` cannot form a cycle. (The code base's general rules, no cycles,
 * no runtime/ or Inngest SDK in adapters, are .dependency-cruiser.cjs, run by
 * test/architecture.test.ts.)
 */
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";

const SQL_DIR = path.resolve(import.meta.dirname, "../../sql");
const rel = (file: string) => path.relative(SQL_DIR, file).split(path.sep).join("/");

/** sql/ file (relative, "/") -> what it imports: sql/ files relative too, anything else as written. */
async function importGraph(): Promise<Map<string, string[]>> {
  const files = (await readdir(SQL_DIR, { recursive: true })).filter((f) => f.endsWith(".ts")).map((f) => path.join(SQL_DIR, f));
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const source = await readFile(file, "utf8");
    const specifiers = [...source.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)/g)].map((m) => (m[1] ?? m[2])!);
    graph.set(
      rel(file),
      specifiers.map((s) => {
        if (!s.startsWith(".")) return s;
        const target = path.resolve(path.dirname(file), s.replace(/\.js$/, ".ts"));
        return target.startsWith(SQL_DIR + path.sep) ? rel(target) : path.relative(path.dirname(SQL_DIR), target).split(path.sep).join("/");
      }),
    );
  }
  return graph;
}

describe("sql/ module layout", () => {
  it("database.ts is the interface only: it imports nothing but the settings type", async () => {
    const graph = await importGraph();
    expect(graph.get("database.ts")).toEqual(["settings.ts"]);
  });

  it("drivers import the interface, never what picks them or migrates", async () => {
    const graph = await importGraph();
    const drivers = [...graph.keys()].filter((f) => f.startsWith("drivers/"));
    expect(drivers.length).toBeGreaterThan(0);
    for (const driver of drivers) {
      expect(graph.get(driver), driver).not.toContain("connect.ts");
      expect(graph.get(driver), driver).not.toContain("migrate.ts");
    }
    const importersOfDrivers = [...graph].filter(([file, deps]) => !file.startsWith("drivers/") && deps.some((d) => d.startsWith("drivers/")));
    expect(importersOfDrivers.map(([file]) => file)).toEqual(["connect.ts"]);
  });
});
