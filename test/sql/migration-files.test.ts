/** Pure: finding and naming migration files (the file system only, no database). */
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadMigrations, MIGRATIONS_DIR } from "../../sql/migrate.js";

const dirs: string[] = [];
afterEach(async () => {
  while (dirs.length) await rm(dirs.pop()!, { recursive: true, force: true });
});
async function tempMigrations(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "previews-migrations-"));
  dirs.push(dir);
  for (const [name, sql] of Object.entries(files)) await writeFile(path.join(dir, name), sql);
  return dir;
}

describe("migration files", () => {
  it("are found next to the module and named NNN_name.sql", async () => {
    expect(MIGRATIONS_DIR).toBe(path.resolve(import.meta.dirname, "../../sql/migrations") + path.sep);
    const migrations = await loadMigrations();
    expect(migrations.map((m) => `${m.version}_${m.name}.sql`)).toEqual((await readdir(MIGRATIONS_DIR)).filter((f) => f.endsWith(".sql")).sort());
    expect(migrations[0]).toMatchObject({ version: "001", name: "init" });
  });

  it("none opens or ends a transaction (the runner wraps each file in one)", async () => {
    for (const m of await loadMigrations()) {
      const code = m.sql.replace(/--.*$/gm, "");
      expect(code, `${m.version}_${m.name}`).not.toMatch(/\b(begin|commit|rollback|start\s+transaction|concurrently)\b/i);
    }
  });

  it("are ordered by version whatever order the directory lists them in, other files ignored", async () => {
    const dir = await tempMigrations({ "010_later.sql": "select 10;", "002_second.sql": "select 2;", "001_first.sql": "select 1;", "README.md": "x" });
    expect(await loadMigrations(dir)).toEqual([
      { version: "001", name: "first", sql: "select 1;" },
      { version: "002", name: "second", sql: "select 2;" },
      { version: "010", name: "later", sql: "select 10;" },
    ]);
  });

  it.each(["2-oops.sql", "01_short.sql", "001_Upper.sql", "001_dash-name.sql", "001.sql"])("refuse a badly named file (%s)", async (bad) => {
    const dir = await tempMigrations({ "001_ok.sql": "select 1;", [bad]: "select 1;" });
    await expect(loadMigrations(dir)).rejects.toThrow(`${JSON.stringify(bad)} is not NNN_name.sql`);
  });

  it("refuse two files with one number", async () => {
    const dir = await tempMigrations({ "001_a.sql": "select 1;", "001_b.sql": "select 1;" });
    await expect(loadMigrations(dir)).rejects.toThrow("two migrations numbered 001");
  });
});
