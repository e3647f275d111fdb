/** Unit tier: remove-preview over in-memory fakes (real engine and database: remove-preview.int.test.ts). */
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

describe("remove-preview (unit)", () => {
  it("removes container and files, records removed (clearing url and container), emits preview.removed", async () => {
    const id = await runningPreview();
    const run = await env.remove(id);
    expect(run.result).toEqual({ projectId: id, outcome: "removed", recorded: true });
    expect(env.runtime.containers.has(id)).toBe(false);
    expect(env.site.sites.has(id)).toBe(false);
    expect(row(id)).toMatchObject({ status: "removed", url: null, containerId: null, logTail: null });
    expect(env.store.events(id)).toEqual(["starting", "running", "removing", "removed"]);
    expect(env.emitted("preview.removed", id)).toEqual([{ projectId: id }]);
  });

  it("a duplicate project.deleted converges: still removed, no new transition, nothing emitted again", async () => {
    const id = await runningPreview();
    await env.remove(id);
    const before = row(id);
    const again = await env.remove(id);
    expect(again.result).toEqual({ projectId: id, outcome: "absent", recorded: false });
    expect(env.store.events(id)).toEqual(["starting", "running", "removing", "removed"]);
    expect(row(id)).toEqual(before);
    expect(env.emitted("preview.removed", id)).toHaveLength(1);
  });

  it("a project that never had a preview: files deleted, no row created, nothing emitted", async () => {
    const id = newProjectId("none");
    env.site.sites.add(id);
    const run = await env.remove(id);
    expect(run.result).toEqual({ projectId: id, outcome: "absent", recorded: false });
    expect(env.site.sites.has(id)).toBe(false);
    expect(row(id)).toBeUndefined();
    expect(env.emitted("preview.removed", id)).toEqual([]);
  });

  it("a remove that fails for good is recorded failed (not left removing) and a later remove makes progress", async () => {
    const id = await runningPreview();
    env.runtime.failNext("remove", new PermanentError("docker: remove container failed: 400"), 1);
    const run = await env.remove(id);
    expect(run.error).toBeDefined();
    expect(row(id)).toMatchObject({ status: "failed", reason: "remove failed: docker: remove container failed: 400" });
    expect(env.emitted("preview.failed", id)).toHaveLength(1);
    expect(env.runtime.containers.get(id)?.running).toBe(false);
    const again = await env.remove(id);
    expect(again.error).toBeUndefined();
    expect(row(id)?.status).toBe("removed");
  });

  it("a remove whose retries ran out (storage unavailable) is recorded too", async () => {
    const id = await runningPreview();
    const remove = env.site.remove.bind(env.site);
    env.site.remove = async () => {
      throw new Error("storage: delete site folder failed: EIO");
    };
    try {
      await env.remove(id);
    } finally {
      env.site.remove = remove;
    }
    expect(row(id)).toMatchObject({ status: "failed", reason: "remove failed: storage: delete site folder failed: EIO" });
  });
});
