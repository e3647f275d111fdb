/**
 * Unit tier: launch-preview over in-memory fakes of its ports, with real Inngest steps
 * (`@inngest/test`) and its failure handler run as the server runs it. The same paths against a
 * real engine and database are in launch-preview.int.test.ts.
 */
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

/** A project with a site folder. */
function project(prefix = "p"): string {
  const id = newProjectId(prefix);
  env.site.sites.add(id);
  return id;
}

const row = (id: string) => env.store.rows.get(id);
const running = (id: string) => env.runtime.containers.get(id)?.running;

describe("launch-preview (unit)", () => {
  it("claims, creates, starts, probes, records running and emits preview.ready", async () => {
    const id = project();
    const run = await env.launch(id);
    expect(run.error).toBeUndefined();
    const url = `http://${id}.preview.localhost`;
    const containerId = env.runtime.containers.get(id)!.id;
    expect(run.result).toEqual({ projectId: id, url, containerId });
    expect(row(id)).toMatchObject({ status: "running", url, containerId, logTail: null });
    expect(env.store.events(id)).toEqual(["starting", "running"]);
    expect(env.emitted("preview.ready", id)).toEqual([{ projectId: id, url, containerId }]);
    expect(running(id)).toBe(true);
  });

  it("is a no-op on a running preview: no claim, no start, no new transition, preview.ready again", async () => {
    const id = project();
    await env.launch(id);
    const before = row(id)!;
    const starts = env.runtime.count("start");
    const second = await env.launch(id, "preview.requested");
    expect(second.error).toBeUndefined();
    expect(env.runtime.count("start")).toBe(starts);
    expect(env.store.events(id)).toEqual(["starting", "running"]);
    expect(row(id)!.updatedAt).toEqual(before.updatedAt);
    expect(env.emitted("preview.ready", id)).toHaveLength(2);
  });

  it("a running preview answering at another URL than recorded (routing changed, new port): the URL is corrected, not superseded", async () => {
    const id = project();
    await env.launch(id);
    const url = row(id)!.url;
    env.store.rows.set(id, { ...row(id)!, url: "http://127.0.0.1:32788" });
    const run = await env.launch(id, "preview.requested");
    expect(run.error).toBeUndefined();
    expect(run.result).toMatchObject({ projectId: id, url });
    expect(row(id)).toMatchObject({ status: "running", url });
    expect(env.emitted("preview.ready", id).at(-1)).toMatchObject({ url });
  });

  it("claims a preview recorded running whose container stopped behind its back, and starts it", async () => {
    const id = project();
    await env.launch(id);
    env.runtime.containers.get(id)!.running = false;
    const run = await env.launch(id);
    expect(run.error).toBeUndefined();
    expect(env.store.events(id)).toEqual(["starting", "running", "starting", "running"]);
    expect(running(id)).toBe(true);
  });

  it("resumes a stopped preview with the same container", async () => {
    const id = project();
    await env.launch(id);
    const containerId = env.runtime.containers.get(id)!.id;
    await env.stop(id);
    expect(row(id)?.status).toBe("stopped");
    const run = await env.launch(id);
    expect(run.result).toMatchObject({ containerId });
    expect(row(id)).toMatchObject({ status: "running", stoppedAt: null });
  });

  it("without a site folder: failed naming where it looked, preview.failed, no container", async () => {
    const id = newProjectId("nosite");
    const run = await env.launch(id);
    expect(run.error).toMatchObject({ name: "NonRetriableError" });
    const reason = `site folder not found: /storage/projects/${id}/site`;
    expect(row(id)).toMatchObject({ status: "failed", reason });
    expect(env.emitted("preview.failed", id)).toEqual([{ projectId: id, reason, logTail: "" }]);
    expect(env.runtime.containers.has(id)).toBe(false);
    expect(env.store.events(id)).toEqual(["starting", "failed"]);
  });

  it("when the process exits: failed with the reason and the log tail", async () => {
    const id = project("exits");
    env.runtime.behaviour.set(id, "exits");
    await env.launch(id);
    expect(row(id)).toMatchObject({ status: "failed", reason: `container preview-${id} exited with code 3`, logTail: `log of ${id}\n` });
    expect(env.emitted("preview.failed", id)).toHaveLength(1);
  });

  it("probes in bounded slices with pauses until READY_TIMEOUT, then fails and stops the container", async () => {
    const id = project("silent");
    env.runtime.behaviour.set(id, "silent");
    const probes = env.runtime.count("probeReady");
    await env.launch(id);
    // 300 ms in 100 ms slices: several probe steps, not one long-held request.
    expect(env.runtime.count("probeReady") - probes).toBeGreaterThanOrEqual(2);
    expect(row(id)).toMatchObject({ status: "failed", reason: `preview ${id} did not answer HTTP within 300ms`, logTail: `log of ${id}\n` });
    expect(running(id)).toBe(false);
  });

  describe("a failure at any step ends recorded: failed, container stopped, preview.failed", () => {
    const cases = [
      ["ensure-container", "ensureContainer", new PermanentError("docker: create container failed: 400 bad spec")],
      ["ensure-container (retries exhausted)", "ensureContainer", new Error("docker: inspect failed: connect ECONNREFUSED")],
      ["start-container", "start", new PermanentError("docker: start container failed: 400 bad mount")],
      ["wait-ready", "probeReady", new Error("docker: inspect failed: socket hang up")],
    ] as const;
    it.each(cases)("%s", async (_step, method, error) => {
      const id = project("inject");
      env.runtime.failNext(method, error, 1_000);
      const run = await env.launch(id);
      env.runtime.failNext(method, error, 0);
      expect(run.error).toMatchObject({ message: error.message });
      expect(row(id)).toMatchObject({ status: "failed", reason: error.message });
      expect(env.emitted("preview.failed", id)).toEqual([{ projectId: id, reason: error.message, logTail: expect.any(String) }]);
      expect(running(id) ?? false).toBe(false);
    });

    it("record-running: a running container is never left recorded starting", async () => {
      const id = project("inject");
      const apply = env.store.apply.bind(env.store);
      env.store.apply = async (projectId, action, fields) => {
        if (projectId === id && action === "ready") throw new PermanentError("database: record running failed: check constraint");
        return apply(projectId, action, fields);
      };
      try {
        await env.launch(id);
      } finally {
        env.store.apply = apply;
      }
      expect(row(id)).toMatchObject({ status: "failed", reason: "database: record running failed: check constraint" });
      expect(running(id)).toBe(false);
      expect(env.emitted("preview.failed", id)).toHaveLength(1);
    });
  });

  it("while a remove is under way: superseded, no container, nothing recorded or emitted", async () => {
    const id = project("removing");
    env.store.seed(id, "removing");
    const run = await env.launch(id);
    expect(run.result).toMatchObject({ projectId: id, superseded: true, status: "removing" });
    expect(env.runtime.containers.has(id)).toBe(false);
    expect(row(id)?.status).toBe("removing");
    expect(env.emitted("preview.ready", id)).toEqual([]);
  });

  it("a late launch of a deleted project (row removed, files gone) records nothing; with its files back it launches", async () => {
    const id = project("deleted");
    await env.launch(id);
    await env.remove(id);
    const late = await env.launch(id);
    expect(late.result).toEqual({ projectId: id, superseded: true, status: "removed" });
    expect(row(id)?.status).toBe("removed");
    expect(env.emitted("preview.failed", id)).toEqual([]);
    env.site.sites.add(id);
    const again = await env.launch(id);
    expect(again.error).toBeUndefined();
    expect(row(id)?.status).toBe("running");
  });

  it("overtaken by a stop between two steps: ready refused, container stopped, nothing emitted", async () => {
    const id = project("overtaken");
    const probe = env.runtime.probeReady.bind(env.runtime);
    env.runtime.probeReady = async (projectId, sliceMs, signal) => {
      // A stop ran to the end between this launch's start and its record-running.
      if (projectId === id) env.store.seed(id, "stopped");
      return probe(projectId, sliceMs, signal);
    };
    try {
      const run = await env.launch(id);
      expect(run.result).toMatchObject({ superseded: true, status: "stopped" });
    } finally {
      env.runtime.probeReady = probe;
    }
    expect(row(id)?.status).toBe("stopped");
    expect(running(id)).toBe(false);
    expect(env.emitted("preview.ready", id)).toEqual([]);
    expect(env.emitted("preview.failed", id)).toEqual([]);
  });

  it("a late failure handler never records over, or stops, a newer launch that took the preview", async () => {
    const id = project("late-handler");
    env.runtime.behaviour.set(id, "exits");
    const first = await env.launch(id, "pipeline.step7", { deferFailure: true });
    expect(first.error).toBeDefined();
    // The user retries before the first run's failure handler has run; this time it comes up.
    env.runtime.behaviour.set(id, "answers");
    env.runtime.containers.get(id)!.running = false;
    const second = await env.launch(id, "preview.requested");
    expect(second.error).toBeUndefined();
    const late = await first.runFailure!();
    expect(late.result).toEqual({ recorded: false, why: "overtaken" });
    expect(row(id)?.status).toBe("running");
    expect(running(id)).toBe(true);
    expect(env.emitted("preview.failed", id)).toEqual([]);
  });

  it("a site check that fails for good (storage unreadable) ends recorded: the launch claimed first", async () => {
    const id = project("eio");
    const check = env.site.check.bind(env.site);
    env.site.check = async (projectId) => {
      if (projectId === id) throw new Error("storage: check site folder failed: EIO");
      return check(projectId);
    };
    try {
      await env.launch(id);
    } finally {
      env.site.check = check;
    }
    expect(row(id)).toMatchObject({ status: "failed", reason: "storage: check site folder failed: EIO" });
    expect(env.emitted("preview.failed", id)).toHaveLength(1);
  });

  it("a container that mounted another folder than the one checked: failed, with the runtime's reason", async () => {
    const id = project("swapped");
    env.runtime.mounts.set(id, "9:999");
    await env.launch(id);
    expect(row(id)).toMatchObject({ status: "failed", reason: expect.stringContaining("it mounted directory 9:999") });
    expect(running(id)).toBe(false);
    expect(env.emitted("preview.failed", id)).toHaveLength(1);
  });

  it("where the mount cannot be compared, the path is checked again after the start: unchanged, it comes up", async () => {
    const id = project("unknown");
    env.runtime.mounts.set(id, "unknown");
    const run = await env.launch(id);
    expect(run.error).toBeUndefined();
    expect(row(id)?.status).toBe("running");
  });

  it("where the mount cannot be compared, a folder replaced during the start is caught by the second check: stopped, failed", async () => {
    const id = project("replaced");
    env.runtime.mounts.set(id, "unknown");
    const start = env.runtime.start.bind(env.runtime);
    env.runtime.start = async (projectId, folder) => {
      const result = await start(projectId, folder);
      if (projectId === id) env.site.folders.set(id, "7:777");
      return result;
    };
    try {
      await env.launch(id);
    } finally {
      env.runtime.start = start;
    }
    expect(row(id)).toMatchObject({ status: "failed", reason: `site folder of ${id} was replaced by another directory (changed while the container started; stopped)` });
    expect(running(id)).toBe(false);
  });

  it("a name held by a foreign container: failed with the reason, the foreign container untouched", async () => {
    const id = project("foreign");
    env.runtime.plantForeign(id);
    const run = await env.launch(id);
    expect(run.error).toBeDefined();
    expect(row(id)).toMatchObject({ status: "failed", reason: expect.stringContaining("not managed by this service") });
    expect(env.runtime.containers.get(id)).toMatchObject({ foreign: true, running: true });
  });

  describe("a container gone between ensure-container and start-container (removed by hand, or expired by a sweep)", () => {
    /** A stopped preview: its container exists, stopped, so ensure-container reuses it. */
    async function stoppedPreview(prefix: string) {
      const id = project(prefix);
      await env.launch(id);
      await env.stop(id);
      expect(row(id)?.status).toBe("stopped");
      return { id, oldId: env.runtime.containers.get(id)!.id };
    }

    it("gone once: created again and started in the same step; ready, recorded with the new container's id", async () => {
      const { id, oldId } = await stoppedPreview("gone1");
      const ensures = env.runtime.count("ensureContainer");
      const starts = env.runtime.count("start");
      env.runtime.vanishBeforeStart.set(id, 1);
      const run = await env.launch(id);
      expect(run.error).toBeUndefined();
      const newId = env.runtime.containers.get(id)!.id;
      expect(newId).not.toBe(oldId);
      expect(run.result).toEqual({ projectId: id, url: `http://${id}.preview.localhost`, containerId: newId });
      expect(row(id)).toMatchObject({ status: "running", containerId: newId });
      expect(env.emitted("preview.ready", id).at(-1)).toEqual({ projectId: id, url: `http://${id}.preview.localhost`, containerId: newId });
      expect(env.emitted("preview.failed", id)).toEqual([]);
      // One find-or-create in ensure-container, one more in start-container; two starts.
      expect(env.runtime.count("ensureContainer") - ensures).toBe(2);
      expect(env.runtime.count("start") - starts).toBe(2);
      expect(running(id)).toBe(true);
    });

    it("gone again right after it was created again: a retryable failure of the step, no loop", async () => {
      const { id } = await stoppedPreview("gone2");
      const ensures = env.runtime.count("ensureContainer");
      const starts = env.runtime.count("start");
      env.runtime.vanishBeforeStart.set(id, 2);
      const run = await env.launch(id);
      // @inngest/test does not retry a step: a retryable failure ends the run as if out of retries.
      expect(run.error).toMatchObject({ message: expect.stringMatching(/it no longer exists \(vanished again right after it was created again, c\d+-/) });
      expect((run.error as Error).name).not.toBe("NonRetriableError");
      expect(env.runtime.count("ensureContainer") - ensures).toBe(2);
      expect(env.runtime.count("start") - starts).toBe(2);
      expect(row(id)).toMatchObject({ status: "failed", reason: expect.stringContaining("vanished again") });
      // What the step's next attempt would do: nothing vanishes any more, it comes up.
      expect((await env.launch(id)).error).toBeUndefined();
      expect(row(id)?.status).toBe("running");
    });

    it("a foreign container under the name in that window is refused for good, never replaced", async () => {
      const { id } = await stoppedPreview("gonefor");
      const start = env.runtime.start.bind(env.runtime);
      env.runtime.start = async (projectId, site) => {
        if (projectId === id) env.runtime.plantForeign(id);
        return start(projectId, site);
      };
      const ensures = env.runtime.count("ensureContainer");
      try {
        const run = await env.launch(id);
        expect(run.error).toMatchObject({ name: "NonRetriableError", message: expect.stringContaining("not managed by this service") });
      } finally {
        env.runtime.start = start;
      }
      expect(env.runtime.count("ensureContainer") - ensures).toBe(1);
      expect(env.runtime.containers.get(id)).toMatchObject({ id: `foreign-${id}`, foreign: true, running: true });
      expect(row(id)).toMatchObject({ status: "failed", reason: expect.stringContaining("not managed by this service") });
    });
  });

  it.each([["../x"], ["A"], ["a.b"], [""], [42]])("refuses projectId %j before any port is called", async (bad) => {
    const calls = env.runtime.calls.length + env.site.calls.length;
    const rows = env.store.rows.size;
    const run = await env.launch(bad);
    expect(run.error).toMatchObject({ name: "EventValidationError", message: expect.stringMatching(/projectId must be/) });
    expect(run.failure?.result).toEqual({ recorded: false, why: "invalid event" });
    expect(env.runtime.calls.length + env.site.calls.length).toBe(calls);
    expect(env.store.rows.size).toBe(rows);
  });
});

describe("liveness after refusals: no status blocks a project forever", () => {
  it("a foreign container makes launch, stop and remove fail with a reason, never stuck; then the project recovers", async () => {
    const id = project("hostile");
    env.runtime.plantForeign(id);

    await env.launch(id);
    expect(row(id)?.status).toBe("failed");
    // A stop leaves a failed preview failed (it claims nothing); its refusal records nothing over it.
    const stop = await env.stop(id);
    expect(stop.error).toBeDefined();
    expect(row(id)).toMatchObject({ status: "failed", reason: expect.stringContaining("not managed") });
    const remove = await env.remove(id);
    expect(remove.error).toBeDefined();
    expect(row(id)).toMatchObject({ status: "failed", reason: expect.stringMatching(/^remove failed: .*not managed/) });

    // A later launch makes progress (fails with a reason), it is not "superseded".
    const again = await env.launch(id);
    expect(again.result).toBeUndefined();
    expect(row(id)).toMatchObject({ status: "failed", reason: expect.stringContaining("not managed") });
    expect(env.store.events(id)).toEqual(["starting", "failed", "removing", "failed", "starting", "failed"]);

    // Once the foreign container is gone, the project launches.
    env.runtime.containers.delete(id);
    const ok = await env.launch(id);
    expect(ok.error).toBeUndefined();
    expect(row(id)?.status).toBe("running");
  });
});
