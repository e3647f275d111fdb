/**
 * Unit tier: what `npm run dev` takes and prints (runtime/dev-hints.ts), the demo site it writes
 * (runtime/demo-site.ts), and the preview image's Dockerfile as the end-to-end test rebuilds it.
 * The dev entry itself, spawned for real, is in dev.int.test.ts.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { parseEnv } from "node:util";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig, withDevDefaults } from "../../runtime/config.js";
import { DEMO_TEXT, writeDemoSite } from "../../runtime/demo-site.js";
import { DEFAULT_DEV_SERVER, demoFailedHint, demoSiteHints, devHints, devServerDownHint, devServerUrl, inngestHints, parseDevArgs } from "../../runtime/dev-hints.js";
import { PREVIEW_BASE_DIR, buildHint } from "../../docker/preview-image.js";
import { scratchDockerfile } from "../helpers/node-image.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "sbp-dev-hints-"));
afterAll(() => rm(tmp, { recursive: true, force: true }));

const devConfig = (vars: Record<string, string> = {}) => loadConfig(withDevDefaults(vars), tmp);

describe("npm run dev arguments", () => {
  it("takes nothing, --demo (project demo) or --demo=<id>", () => {
    expect(parseDevArgs([])).toEqual({ demo: null });
    expect(parseDevArgs(["--demo"])).toEqual({ demo: "demo" });
    expect(parseDevArgs(["--demo=shop-1"])).toEqual({ demo: "shop-1" });
  });

  it("refuses anything else, naming it", () => {
    expect(parseDevArgs(["--dmeo"])).toEqual({ error: expect.stringContaining('unknown argument "--dmeo"') });
    expect(parseDevArgs(["--demo=../etc"])).toEqual({ error: expect.stringContaining('--demo="../etc"') });
    expect(parseDevArgs(["--demo=Shop"])).toEqual({ error: expect.stringContaining("DNS label") });
  });
});

describe("the hints after --demo", () => {
  it("name the dashboard, a curl that sends pipeline.step7 for the project to the dev server, and where to follow it", () => {
    const lines = devHints({ config: devConfig(), port: 3000, projectId: "demo", siteDir: "/s/projects/demo/site", created: true });
    expect(lines[0]).toContain("demo site written to /s/projects/demo/site");
    expect(lines).toContain(`Inngest dashboard: ${DEFAULT_DEV_SERVER}`);
    expect(lines).toContain(`  curl -sS -X POST http://127.0.0.1:8288/e/dev -H 'Content-Type: application/json' -d '{"name":"pipeline.step7","data":{"projectId":"demo"}}'`);
    expect(lines.at(-1)).toContain("curl -sS http://127.0.0.1:3000/previews/demo");
  });

  it("use the dev server INNGEST_BASE_URL or INNGEST_DEV names, the bound port, and the API token's header (never its value)", () => {
    const token = "secret-token-0123456789";
    const config = devConfig({ INNGEST_DEV: "http://inngest.local:9999/", API_TOKEN: token, PREVIEW_ACCESS: "public" });
    expect(devServerUrl(config)).toBe("http://inngest.local:9999");
    expect(devServerUrl(devConfig({ INNGEST_BASE_URL: "http://base.local:8288" }))).toBe("http://base.local:8288");
    const lines = devHints({ config, port: 41234, projectId: "shop-1", siteDir: "/x", created: false });
    expect(lines[0]).toContain("already there (left as it is)");
    expect(lines.join("\n")).toContain(`curl -sS -X POST http://inngest.local:9999/e/dev`);
    expect(lines.join("\n")).toContain(`"projectId":"shop-1"`);
    expect(lines.at(-1)).toContain(`-H "Authorization: Bearer $API_TOKEN" http://127.0.0.1:41234/previews/shop-1`);
    expect(lines.join("\n")).not.toContain(token);
  });

  it("the printed curl is valid shell that sends exactly that event", () => {
    const lines = devHints({ config: devConfig(), port: 3000, projectId: "it-s", siteDir: "/x", created: true });
    const curl = lines.find((l) => l.trimStart().startsWith("curl -sS -X POST"))!.trim();
    // The shell's view of the -d argument (after quoting), via printf instead of curl.
    const data = execFileSync("sh", ["-c", `set -- ${curl.slice("curl ".length)}; while [ "$1" != "-d" ]; do shift; done; printf %s "$2"`], { encoding: "utf8" });
    expect(JSON.parse(data)).toEqual({ name: "pipeline.step7", data: { projectId: "it-s" } });
  });
});

describe("the demo site", () => {
  it("is a tiny Next.js app at STORAGE_PATH/projects/<id>/site, with the image's next.config fragment", async () => {
    const storage = path.join(tmp, "storage-a");
    const { dir, created } = await writeDemoSite(storage, "demo");
    expect(created).toBe(true);
    expect(dir).toBe(path.join(storage, "projects", "demo", "site"));
    const pkg = JSON.parse(await readFile(path.join(dir, "package.json"), "utf8"));
    expect(pkg.scripts.dev).toBe("next dev");
    expect(pkg.dependencies).toEqual({ next: expect.stringMatching(/^15\.\d+\.\d+$/), react: expect.stringMatching(/^\d+\.\d+\.\d+$/), "react-dom": expect.stringMatching(/^\d+\.\d+\.\d+$/) });
    expect(await readFile(path.join(dir, "app", "page.jsx"), "utf8")).toContain(DEMO_TEXT);
    expect(await readFile(path.join(dir, "next.config.mjs"), "utf8")).toBe(await readFile(path.join(PREVIEW_BASE_DIR, "next.config.fragment.mjs"), "utf8"));
    expect((await stat(path.join(dir, "app", "layout.jsx"))).isFile()).toBe(true);
  });

  it("leaves an existing site as it is", async () => {
    const storage = path.join(tmp, "storage-b");
    const { dir } = await writeDemoSite(storage, "demo");
    await writeFile(path.join(dir, "app", "page.jsx"), "edited");
    expect(await writeDemoSite(storage, "demo")).toEqual({ dir, created: false });
    expect(await readFile(path.join(dir, "app", "page.jsx"), "utf8")).toBe("edited");
  });

  it("refuses an invalid project id before touching the disk", async () => {
    await expect(writeDemoSite(path.join(tmp, "storage-c"), "../x")).rejects.toThrow(/project/i);
    await expect(stat(path.join(tmp, "storage-c"))).rejects.toMatchObject({ code: "ENOENT" });
  });
});

describe("docker/preview-base", () => {
  it("the Dockerfile builds FROM the NODE_IMAGE argument (node:20-alpine by default), as the end-to-end test replaces it", async () => {
    const real = await readFile(path.join(PREVIEW_BASE_DIR, "Dockerfile"), "utf8");
    expect(real).toMatch(/^ARG NODE_IMAGE=node:20-alpine$/m);
    expect(real).toMatch(/^FROM \$\{NODE_IMAGE\}$/m);
    const scratch = scratchDockerfile(real, { extraCaCerts: "/etc/ssl/certs/x.crt" });
    expect(scratch.split("\n").slice(0, 5)).toEqual([
      "FROM scratch",
      "COPY rootfs/ /",
      'RUN ["/bin/busybox", "--install", "-s"]',
      'RUN ["/bin/busybox", "chmod", "1777", "/tmp"]',
      "ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/x.crt",
    ]);
    expect(scratch).not.toMatch(/node:20-alpine|apk|\$\{NODE_IMAGE\}/);
    // The rest is the real image's: entrypoint, fragment, user, dev server on 0.0.0.0:3000.
    for (const line of ['ENTRYPOINT ["/entrypoint.sh"]', "COPY next.config.fragment.mjs /opt/preview/next.config.fragment.mjs", "USER node", "HOSTNAME=0.0.0.0"]) expect(scratch).toContain(line);
    expect(() => scratchDockerfile("FROM a\nFROM b\n")).toThrow(/exactly one FROM/);
  });

  it("a missing image's message says how to build it", () => {
    const hint = buildHint("preview-base:latest");
    expect(hint).toContain("docker build -t preview-base:latest docker/preview-base");
    // Not circular: /readyz shows it under `npm run dev` too, after that very build failed.
    expect(hint).not.toMatch(/run `npm run dev`, which builds it/);
    expect(hint).toContain("PREVIEW_NODE_IMAGE");
  });
});

describe("the dev server and failure lines (ops-fixes)", () => {
  const opts = { config: devConfig(), port: 3000, projectId: "demo" };

  it("the site hints hold without a dev server; the dashboard and the curl are separate (printed once one answers)", () => {
    const site = demoSiteHints({ ...opts, siteDir: "/s", created: true });
    expect(site.join("\n")).not.toMatch(/8288|Inngest dashboard|curl -sS -X POST/);
    expect(site[1]).toContain("http://127.0.0.1:3000/previews/demo");
    const inngest = inngestHints(opts);
    expect(inngest[0]).toBe(`Inngest dashboard: ${DEFAULT_DEV_SERVER}`);
    expect(inngest.join("\n")).toContain(`curl -sS -X POST ${DEFAULT_DEV_SERVER}/e/dev`);
    // devHints is both, site first.
    expect(devHints({ ...opts, siteDir: "/s", created: true })).toEqual([site[0], ...inngest, site[1]]);
  });

  it("a dev server that did not start: says it is not running, and how to use INNGEST_DEV in .env", () => {
    const line = devServerDownHint("inngest-cli exited with code 1; output in /d/inngest-dev.log", "http://127.0.0.1:3000/api/inngest");
    expect(line).toMatch(/^Inngest dev server is not running \(inngest-cli exited with code 1; output in \/d\/inngest-dev\.log\)/);
    expect(line).toContain("INNGEST_DEV=");
    expect(line).toContain(".env");
    expect(line).toContain("-u http://127.0.0.1:3000/api/inngest");
    expect(line).not.toMatch(/curl/);
  });

  it("a failed demo: points at the log tail only when there is one", () => {
    const withLogs = demoFailedHint({ ...opts, reason: "exited with code 1", logTail: "npm ERR! missing script: dev\n" });
    expect(withLogs).toBe("demo preview failed: exited with code 1 (its log tail: curl -sS http://127.0.0.1:3000/previews/demo, field logTail)");
    for (const logTail of [null, "", "  \n"]) {
      const line = demoFailedHint({ ...opts, reason: "image not found", logTail });
      expect(line).toBe("demo preview failed: image not found (the preview left no log output: the reason above is all there is)");
    }
    expect(demoFailedHint({ ...opts, reason: null, logTail: null })).toContain("no reason recorded");
    const withToken = demoFailedHint({ ...opts, config: devConfig({ API_TOKEN: "0123456789abcdef0123", PREVIEW_ACCESS: "public" }), reason: "x", logTail: "y" });
    expect(withToken).toContain(`-H "Authorization: Bearer $API_TOKEN"`);
  });
});

describe(".env.example", () => {
  const text = readFileSync(path.resolve(import.meta.dirname, "../../.env.example"), "utf8");

  it("sets nothing: copied to .env, npm run dev keeps its defaults (port routing, dev mode)", () => {
    expect(parseEnv(text)).toEqual({});
    const env = withDevDefaults({ ...parseEnv(text) });
    expect(env.PREVIEW_ROUTING).toBe("port");
    expect(env.INNGEST_DEV).toBe("1");
  });

  it("the values shown (commented out) are the defaults: uncommented, they configure exactly what nothing does", () => {
    const shown = parseEnv(text.replace(/^# ([A-Z_][A-Z0-9_]*=)/gm, "$1"));
    expect(Object.keys(shown)).toEqual(expect.arrayContaining(["PREVIEW_ROUTING", "PORT", "SWEEP_CRON", "MINIO_ENDPOINT"]));
    expect(loadConfig({ ...shown, INNGEST_DEV: "1" }, tmp)).toEqual(loadConfig({ INNGEST_DEV: "1" }, tmp));
  });
});
