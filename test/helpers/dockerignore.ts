/** The repository's .dockerignore, read as the engine applies it to the build context (its simple patterns: names and `*`). */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** Whether .dockerignore keeps a repository path out of the build context (its simple patterns: names and `*`). */
export function dockerignore(): (relPath: string) => boolean {
  const patterns = readFileSync(path.join(root, ".dockerignore"), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((p) => new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*")}(/|$)`));
  return (relPath) => patterns.some((re) => re.test(relPath));
}
