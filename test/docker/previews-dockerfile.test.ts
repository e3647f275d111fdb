/**
 * docker/previews/Dockerfile, read as text (no image can be pulled on the development machines,
 * so it cannot be built there, and no Dockerfile linter is installed): its stages and what each
 * must do, checked against the repository it builds from: a `build` stage with every dependency
 * that runs `npm run build` over every folder tsconfig.build.json compiles; a `runtime` stage
 * with production dependencies only, the compiled output, HOST=0.0.0.0, a non-root user that is
 * the default preview user, a health check, and plain node on the compiled entry point.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { DEFAULT_PREVIEW_USER } from "../../docker/isolation.js";
import { dockerignore } from "../helpers/dockerignore.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const dockerfile = readFileSync(path.join(root, "docker/previews/Dockerfile"), "utf8");

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name: string | null;
  steps: Instruction[];
}

/** Instructions (continuation lines joined, comments dropped), grouped by stage. */
function parse(text: string): Stage[] {
  const joined = text
    .split("\n")
    .filter((l) => !/^\s*#/.test(l))
    .join("\n")
    .replace(/\\\n/g, " ");
  const stages: Stage[] = [];
  for (const line of joined.split("\n")) {
    const m = /^\s*([A-Z]+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const [, op, args] = m as unknown as [string, string, string];
    if (op === "FROM") {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args.trim());
      stages.push({ from: f?.[1] ?? args, name: f?.[2] ?? null, steps: [] });
    } else if (stages.length) stages.at(-1)!.steps.push({ op, args: args.trim() });
  }
  return stages;
}

const stages = parse(dockerfile);

const stage = (name: string): Stage => {
  const s = stages.find((x) => x.name === name);
  if (!s) throw new Error(`no stage ${name} in docker/previews/Dockerfile`);
  return s;
};
const runs = (s: Stage) => s.steps.filter((i) => i.op === "RUN").map((i) => i.args);

describe("docker/previews/Dockerfile", () => {
  it("has two stages, build then runtime, on the same Node 20 base", () => {
    expect(stages.map((s) => s.name)).toEqual(["build", "runtime"]);
    expect(stages.every((s) => s.from === "${NODE_IMAGE}")).toBe(true);
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:20-[a-z]+-slim$/m);
  });

  it("build stage: every dependency (npm ci, not --omit=dev), then npm run build over everything tsconfig.build.json compiles", () => {
    const build = stage("build");
    const r = runs(build);
    expect(r.some((x) => /^npm ci\b/.test(x) && !x.includes("--omit"))).toBe(true);
    expect(r.at(-1)).toBe("npm run build");
    const copied = build.steps
      .filter((i) => i.op === "COPY")
      .flatMap((i) => i.args.split(/\s+/).slice(0, -1))
      .map((p) => p.replace(/\/$/, ""));
    for (const source of copied) expect(existsSync(path.join(root, source)), `COPY source ${source}`).toBe(true);
    // The whole context, filtered by .dockerignore only (a folder listed one by one was once
    // forgotten: diagnosis/). That the build really succeeds on exactly that context is proven by
    // test/docker/previews-dockerfile-build.int.test.ts.
    expect(copied).toContain(".");
    const ignored = dockerignore();
    const tsconfig = JSON.parse(readFileSync(path.join(root, "tsconfig.build.json"), "utf8").replace(/^\s*\/\/.*$/gm, "")) as { include: string[]; extends: string };
    for (const needed of [...tsconfig.include, "tsconfig.json", "tsconfig.build.json", "package.json", "package-lock.json", "sql/migrations", "scripts/build.mjs"]) {
      expect(ignored(needed), `${needed} is compiled or needed by the build but .dockerignore keeps it out`).toBe(false);
    }
  });

  it("runtime stage: production dependencies only, the compiled output from the build stage, nothing else of the sources", () => {
    const runtime = stage("runtime");
    const r = runs(runtime);
    expect(r.some((x) => /^npm ci --omit=dev\b/.test(x))).toBe(true);
    expect(r.some((x) => /npm run build|npm ci(?! --omit=dev)|tsx|typescript/.test(x))).toBe(false);
    const copies = runtime.steps.filter((i) => i.op === "COPY").map((i) => i.args);
    expect(copies).toContain("--from=build /src/dist ./dist");
    expect(copies.filter((c) => !c.startsWith("--from=build"))).toEqual(["package.json package-lock.json ./"]);
  });

  it("runtime stage: listens on every interface, runs as a non-root numeric user that is the default preview user, with a health check, on the compiled entry point", () => {
    const runtime = stage("runtime");
    const env = runtime.steps.filter((i) => i.op === "ENV").map((i) => i.args).join(" ");
    expect(env).toMatch(/\bHOST=0\.0\.0\.0\b/);
    expect(env).toMatch(/\bNODE_ENV=production\b/);
    const users = runtime.steps.filter((i) => i.op === "USER").map((i) => i.args);
    expect(users).toHaveLength(1);
    expect(users[0]).toMatch(/^\d+:\d+$/);
    expect(users[0]!.split(":").map(Number).every((n) => n > 0)).toBe(true);
    expect(users[0]).toBe(DEFAULT_PREVIEW_USER);
    // USER comes after every RUN (those need root: apt, npm ci, chown).
    const lastRun = runtime.steps.map((i) => i.op).lastIndexOf("RUN");
    expect(runtime.steps.findIndex((i) => i.op === "USER")).toBeGreaterThan(lastRun);
    const health = runtime.steps.find((i) => i.op === "HEALTHCHECK");
    expect(health?.args).toMatch(/CMD \["node", "-e", .*\/healthz/);
    const cmd = runtime.steps.filter((i) => i.op === "CMD").at(-1)?.args;
    expect(JSON.parse(cmd!)).toEqual(["node", "--enable-source-maps", "dist/runtime/main.js"]);
    expect(existsSync(path.join(root, "runtime/main.ts"))).toBe(true);
  });

  it("is the one image definition: no Dockerfile at the root, and compose builds this one", () => {
    expect(existsSync(path.join(root, "Dockerfile"))).toBe(false);
    expect(readFileSync(path.join(root, "docker-compose.yml"), "utf8")).toContain("dockerfile: docker/previews/Dockerfile");
  });

  it(".dockerignore keeps local state, secrets and dependencies out of the build context", () => {
    const ignored = readFileSync(path.join(root, ".dockerignore"), "utf8").split("\n").map((l) => l.trim());
    for (const entry of ["node_modules", ".env", ".data", "dist", ".git"]) expect(ignored).toContain(entry);
  });
});
