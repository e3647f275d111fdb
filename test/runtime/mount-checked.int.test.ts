/**
 * Mount what was checked: the site folder is verified in the same step as, and right before,
 * every create and every start. An attacker with write access to storage swaps the folder for a
 * link to a secret between two steps of a launch: the launch refuses, nothing outside storage is
 * mounted, read, written or deleted. Driven over the HTTP seam like the Inngest server.
 */
import { mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFunctions } from "../../functions/index.js";
import type { PreviewRuntime } from "../../functions/ports.js";
import { createApp } from "../../runtime/app.js";
import { createInngest } from "../../runtime/inngest-client.js";
import { listen } from "../helpers/http.js";
import { inngestSettings, type RecordedStep } from "../helpers/inngest-server.js";
import { createPreviewTestEnv, type PreviewTestEnv } from "../helpers/preview-env.js";

let env: PreviewTestEnv;
let serveUrl: string;
let secrets: string;
const closers: Array<() => Promise<void>> = [];

beforeAll(async () => {
  env = await createPreviewTestEnv({ readySliceMs: 250, readyTimeoutMs: 3_000 });
  const inngest = createInngest(inngestSettings({ dev: env.inngestServer.url }), pino({ level: "silent" }));
  const host = await listen(createApp({ inngest, functions: createFunctions(inngest, env.deps), store: env.store, runtime: env.docker.runtime, apiToken: null }));
  closers.push(host.close);
  serveUrl = `${host.url}/api/inngest`;
  secrets = await mkdtemp(path.join(os.tmpdir(), "sbp-secrets-"));
  closers.push(() => rm(secrets, { recursive: true, force: true }));
});
afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  await env?.cleanup();
});

/** A folder outside storage that a swapped link points at: it serves HTTP if ever mounted. */
async function secretFolder(name: string): Promise<string> {
  const dir = path.join(secrets, name);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, "start.sh"), "echo pwned > /app/written-by-preview\nexec /bin/busybox httpd -f -p 3000 -h /app\n");
  await writeFile(path.join(dir, "secret.txt"), "s3cret\n");
  return dir;
}

/** Replaces the site folder with a link to `target` (what an attacker with storage access does). */
async function swapForLink(site: string, target: string): Promise<void> {
  await rename(site, `${site}.moved`);
  await symlink(target, site);
}

const launchEvent = (id: string) => ({ name: "pipeline.step7", data: { projectId: id } });

describe.each([{ checkpointing: false }, { checkpointing: true }])("mount what was checked, checkpointing $checkpointing", ({ checkpointing }) => {
  it("a site swapped for a link between ensure-container and start-container: refused, never started, the target untouched", async () => {
    const id = env.docker.projectId("swap");
    const site = await env.docker.writeSite(id);
    const secret = await secretFolder(`swap-${checkpointing}`);
    const result = await env.inngestServer.run({
      serveUrl,
      fnId: "previews-launch-preview",
      event: launchEvent(id),
      checkpointing,
      onFailure: true,
      onStep: async (s: RecordedStep) => {
        if (s.name === "ensure-container") await swapForLink(site, secret);
      },
    });
    expect(result.outcome).toBe("failed");
    expect(await env.store.get(id)).toMatchObject({ status: "failed", reason: expect.stringMatching(/site folder .* is a symbolic link; refusing to mount it/) });
    expect(env.emitted("preview.failed", id)).toHaveLength(1);
    // The container exists (created from the checked folder) but never ran.
    const info = await env.docker.docker.getContainer(`preview-${id}`).inspect();
    expect(info.State.Running).toBe(false);
    expect(info.State.StartedAt).toMatch(/^0001-01-01/);
    // Nothing was written into, or removed from, the link's target.
    expect((await readdir(secret)).sort()).toEqual(["secret.txt", "start.sh"]);
    expect(await readFile(path.join(secret, "secret.txt"), "utf8")).toBe("s3cret\n");
  });

  it("a site swapped for a link while the engine mounts it, and back before a path check could see it: killed, the launch fails", async () => {
    const id = env.docker.projectId("mid");
    const site = await env.docker.writeSite(id);
    const secret = await secretFolder(`mid-${checkpointing}`);
    // The attacker's best timing: the link is in place exactly while the engine resolves the
    // mount, and the real folder is back before anything can look at the path again.
    const runtime: PreviewRuntime = Object.create(env.docker.runtime) as PreviewRuntime;
    runtime.start = async (projectId, folder) => {
      await swapForLink(site, secret);
      try {
        return await env.docker.runtime.start(projectId, folder);
      } finally {
        await rm(site);
        await rename(`${site}.moved`, site);
      }
    };
    const inngest = createInngest(inngestSettings({ dev: env.inngestServer.url }), pino({ level: "silent" }));
    const host = await listen(createApp({ inngest, functions: createFunctions(inngest, { ...env.deps, runtime }), store: env.store, runtime, apiToken: null }));
    try {
      const result = await env.inngestServer.run({ serveUrl: `${host.url}/api/inngest`, fnId: "previews-launch-preview", event: launchEvent(id), checkpointing, onFailure: true });
      expect(result.outcome).toBe("failed");
    } finally {
      await host.close();
    }
    expect(await env.store.get(id)).toMatchObject({ status: "failed", reason: expect.stringMatching(/mounted directory .* not the site folder checked right before .*: the folder was replaced while the engine mounted it; killed/) });
    const info = await env.docker.docker.getContainer(`preview-${id}`).inspect();
    expect(info.State.Running).toBe(false);
    // It did run on the wrong folder, for the moment it took to compare and kill (the README's
    // residual window). The secret is root's, so the unprivileged preview could not write it
    // even then: what this test shows is the kill and the refusal, not that nothing ran.
    expect(info.State.StartedAt).not.toMatch(/^0001-01-01/);
    expect((await readdir(secret)).sort()).toEqual(["secret.txt", "start.sh"]);
    expect(await readFile(path.join(secret, "secret.txt"), "utf8")).toBe("s3cret\n");
    // The real site is back in place, and a relaunch mounts it and comes up.
    expect((await env.inngestServer.run({ serveUrl, fnId: "previews-launch-preview", event: launchEvent(id), checkpointing })).outcome).toBe("completed");
    expect(await env.store.get(id)).toMatchObject({ status: "running" });
  });

  it("a site that is a link before the launch: refused in ensure-container, no container created", async () => {
    const id = env.docker.projectId("linked");
    const site = await env.docker.writeSite(id);
    const secret = await secretFolder(`linked-${checkpointing}`);
    await swapForLink(site, secret);
    const result = await env.inngestServer.run({ serveUrl, fnId: "previews-launch-preview", event: launchEvent(id), checkpointing, onFailure: true });
    expect(result.outcome).toBe("failed");
    expect(await env.store.get(id)).toMatchObject({ status: "failed", reason: expect.stringMatching(/is a symbolic link/) });
    await expect(env.docker.docker.getContainer(`preview-${id}`).inspect()).rejects.toMatchObject({ statusCode: 404 });
    expect((await readdir(secret)).sort()).toEqual(["secret.txt", "start.sh"]);
  });

  it("a whole projects folder swapped for a link before a resume: refused before the start", async () => {
    const id = env.docker.projectId("resume");
    await env.docker.writeSite(id);
    expect((await env.inngestServer.run({ serveUrl, fnId: "previews-launch-preview", event: launchEvent(id), checkpointing })).outcome).toBe("completed");
    await env.docker.runtime.stop(id);
    await env.store.apply(id, "stop", { reason: "test" });
    // Another project's folder is swapped in under this project's name.
    const other = await secretFolder(`other-${checkpointing}`);
    const project = path.join(env.docker.storageRoot, "projects", id);
    await rename(project, `${project}.moved`);
    await mkdir(project);
    await symlink(other, path.join(project, "site"));
    const result = await env.inngestServer.run({ serveUrl, fnId: "previews-launch-preview", event: launchEvent(id), checkpointing, onFailure: true });
    expect(result.outcome).toBe("failed");
    expect((await env.docker.docker.getContainer(`preview-${id}`).inspect()).State.Running).toBe(false);
    expect((await readdir(other)).sort()).toEqual(["secret.txt", "start.sh"]);
  });
});
