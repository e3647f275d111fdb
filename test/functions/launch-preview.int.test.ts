import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { InngestTestEngine } from "@inngest/test";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { oneRun } from "../helpers/lifecycle-run.js";
import { createPreviewTestEnv, type PreviewTestEnv } from "../helpers/preview-env.js";
import { TEST_LABEL } from "../helpers/docker.js";

let env: PreviewTestEnv;
beforeAll(async () => {
  env = await createPreviewTestEnv({ readyTimeoutMs: 3_000 });
});
afterAll(async () => {
  await env?.cleanup();
});

/** One run with real steps, then its failure handler when it failed (as the server would). */
const launch = (projectId: unknown, name = "pipeline.step7") => env.launch(projectId, name);
const launchFn = () => env.functions[0];

const containersOnNetwork = async () =>
  env.docker.docker.listContainers({ all: true, filters: { network: [env.docker.options.network], label: [`${TEST_LABEL}=${env.docker.runId}`] } });

describe("launch-preview", () => {
  it("creates, starts and waits for the preview, records running and emits preview.ready", async () => {
    const id = env.docker.projectId();
    await env.docker.writeSite(id);
    const { result, error } = await launch(id);
    expect(error).toBeUndefined();
    const url = `http://${id}.preview.localhost`;
    expect(result).toMatchObject({ projectId: id, url });
    const { containerId } = result as { containerId: string };

    const info = await env.docker.docker.getContainer(`preview-${id}`).inspect();
    expect(info.Id).toBe(containerId);
    expect(info.State.Running).toBe(true);
    const ip = info.NetworkSettings.Networks[env.docker.options.network]!.IPAddress;
    const res = await fetch(`http://${ip}:3000/`);
    expect(await res.text()).toContain(`preview ${id}`);

    expect(await env.store.get(id)).toMatchObject({ projectId: id, status: "running", url, containerId, logTail: null, stoppedAt: null });
    expect((await env.store.events(id)).map((e) => e.type)).toEqual(["starting", "running"]);
    expect(env.inngestServer.eventsNamed("preview.ready").filter((e) => e.data.projectId === id)).toEqual([
      expect.objectContaining({ name: "preview.ready", data: { projectId: id, url, containerId } }),
    ]);
  });

  it("also launches on preview.requested", async () => {
    const id = env.docker.projectId();
    await env.docker.writeSite(id);
    const { error } = await launch(id, "preview.requested");
    expect(error).toBeUndefined();
    expect((await env.store.get(id))?.status).toBe("running");
  });

  it("is a no-op on a running preview: same container, no new transition, URL returned", async () => {
    const id = env.docker.projectId();
    await env.docker.writeSite(id);
    const first = await launch(id);
    const before = await env.store.get(id);
    const startedAt = (await env.docker.docker.getContainer(`preview-${id}`).inspect()).State.StartedAt;
    const second = await launch(id);
    expect(second.error).toBeUndefined();
    expect(second.result).toEqual(first.result);
    const after = await env.store.get(id);
    expect(after?.containerId).toBe(before?.containerId);
    expect((await env.store.events(id)).map((e) => e.type)).toEqual(["starting", "running"]);
    // Not restarted: the same process has been serving since the first launch.
    expect((await env.docker.docker.getContainer(`preview-${id}`).inspect()).State.StartedAt).toBe(startedAt);
    expect(after?.updatedAt.getTime()).toBe(before?.updatedAt.getTime());
  });

  it("fails without a site folder: records failed naming where it looked, emits preview.failed, creates no container", async () => {
    const id = env.docker.projectId("nosite");
    const { error } = await launch(id);
    expect(error).toBeDefined();
    const where = path.join(env.docker.storageRoot, "projects", id, "site");
    expect(await env.store.get(id)).toMatchObject({ status: "failed", reason: `site folder not found: ${where}` });
    expect(env.inngestServer.eventsNamed("preview.failed").filter((e) => e.data.projectId === id)).toEqual([
      expect.objectContaining({ data: { projectId: id, reason: `site folder not found: ${where}`, logTail: "" } }),
    ]);
    await expect(env.docker.docker.getContainer(`preview-${id}`).inspect()).rejects.toMatchObject({ statusCode: 404 });
  });

  it("fails when the dev server exits: records the reason and log tail, emits preview.failed", async () => {
    const id = env.docker.projectId("crash");
    await env.docker.writeSite(id, "exit");
    const { error } = await launch(id);
    expect(error).toBeDefined();
    const row = await env.store.get(id);
    expect(row).toMatchObject({ status: "failed", reason: expect.stringMatching(new RegExp(`preview-${id}.*exited with code 3`)) });
    expect(row?.logTail).toContain("Error: Cannot find module next");
    const failed = env.inngestServer.eventsNamed("preview.failed").filter((e) => e.data.projectId === id);
    expect(failed).toHaveLength(1);
    expect(failed[0]!.data.logTail).toContain("booting preview");
    expect((await env.store.events(id)).map((e) => e.type)).toEqual(["starting", "failed"]);
  });

  it("fails when the dev server never answers within READY_TIMEOUT", async () => {
    const id = env.docker.projectId("silent");
    await env.docker.writeSite(id, "silent");
    const { error } = await launch(id);
    expect(error).toBeDefined();
    expect(await env.store.get(id)).toMatchObject({ status: "failed", reason: `preview ${id} did not answer HTTP within 3s`, logTail: "compiling...\n" });
    // Not left running unattended; kept (stopped) so its logs can still be read.
    expect((await env.docker.docker.getContainer(`preview-${id}`).inspect()).State.Running).toBe(false);
  });

  it("recovers a failed preview once its site is fixed", async () => {
    const id = env.docker.projectId("fix");
    await env.docker.writeSite(id, "exit");
    await launch(id);
    expect((await env.store.get(id))?.status).toBe("failed");
    await env.docker.writeSite(id, "http");
    const { error } = await launch(id);
    expect(error).toBeUndefined();
    expect(await env.store.get(id)).toMatchObject({ status: "running", logTail: null });
  });

  it("converges after a crash between create and start", async () => {
    const id = env.docker.projectId("crash-create");
    await env.docker.writeSite(id);
    // Run only up to the step that creates the container, as if the worker died right after it.
    const partial = await new InngestTestEngine({ function: launchFn(), transformCtx: oneRun().transformCtx }).executeStep("ensure-container", {
      events: [{ name: "pipeline.step7", data: { projectId: id } }],
    });
    const created = partial.result as { outcome: string; containerId: string; running: boolean };
    expect(created).toMatchObject({ outcome: "claimed", running: false });
    expect((await env.docker.docker.getContainer(`preview-${id}`).inspect()).State.Running).toBe(false);

    const { result, error } = await launch(id);
    expect(error).toBeUndefined();
    expect(result).toMatchObject({ containerId: created.containerId });
    const all = await env.docker.docker.listContainers({ all: true, filters: { name: [`preview-${id}`] } });
    expect(all.map((c) => c.Id)).toEqual([created.containerId]);
    expect(await env.store.get(id)).toMatchObject({ status: "running", containerId: created.containerId });
  });

  it("converges after a crash between start and recording running", async () => {
    const id = env.docker.projectId("crash-start");
    await env.docker.writeSite(id);
    await new InngestTestEngine({ function: launchFn(), transformCtx: oneRun().transformCtx }).executeStep("start-container", {
      events: [{ name: "pipeline.step7", data: { projectId: id } }],
    });
    expect(await env.store.get(id)).toMatchObject({ status: "starting" });
    expect((await env.docker.docker.getContainer(`preview-${id}`).inspect()).State.Running).toBe(true);
    const { error } = await launch(id);
    expect(error).toBeUndefined();
    expect(await env.store.get(id)).toMatchObject({ status: "running" });
    expect((await env.store.events(id)).map((e) => e.type)).toEqual(["starting", "running"]);
  });

  it("20 concurrent launches of one project give one container and one row", async () => {
    const id = env.docker.projectId("race");
    await env.docker.writeSite(id);
    const runs = await Promise.all(Array.from({ length: 20 }, () => launch(id)));
    // None fails; a run overtaken by a duplicate that took the preview after it ends superseded.
    expect(runs.map((r) => r.error)).toEqual(Array(20).fill(undefined));
    const finished = runs.map((r) => r.result as { containerId?: string; superseded?: boolean }).filter((r) => !r.superseded);
    expect(finished.length).toBeGreaterThan(0);
    const ids = new Set(finished.map((r) => r.containerId));
    expect(ids.size).toBe(1);
    expect(env.emitted("preview.failed", id)).toEqual([]);
    const all = await env.docker.docker.listContainers({ all: true, filters: { name: [`preview-${id}`] } });
    expect(all).toHaveLength(1);
    const rows = (await env.store.list()).filter((r) => r.projectId === id);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: "running", containerId: [...ids][0] });
  });

  it("liveness with a hostile neighbour: a foreign container under the name makes launch, stop and remove fail with a reason, never stuck", async () => {
    const id = env.docker.projectId("hostile");
    await env.docker.writeSite(id);
    await env.docker.runtime.ensureNetwork();
    const foreign = await env.docker.createForeign(id);
    await foreign.start();

    expect((await launch(id)).error).toBeDefined();
    expect(await env.store.get(id)).toMatchObject({ status: "failed", reason: expect.stringContaining("not managed") });
    expect((await env.stop(id)).error).toBeDefined();
    expect(await env.store.get(id)).toMatchObject({ status: "failed", reason: expect.stringContaining("not managed") });
    expect((await env.remove(id)).error).toBeDefined();
    expect(await env.store.get(id)).toMatchObject({ status: "failed", reason: expect.stringMatching(/^remove failed: /) });
    // A later launch makes progress (fails with its reason) instead of answering superseded.
    const again = await launch(id);
    expect(again.result).toBeUndefined();
    expect((await env.store.events(id)).map((e) => e.type)).toEqual(["starting", "failed", "removing", "failed", "starting", "failed"]);
    // The foreign container was never touched.
    expect((await foreign.inspect()).State.Running).toBe(true);

    // Once its owner removes it, the project launches.
    await foreign.remove({ force: true });
    const ok = await launch(id);
    expect(ok.error).toBeUndefined();
    expect((await env.store.get(id))?.status).toBe("running");
  });

  it.each([
    ["../x"],
    ["A"],
    ["a_b"],
    ["a".repeat(64)],
    ["a`b"],
    [""],
    ["-a"],
    ["a.b"],
    [42],
  ])("refuses projectId %j before any Docker, file or SQL call", async (bad) => {
    const containersBefore = (await containersOnNetwork()).length;
    const rowsBefore = (await env.store.list()).length;
    const filesBefore = readdirSync(path.join(env.docker.storageRoot, "projects")).sort();
    const eventsBefore = env.inngestServer.events.length;
    const { error } = await launch(bad);
    // Refused by the event schema, before the first step (not by a check deeper down).
    expect(error).toMatchObject({ name: "EventValidationError", message: expect.stringMatching(/projectId must be/) });
    expect((await containersOnNetwork()).length).toBe(containersBefore);
    expect((await env.store.list()).length).toBe(rowsBefore);
    expect(readdirSync(path.join(env.docker.storageRoot, "projects")).sort()).toEqual(filesBefore);
    expect(existsSync(path.join(env.docker.storageRoot, "x"))).toBe(false);
    expect(env.inngestServer.events.length).toBe(eventsBefore);
  });
});
