/**
 * What the functions register with Inngest (the server enforces it): one concurrency key per
 * project, duplicates skipped, typed cancellations, failure handlers; and the handlers' own
 * parsing of event data.
 */
import { describe, expect, it } from "vitest";
import { NonRetriableError } from "inngest";
import { parseProjectEvent, permanent } from "../../functions/deps.js";
import { createFunctions } from "../../functions/index.js";
import { PermanentError } from "../../functions/ports.js";
import { createInngest } from "../../runtime/inngest-client.js";
import { FakeRuntime, FakeSiteFiles } from "../fakes/fake-runtime.js";
import { MemoryPreviewStore } from "../fakes/memory-store.js";
import { inngestSettings } from "../helpers/inngest-server.js";

const inngest = createInngest(inngestSettings({ dev: true }));
const fns = createFunctions(inngest, { runtime: new FakeRuntime(), store: new MemoryPreviewStore(), site: new FakeSiteFiles(), readyTimeoutMs: 1000 });
const configs = fns.flatMap((fn) => fn["getConfig"]({ baseUrl: new URL("http://127.0.0.1:3000/api/inngest"), appPrefix: "previews" }));
const config = (id: string) => configs.find((c) => c.id === id)!;

describe("flow control registered with Inngest", () => {
  it("registers the three functions and their failure handlers, ids unchanged", () => {
    expect(configs.map((c) => c.id).sort()).toEqual(
      ["launch-preview", "launch-preview-failure", "remove-preview", "remove-preview-failure", "stop-preview", "stop-preview-failure", "track-idle"].map((id) => `previews-${id}`),
    );
    expect(config("previews-launch-preview-failure").triggers).toEqual([
      { event: "inngest/function.failed", expression: "event.data.function_id == 'previews-launch-preview'" },
    ]);
  });

  it.each(["launch-preview", "stop-preview", "remove-preview"])("%s: one step at a time per project, duplicates skipped", (id) => {
    const c = config(`previews-${id}`);
    expect(c.concurrency).toEqual({ scope: "env", key: '"preview-lifecycle:" + event.data.projectId', limit: 1 });
    expect(c.singleton).toEqual({ key: "event.data.projectId", mode: "skip" });
  });

  it("launches are cancelled by a later stop or remove of the same project; stops by a later launch or remove; removes by nothing", () => {
    const same = "async.data.projectId == event.data.projectId";
    expect(config("previews-launch-preview").cancel).toEqual(["preview.idle", "preview.closed", "project.deleted"].map((event) => ({ event, if: same })));
    expect(config("previews-stop-preview").cancel).toEqual(["pipeline.step7", "preview.requested", "project.deleted"].map((event) => ({ event, if: same })));
    expect(config("previews-remove-preview").cancel).toBeUndefined();
  });
});

describe("track-idle registered with Inngest", () => {
  it("is triggered by preview.activity and preview.ready, debounced per project for IDLE_TIMEOUT (default 1h)", () => {
    const c = config("previews-track-idle");
    expect(c.triggers).toEqual([{ event: "preview.activity" }, { event: "preview.ready" }]);
    expect(c.debounce).toEqual({ key: "event.data.projectId", period: "3600s" });
    // It writes nothing: no per-project slot, no singleton (the debounce already collapses).
    expect(c.concurrency).toBeUndefined();
    expect(c.singleton).toBeUndefined();
  });

  it("takes its period from idleTimeoutMs", () => {
    const fn = createFunctions(inngest, { runtime: new FakeRuntime(), store: new MemoryPreviewStore(), site: new FakeSiteFiles(), readyTimeoutMs: 1000, idleTimeoutMs: 90_000 })[3];
    const [registered] = fn["getConfig"]({ baseUrl: new URL("http://127.0.0.1:3000/api/inngest"), appPrefix: "previews" });
    expect(registered!.debounce).toEqual({ key: "event.data.projectId", period: "90s" });
  });
});

describe("handlers trust nothing", () => {
  it("parses event data itself, naming what is wrong", () => {
    expect(parseProjectEvent({ name: "pipeline.step7", data: { projectId: "ok-1" } })).toEqual({ projectId: "ok-1" });
    for (const data of [{ projectId: "../etc" }, { projectId: 1 }, {}, undefined, "x"]) {
      expect(() => parseProjectEvent({ name: "pipeline.step7", data })).toThrow(NonRetriableError);
    }
    expect(() => parseProjectEvent({ name: "pipeline.step7", data: { projectId: "A/b" } })).toThrow(/invalid pipeline\.step7 event: projectId: projectId must be a DNS label/);
  });

  it("maps an adapter's PermanentError to NonRetriableError once, and leaves other errors retryable", async () => {
    await expect(permanent(async () => Promise.reject(new PermanentError("docker: x failed")))).rejects.toBeInstanceOf(NonRetriableError);
    const retryable = new Error("ECONNREFUSED");
    await expect(permanent(async () => Promise.reject(retryable))).rejects.toBe(retryable);
    await expect(permanent(async () => 42)).resolves.toBe(42);
  });
});
