import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPreviewTestEnv, type PreviewTestEnv } from "../helpers/preview-env.js";

let env: PreviewTestEnv;
beforeAll(async () => {
  env = await createPreviewTestEnv();
});
afterAll(async () => {
  await env?.cleanup();
});

const launch = (id: unknown) => env.launch(id);
const stop = (id: unknown, name = "preview.closed") => env.stop(id, name);
const running = async (id: string) => (await env.docker.docker.getContainer(`preview-${id}`).inspect()).State.Running;

describe("stop-preview", () => {
  it.each(["preview.closed", "preview.idle"])("stops a running preview on %s, records stopped with the time, emits preview.stopped", async (eventName) => {
    const id = env.docker.projectId();
    await env.docker.writeSite(id);
    const launched = await launch(id);
    const containerId = (launched.result as { containerId: string }).containerId;
    const before = Date.now();
    const { result, error } = await stop(id, eventName);
    expect(error).toBeUndefined();
    expect(result).toEqual({ projectId: id, outcome: "stopped", recorded: true });
    expect(await running(id)).toBe(false);
    const row = await env.store.get(id);
    expect(row).toMatchObject({ status: "stopped", containerId, url: `http://${id}.preview.localhost` });
    expect(row!.stoppedAt!.getTime()).toBeGreaterThanOrEqual(before - 1_000);
    expect(row!.stoppedAt!.getTime()).toBeLessThanOrEqual(Date.now() + 1_000);
    expect(row!.reason).toContain(eventName);
    expect((await env.store.events(id)).map((e) => e.type)).toEqual(["starting", "running", "stopping", "stopped"]);
    expect(env.inngestServer.eventsNamed("preview.stopped").filter((e) => e.data.projectId === id)).toHaveLength(1);
  });

  it("is idempotent: a replayed stop keeps the row and its stop time", async () => {
    const id = env.docker.projectId();
    await env.docker.writeSite(id);
    await launch(id);
    await stop(id);
    const first = await env.store.get(id);
    const { result, error } = await stop(id);
    expect(error).toBeUndefined();
    expect(result).toEqual({ projectId: id, outcome: "already-stopped", recorded: false });
    const second = await env.store.get(id);
    expect(second?.status).toBe("stopped");
    expect(second?.stoppedAt?.getTime()).toBe(first?.stoppedAt?.getTime());
  });

  it("resumes a stopped preview: the same container runs again", async () => {
    const id = env.docker.projectId();
    await env.docker.writeSite(id);
    const first = (await launch(id)).result as { containerId: string };
    await stop(id);
    const again = await launch(id);
    expect(again.error).toBeUndefined();
    expect(again.result).toMatchObject({ containerId: first.containerId });
    expect(await running(id)).toBe(true);
    expect(await env.store.get(id)).toMatchObject({ status: "running", stoppedAt: null });
  });

  it("succeeds on a project that never had a preview, recording and emitting nothing", async () => {
    const id = env.docker.projectId("never");
    const { result, error } = await stop(id);
    expect(error).toBeUndefined();
    expect(result).toEqual({ projectId: id, outcome: "absent", recorded: false });
    expect(await env.store.get(id)).toBeNull();
    expect(env.inngestServer.events.filter((e) => e.data.projectId === id)).toEqual([]);
  });

  it("records stopped when the container vanished behind its back", async () => {
    const id = env.docker.projectId();
    await env.docker.writeSite(id);
    const { containerId } = (await launch(id)).result as { containerId: string };
    await env.docker.docker.getContainer(containerId).remove({ force: true });
    const { result, error } = await stop(id);
    expect(error).toBeUndefined();
    expect(result).toEqual({ projectId: id, outcome: "absent", recorded: true });
    expect((await env.store.get(id))?.status).toBe("stopped");
  });

  it("refuses an invalid projectId before touching anything", async () => {
    const rows = (await env.store.list()).length;
    const { error } = await stop("../etc");
    expect(error).toMatchObject({ name: "EventValidationError", message: expect.stringMatching(/projectId must be/) });
    expect((await env.store.list()).length).toBe(rows);
  });
});
