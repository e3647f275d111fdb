import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { InngestTestEngine } from "@inngest/test";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { oneRun } from "../helpers/lifecycle-run.js";
import { createPreviewTestEnv, type PreviewTestEnv } from "../helpers/preview-env.js";

let env: PreviewTestEnv;
beforeAll(async () => {
  env = await createPreviewTestEnv();
});
afterAll(async () => {
  await env?.cleanup();
});

const launch = (id: unknown) => env.launch(id);
const stop = (id: unknown) => env.stop(id);
const remove = (id: unknown) => env.remove(id);

describe("remove-preview", () => {
  it("removes the container and the site folder, records removed, emits preview.removed", async () => {
    const id = env.docker.projectId();
    const siteDir = await env.docker.writeSite(id);
    const { containerId } = (await launch(id)).result as { containerId: string };
    const { result, error } = await remove(id);
    expect(error).toBeUndefined();
    expect(result).toEqual({ projectId: id, outcome: "removed", recorded: true });
    await expect(env.docker.docker.getContainer(containerId).inspect()).rejects.toMatchObject({ statusCode: 404 });
    expect(existsSync(siteDir)).toBe(false);
    expect(existsSync(path.dirname(siteDir))).toBe(false); // the emptied project folder too
    expect(await env.store.get(id)).toMatchObject({ status: "removed", url: null, containerId: null });
    expect((await env.store.events(id)).map((e) => e.type)).toEqual(["starting", "running", "removing", "removed"]);
    expect(env.inngestServer.eventsNamed("preview.removed").filter((e) => e.data.projectId === id)).toHaveLength(1);
  });

  it("removes a stopped preview and keeps other files of the project folder", async () => {
    const id = env.docker.projectId();
    const siteDir = await env.docker.writeSite(id);
    await writeFile(path.join(path.dirname(siteDir), "orchestrator-notes.txt"), "not ours\n");
    await launch(id);
    await stop(id);
    const { error } = await remove(id);
    expect(error).toBeUndefined();
    expect(existsSync(siteDir)).toBe(false);
    expect(existsSync(path.join(path.dirname(siteDir), "orchestrator-notes.txt"))).toBe(true);
  });

  it("is idempotent and succeeds on a project that never had a preview", async () => {
    const id = env.docker.projectId();
    await env.docker.writeSite(id);
    await launch(id);
    await remove(id);
    const again = await remove(id);
    expect(again.error).toBeUndefined();
    // A duplicate project.deleted converges: the row stays as it was, nothing is announced again.
    expect(again.result).toEqual({ projectId: id, outcome: "absent", recorded: false });
    expect((await env.store.get(id))?.status).toBe("removed");

    const never = env.docker.projectId("never");
    const files = path.join(env.docker.storageRoot, "projects", never, "site");
    await mkdir(files, { recursive: true });
    const { error } = await remove(never);
    expect(error).toBeUndefined();
    expect(existsSync(files)).toBe(false); // generated files go even without a preview
    expect(await env.store.get(never)).toBeNull();
  });

  it("a project whose site is generated again after removal can be launched again", async () => {
    const id = env.docker.projectId();
    await env.docker.writeSite(id);
    const first = (await launch(id)).result as { containerId: string };
    await remove(id);
    await env.docker.writeSite(id);
    const again = await launch(id);
    expect(again.error).toBeUndefined();
    const second = again.result as { containerId: string };
    expect(second.containerId).not.toBe(first.containerId);
    expect((await env.docker.docker.getContainer(second.containerId).inspect()).State.Running).toBe(true);
    expect(await env.store.get(id)).toMatchObject({ status: "running", containerId: second.containerId });
  });

  it("a launch after the project was deleted records nothing over `removed`", async () => {
    const id = env.docker.projectId();
    await env.docker.writeSite(id);
    await launch(id);
    await remove(id);
    const late = await launch(id);
    expect(late.error).toBeUndefined();
    expect(late.result).toEqual({ projectId: id, superseded: true, status: "removed" });
    expect(await env.store.get(id)).toMatchObject({ status: "removed" });
    await expect(env.docker.docker.getContainer(`preview-${id}`).inspect()).rejects.toMatchObject({ statusCode: 404 });
  });

  it("a late stop does not bring a removed preview back", async () => {
    const id = env.docker.projectId();
    await env.docker.writeSite(id);
    await launch(id);
    await remove(id);
    const { error } = await stop(id);
    expect(error).toBeUndefined();
    expect(await env.store.get(id)).toMatchObject({ status: "removed" });
    expect((await env.store.events(id)).map((e) => e.type)).toEqual(["starting", "running", "removing", "removed"]);
  });

  it("converges after a crash between removing the container and deleting the files", async () => {
    const id = env.docker.projectId();
    const siteDir = await env.docker.writeSite(id);
    await launch(id);
    await new InngestTestEngine({ function: env.functions[2], transformCtx: oneRun().transformCtx }).executeStep("remove-container", {
      events: [{ name: "project.deleted", data: { projectId: id } }],
    });
    expect(existsSync(siteDir)).toBe(true);
    expect((await env.store.get(id))?.status).toBe("removing");
    const { error } = await remove(id);
    expect(error).toBeUndefined();
    expect(existsSync(siteDir)).toBe(false);
    expect((await env.store.get(id))?.status).toBe("removed");
  });

  it("refuses an invalid projectId before touching the file system", async () => {
    const outside = path.join(env.docker.storageRoot, "keep");
    await mkdir(outside, { recursive: true });
    const { error } = await remove("../keep");
    expect(error).toMatchObject({ name: "EventValidationError", message: expect.stringMatching(/projectId must be/) });
    expect(existsSync(outside)).toBe(true);
  });
});
