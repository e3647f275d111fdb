/**
 * End to end with a real Next.js site: `launch-preview`, driven over real HTTP through
 * `/api/inngest` the way the Inngest server drives it, launches the fixture app
 * (test/fixtures/nextjs-site: next, react, react-dom pinned, an app/page.tsx) in a preview image
 * built here like docker/preview-base (its Dockerfile, entrypoint and next.config fragment on a
 * `FROM scratch` base of the host's Node runtime: test/helpers/node-image.ts), with the
 * production hardening and limits (PREVIEW_USER 1000:1000, read-only root, /tmp tmpfs,
 * capabilities dropped, 1 CPU, 1 GiB, 512 pids), `port` routing; the preview runs `next dev`,
 * and its recorded URL answers the page.
 *
 * Timings are printed (`[nextjs e2e] ...`): the launch (create, start, `next dev` compiling the
 * first page) and, for the site without node_modules, the entrypoint's `npm ci` from the registry.
 */
import { randomBytes } from "node:crypto";
import { stat } from "node:fs/promises";
import path from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFunctions } from "../../functions/index.js";
import { createApp } from "../../runtime/app.js";
import { createInngest } from "../../runtime/inngest-client.js";
import { LocalSiteFiles } from "../../storage/site-files.js";
import { TEST_LABEL } from "../helpers/docker.js";
import { listen } from "../helpers/http.js";
import { inngestSettings, type RunResult } from "../helpers/inngest-server.js";
import { FIXTURE_TEXT, fixtureDependencies, swcBinary, writeNextSite } from "../helpers/nextjs-fixture.js";
import { buildNodePreviewImage } from "../helpers/node-image.js";
import { createPreviewTestEnv, type PreviewTestEnv } from "../helpers/preview-env.js";

const PREVIEW_USER = { uid: 1000, gid: 1000 };
/** A first `next dev` compile on a loaded 2-core machine takes 30-60 s; an install, minutes. */
const READY_TIMEOUT_MS = 300_000;

let env: PreviewTestEnv;
let image: string;
let serveUrl: string;
let deps: string;
const closers: Array<() => Promise<void>> = [];

beforeAll(async () => {
  const t0 = Date.now();
  deps = await fixtureDependencies();
  const t1 = Date.now();
  image = `sitebuilder-previews-test/node:${randomBytes(4).toString("hex")}`;
  env = await createPreviewTestEnv({
    runtime: {
      image,
      routing: "port",
      // Production's defaults (runtime/config.ts), not the stub tests' small limits.
      memoryBytes: 1024 ** 3,
      nanoCpus: 1_000_000_000,
      pidsLimit: 512,
      user: `${PREVIEW_USER.uid}:${PREVIEW_USER.gid}`,
      readOnlyRootFs: true,
      tmpBytes: 512 * 1024 ** 2,
    },
    readyTimeoutMs: READY_TIMEOUT_MS,
  });
  await buildNodePreviewImage(env.docker.docker, image, { [TEST_LABEL]: env.docker.runId }, [swcBinary(deps)]);
  const t2 = Date.now();
  // As the service wires it: the site folder is handed to the preview user before each start.
  const inngest = createInngest(inngestSettings({ dev: env.inngestServer.url }), pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }));
  const functions = createFunctions(inngest, { ...env.deps, site: new LocalSiteFiles(env.docker.storageRoot, PREVIEW_USER), readySliceMs: 15_000 });
  const host = await listen(createApp({ inngest, functions, store: env.store, runtime: env.docker.runtime, apiToken: null }));
  closers.push(host.close);
  serveUrl = `${host.url}/api/inngest`;
  console.info(`[nextjs e2e] fixture dependencies ready in ${((t1 - t0) / 1000).toFixed(1)} s (${deps}); preview image built in ${((t2 - t1) / 1000).toFixed(1)} s`);
}, 900_000);

afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  await env?.cleanup();
  if (image) await env?.docker.docker.getImage(image).remove({ force: true }).catch(() => undefined);
});

async function launch(projectId: string): Promise<{ run: RunResult; seconds: number }> {
  const started = Date.now();
  const run = await env.inngestServer.run({ serveUrl, fnId: "previews-launch-preview", event: { name: "pipeline.step7", data: { projectId } }, onFailure: true });
  return { run, seconds: (Date.now() - started) / 1000 };
}

const siteDir = (projectId: string) => path.join(env.docker.storageRoot, "projects", projectId, "site");

/** What went wrong, for a failed run's message: its error, the row's reason and the log tail. */
async function explain(projectId: string, run: RunResult): Promise<string> {
  const row = await env.store.get(projectId);
  return JSON.stringify({ outcome: run.outcome, error: run.error, reason: row?.reason, logTail: row?.logTail ?? (await env.docker.runtime.logTail(projectId)) }, null, 2);
}

describe("launch-preview with a real Next.js site (next dev)", () => {
  it("serves the site's page at the recorded URL, under the production hardening", async () => {
    const id = env.docker.projectId("next");
    await writeNextSite(siteDir(id), deps);
    const { run, seconds } = await launch(id);
    expect(run.outcome, await explain(id, run)).toBe("completed");
    console.info(`[nextjs e2e] launch-preview of a Next.js site with node_modules: ${seconds.toFixed(1)} s to preview.ready (next dev, first compile included)`);

    const { url, containerId } = run.result as { url: string; containerId: string };
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(await env.store.get(id)).toMatchObject({ status: "running", url, containerId });
    expect(env.emitted("preview.ready", id)).toEqual([{ projectId: id, url, containerId }]);

    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain(FIXTURE_TEXT);

    // It ran as configured: the unprivileged user, read-only root, nothing added.
    const info = await env.docker.docker.getContainer(containerId).inspect();
    expect(info.Config.User).toBe("1000:1000");
    expect(info.HostConfig.ReadonlyRootfs).toBe(true);
    expect(info.HostConfig.CapDrop).toEqual(["ALL"]);
    // Next wrote its cache into the site folder, as the preview user.
    expect((await stat(path.join(siteDir(id), ".next"))).uid).toBe(PREVIEW_USER.uid);

    // The next.config fragment: the preview origins may load the dev resources, others get 403
    // (so the list is what lets them in, not a default).
    const script = /\/_next\/static\/chunks\/[^"]+\.js/.exec(html)?.[0];
    expect(script, "the page links a client chunk").toBeDefined();
    const withOrigin = async (origin: string) => (await fetch(`${url}${script}`, { headers: { origin } })).status;
    expect(await withOrigin(`http://${id}.preview.localhost`)).toBe(200);
    expect(await withOrigin(url)).toBe(200);
    expect(await withOrigin("http://elsewhere.example")).toBe(403);
  }, 600_000);

  it("installs the dependencies of a site that has none (the entrypoint's npm ci, from the registry) and serves it", async () => {
    const id = env.docker.projectId("next-install");
    await writeNextSite(siteDir(id), null);
    const { run, seconds } = await launch(id);
    expect(run.outcome, await explain(id, run)).toBe("completed");
    console.info(`[nextjs e2e] launch-preview of a Next.js site without node_modules: ${seconds.toFixed(1)} s to preview.ready (npm ci in the preview + next dev)`);
    const { url } = run.result as { url: string };
    expect(await (await fetch(`${url}/`)).text()).toContain(FIXTURE_TEXT);
    // Installed into the site folder by the preview user; the interrupted-install marker is gone.
    expect((await stat(path.join(siteDir(id), "node_modules", "next", "package.json"))).uid).toBe(PREVIEW_USER.uid);
    await expect(stat(path.join(siteDir(id), ".preview-install-incomplete"))).rejects.toMatchObject({ code: "ENOENT" });
  }, 600_000);
});
