/**
 * Unit tier: the lifecycle functions with object storage wired in (a fake of the
 * `ProjectObjects` port): launch hydrates the site after its claim and before the check, a
 * hostile listing or an unreachable store ends recorded as the launch's failure, a preview
 * recorded running keeps its files, project.deleted deletes the objects. The adapter against a
 * real S3-compatible server: test/storage/site-objects.int.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PermanentError } from "../../functions/ports.js";
import { FakeProjectObjects } from "../fakes/memory-objects.js";
import { FakeSiteFiles } from "../fakes/fake-runtime.js";
import { createUnitEnv, newProjectId, type UnitEnv } from "../helpers/unit-env.js";

let env: UnitEnv;
let objects: FakeProjectObjects;
/** The site files the functions are given (the env's own fake is replaced by this one). */
let site: FakeSiteFiles;
beforeAll(async () => {
  site = new FakeSiteFiles();
  objects = new FakeProjectObjects(site);
  env = await createUnitEnv({ site, objects });
});
afterAll(async () => {
  await env?.close();
});

/** A project whose site is in the store only (no local folder yet). */
function stored(prefix = "obj"): string {
  const id = newProjectId(prefix);
  objects.stored.add(id);
  return id;
}
const row = (id: string) => env.store.rows.get(id);

describe("launch-preview with object storage", () => {
  it("downloads a site missing locally, after the claim and before the check, then runs it", async () => {
    const id = stored();
    const run = await env.launch(id);
    expect(run.error).toBeUndefined();
    expect(row(id)?.status).toBe("running");
    const hydrate = objects.calls.find((c) => c.method === "hydrate" && c.projectId === id)!;
    const checks = site.calls.filter((c) => c.projectId === id).map((c) => c.method);
    expect(checks[0]).toBe("check");
    // No site call for this project before hydration; the check came after.
    expect(site.calls.slice(0, hydrate.siteCallsBefore).filter((c) => c.projectId === id)).toEqual([]);
    expect(env.store.events(id)).toEqual(["starting", "running"]);
  });

  it("a launch of a stopped preview hydrates again (a no-op when unchanged), a running one keeps its files", async () => {
    const id = stored();
    await env.launch(id);
    expect(objects.count("hydrate", id)).toBe(1);
    await env.launch(id, "preview.requested");
    expect(objects.count("hydrate", id)).toBe(1);
    await env.stop(id);
    await env.launch(id);
    expect(objects.count("hydrate", id)).toBe(2);
    expect(row(id)?.status).toBe("running");
  });

  it("no objects and no local folder: failed as before (site folder not found)", async () => {
    const id = newProjectId("none");
    await env.launch(id);
    expect(row(id)).toMatchObject({ status: "failed", reason: expect.stringMatching(/^site folder not found/) });
  });

  it("a hostile listing fails the launch for good, recorded with the reason and preview.failed", async () => {
    const id = stored("hostile");
    const reason = `object store: refusing to download the site of ${id} from memory://bucket: 1 key(s) would not land inside the site folder, nothing was written: "projects/${id}/site/../x" has a \`..\` segment`;
    objects.failures.set("hydrate", new PermanentError(reason));
    try {
      const run = await env.launch(id);
      expect(run.error).toMatchObject({ name: "NonRetriableError", message: reason });
    } finally {
      objects.failures.delete("hydrate");
    }
    expect(row(id)).toMatchObject({ status: "failed", reason });
    expect(env.emitted("preview.failed", id)).toEqual([{ projectId: id, reason, logTail: "" }]);
    expect(env.runtime.containers.has(id)).toBe(false);
  });

  it("an unreachable store fails the step retryably (not NonRetriableError); the run's failure is still recorded", async () => {
    const id = stored("down");
    const error = new Error("object store: list http://127.0.0.1:9/sitebuilder/projects/x/site/ failed: connect ECONNREFUSED");
    objects.failures.set("hydrate", error);
    try {
      const run = await env.launch(id);
      expect(run.error).toMatchObject({ message: error.message });
      expect((run.error as Error).name).not.toBe("NonRetriableError");
    } finally {
      objects.failures.delete("hydrate");
    }
    expect(row(id)).toMatchObject({ status: "failed", reason: error.message });
    expect(env.runtime.containers.has(id)).toBe(false);
    // The next launch converges.
    expect((await env.launch(id)).error).toBeUndefined();
    expect(row(id)?.status).toBe("running");
  });
});

describe("remove-preview with object storage", () => {
  it("deletes the project's objects after its files, and a duplicate project.deleted converges", async () => {
    const id = stored("rm");
    await env.launch(id);
    const run = await env.remove(id);
    expect(run.error).toBeUndefined();
    expect(row(id)?.status).toBe("removed");
    expect(objects.stored.has(id)).toBe(false);
    expect(objects.count("removeAll", id)).toBe(1);
    expect((await env.remove(id)).error).toBeUndefined();
    expect(objects.count("removeAll", id)).toBe(2);
  });

  it("a store that is down fails the remove (retryable) and it is recorded, not left removing", async () => {
    const id = stored("rmdown");
    await env.launch(id);
    objects.failures.set("removeAll", new Error("object store: list failed: connect ECONNREFUSED"));
    try {
      const run = await env.remove(id);
      expect((run.error as Error).name).not.toBe("NonRetriableError");
    } finally {
      objects.failures.delete("removeAll");
    }
    expect(row(id)).toMatchObject({ status: "failed", reason: expect.stringMatching(/^remove failed: object store/) });
    expect((await env.remove(id)).error).toBeUndefined();
    expect(row(id)?.status).toBe("removed");
  });
});
