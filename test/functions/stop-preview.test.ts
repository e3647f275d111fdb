/** Unit tier: stop-preview over in-memory fakes (real engine and database: stop-preview.int.test.ts). */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PermanentError } from "../../functions/ports.js";
import { createUnitEnv, newProjectId, type UnitEnv } from "../helpers/unit-env.js";

let env: UnitEnv;
beforeAll(async () => {
  env = await createUnitEnv();
});
afterAll(async () => {
  await env?.close();
});

const runningPreview = (prefix?: string) => env.runningPreview(prefix);
const row = (id: string) => env.store.rows.get(id);

describe("stop-preview (unit)", () => {
  it("stops a running preview: stopped with the time, preview.stopped", async () => {
    const id = await runningPreview();
    const run = await env.stop(id, "preview.idle");
    expect(run.result).toEqual({ projectId: id, outcome: "stopped", recorded: true });
    expect(row(id)).toMatchObject({ status: "stopped", reason: "preview.idle: idle (container stopped)", stoppedAt: expect.any(Date) });
    expect(env.store.events(id)).toEqual(["starting", "running", "stopping", "stopped"]);
    expect(env.emitted("preview.stopped", id)).toEqual([{ projectId: id }]);
    expect(env.runtime.containers.get(id)?.running).toBe(false);
  });

  it("a second stop keeps the stop time and emits nothing", async () => {
    const id = await runningPreview();
    await env.stop(id);
    const stoppedAt = row(id)!.stoppedAt;
    const again = await env.stop(id);
    expect(again.result).toMatchObject({ outcome: "already-stopped", recorded: false });
    expect(row(id)!.stoppedAt).toEqual(stoppedAt);
    expect(env.emitted("preview.stopped", id)).toHaveLength(1);
  });

  it("a project that never had a preview: nothing recorded or emitted", async () => {
    const id = newProjectId("none");
    const run = await env.stop(id);
    expect(run.result).toEqual({ projectId: id, outcome: "absent", recorded: false });
    expect(row(id)).toBeUndefined();
    expect(env.emitted("preview.stopped", id)).toEqual([]);
  });

  it("while a remove is under way: the container stops but nothing is recorded or emitted", async () => {
    const id = await runningPreview();
    env.store.seed(id, "removing");
    const run = await env.stop(id);
    expect(run.result).toMatchObject({ outcome: "stopped", recorded: false });
    expect(row(id)?.status).toBe("removing");
    expect(env.emitted("preview.stopped", id)).toEqual([]);
  });

  it("a row that said stopped while its container ran: the container is stopped, the row (and its stop time) kept, nothing emitted", async () => {
    const id = await runningPreview();
    await env.stop(id);
    const before = row(id);
    env.runtime.containers.get(id)!.running = true; // started by hand
    const run = await env.stop(id);
    expect(run.result).toMatchObject({ outcome: "stopped", recorded: false });
    expect(env.runtime.containers.get(id)?.running).toBe(false);
    expect(row(id)).toEqual(before);
    expect(env.emitted("preview.stopped", id)).toHaveLength(1);
  });

  it("a failed preview stays failed: its container is stopped, nothing recorded or emitted", async () => {
    const id = await runningPreview();
    env.store.seed(id, "failed", { reason: "exited with code 3" });
    const run = await env.stop(id);
    expect(run.result).toMatchObject({ outcome: "stopped", recorded: false });
    expect(row(id)).toMatchObject({ status: "failed", reason: "exited with code 3" });
    expect(env.runtime.containers.get(id)?.running).toBe(false);
    expect(env.emitted("preview.stopped", id)).toEqual([]);
  });

  it("a stop that fails for good is recorded: failed, container stopped, preview.failed, and a later launch makes progress", async () => {
    const id = await runningPreview();
    env.runtime.failNext("stop", new PermanentError("docker: stop container failed: 400 bad request"), 1);
    const run = await env.stop(id);
    expect(run.error).toBeDefined();
    expect(row(id)).toMatchObject({ status: "failed", reason: "stop failed: docker: stop container failed: 400 bad request" });
    expect(env.emitted("preview.failed", id)).toEqual([
      { projectId: id, reason: "stop failed: docker: stop container failed: 400 bad request", logTail: `log of ${id}\n` },
    ]);
    // The failure handler tried again, and the container does not run on unattended.
    expect(env.runtime.containers.get(id)?.running).toBe(false);
    const again = await env.launch(id);
    expect(again.error).toBeUndefined();
    expect(row(id)?.status).toBe("running");
  });

  it("a failing stop that had claimed nothing records nothing (a remove under way stays)", async () => {
    const id = await runningPreview();
    env.store.seed(id, "removing");
    env.runtime.failNext("stop", new PermanentError("docker: stop container failed: 400"), 1);
    const run = await env.stop(id);
    expect(run.failure?.result).toEqual({ recorded: false, why: "overtaken" });
    expect(row(id)?.status).toBe("removing");
  });
});
