/**
 * `SqlPreviewStore.recordDiagnosis` (migration 005) on PGlite, Postgres and Neon: one
 * compare-and-set that writes only onto the failure it explains, never over that failure's
 * answer, converges on replay, appends to the audit log with it; and the row carries it back.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { currentDiagnosis, failureKey, type FailureOf } from "../../functions/ports.js";
import { SqlPreviewStore } from "../../sql/preview-store.js";
import { drivers, openTestDatabase, type TestDatabase } from "../helpers/postgres.js";

describe.each(drivers)("recordDiagnosis on %s", (driver) => {
  let t: TestDatabase;
  let store: SqlPreviewStore;
  let seq = 0;
  const newId = (label: string) => `diag-${label}-${++seq}`;

  beforeAll(async () => {
    t = await openTestDatabase(driver);
    store = new SqlPreviewStore(t.db);
  }, 60_000);
  afterAll(() => t?.cleanup());

  /** A preview recorded failed by run `claim`. */
  async function failed(id: string, claim = "run-1", logTail: string | null = "Error: boom\n"): Promise<FailureOf> {
    await store.apply(id, "launch", { reason: "pipeline.step7", claim, logTail: null });
    await store.apply(id, "fail", { reason: "exit 1", claim, logTail });
    return { claim, reason: "exit 1", logTail };
  }
  const types = async (id: string) => (await store.events(id)).map((e) => e.type);

  it("writes the diagnosis and its audit entry in one statement; the row carries it back", async () => {
    const id = newId("ok");
    const failure = await failed(id);
    const before = await store.get(id);
    expect(before!.diagnosis).toBeNull();
    expect(await store.recordDiagnosis(id, failure, { state: "diagnosed", text: "missing module" })).toEqual({ recorded: true, written: true });
    const row = (await store.get(id))!;
    expect(row.diagnosis).toEqual({ key: failureKey({ projectId: id, ...failure }), state: "diagnosed", text: "missing module", at: expect.any(Date) });
    expect(currentDiagnosis(row)?.text).toBe("missing module");
    // The lifecycle columns are untouched.
    expect({ ...row, diagnosis: null }).toEqual({ ...before, diagnosis: null });
    expect(await types(id)).toEqual(["starting", "failed", "diagnosed"]);
    expect((await store.events(id)).at(-1)!.reason).toBe("missing module");
  });

  it("a replay of the same outcome converges: recorded, not written again, one audit entry", async () => {
    const id = newId("replay");
    const failure = await failed(id);
    await store.recordDiagnosis(id, failure, { state: "diagnosed", text: "x" });
    expect(await store.recordDiagnosis(id, failure, { state: "diagnosed", text: "x" })).toEqual({ recorded: true, written: false });
    expect(await types(id)).toEqual(["starting", "failed", "diagnosed"]);
  });

  it("never over the same failure's answer: another answer, or an unavailable, is refused", async () => {
    const id = newId("keep");
    const failure = await failed(id);
    await store.recordDiagnosis(id, failure, { state: "diagnosed", text: "first" });
    expect(await store.recordDiagnosis(id, failure, { state: "diagnosed", text: "second" })).toEqual({ recorded: false, written: false });
    expect(await store.recordDiagnosis(id, failure, { state: "unavailable", text: "diagnosis unavailable: x" })).toEqual({ recorded: false, written: false });
    expect((await store.get(id))!.diagnosis!.text).toBe("first");
  });

  it("an unavailable is replaced by a later answer", async () => {
    const id = newId("later");
    const failure = await failed(id);
    expect(await store.recordDiagnosis(id, failure, { state: "unavailable", text: "diagnosis unavailable: 529" })).toEqual({ recorded: true, written: true });
    expect(await store.recordDiagnosis(id, failure, { state: "diagnosed", text: "answer" })).toEqual({ recorded: true, written: true });
    expect(await types(id)).toEqual(["starting", "failed", "diagnosis-unavailable", "diagnosed"]);
  });

  it("only onto the failure it explains: another claim, reason or log, or a preview that moved on, writes nothing", async () => {
    const id = newId("cas");
    const failure = await failed(id);
    for (const other of [{ ...failure, claim: "run-2" }, { ...failure, reason: "other" }, { ...failure, logTail: "other" }, { ...failure, logTail: null }]) {
      expect(await store.recordDiagnosis(id, other, { state: "diagnosed", text: "x" })).toEqual({ recorded: false, written: false });
    }
    await store.apply(id, "launch", { reason: "preview.requested", claim: "run-3", logTail: null });
    expect(await store.recordDiagnosis(id, failure, { state: "diagnosed", text: "x" })).toEqual({ recorded: false, written: false });
    expect(await store.recordDiagnosis(newId("none"), failure, { state: "diagnosed", text: "x" })).toEqual({ recorded: false, written: false });
    expect(await types(id)).toEqual(["starting", "failed", "starting"]);
  });

  it("a failure without a log tail (null) is matched as such", async () => {
    const id = newId("nolog");
    const failure = await failed(id, "run-1", null);
    expect(await store.recordDiagnosis(id, failure, { state: "diagnosed", text: "x" })).toEqual({ recorded: true, written: true });
  });

  it("a relaunch hides the diagnosis; a new failure of the same text (another run) is another failure", async () => {
    const id = newId("again");
    const first = await failed(id, "run-1");
    await store.recordDiagnosis(id, first, { state: "diagnosed", text: "first" });
    await store.apply(id, "launch", { reason: "pipeline.step7", claim: "run-2", logTail: null });
    expect(currentDiagnosis((await store.get(id))!)).toBeNull();
    await store.apply(id, "fail", { reason: "exit 1", claim: "run-2", logTail: "Error: boom\n" });
    expect(currentDiagnosis((await store.get(id))!)).toBeNull();
    const second = { ...first, claim: "run-2" };
    expect(await store.recordDiagnosis(id, second, { state: "diagnosed", text: "second" })).toEqual({ recorded: true, written: true });
    expect(currentDiagnosis((await store.get(id))!)?.text).toBe("second");
  });

  it("concurrent records of one failure: exactly one answer is written", async () => {
    const id = newId("race");
    const failure = await failed(id);
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => store.recordDiagnosis(id, failure, { state: "diagnosed", text: `answer ${i}` })));
    expect(results.filter((r) => r.written)).toHaveLength(1);
    expect(results.filter((r) => r.recorded)).toHaveLength(1);
    expect((await types(id)).filter((x) => x === "diagnosed")).toHaveLength(1);
  });

  // Review finding F4: forged or replayed `preview.failed` events re-asked the model each time.
  it("takeDiagnosisAttempt: at most `max` per failure, once per attempt id, counted again for a new failure", async () => {
    const id = newId("attempts");
    const failure = await failed(id);
    expect(await store.takeDiagnosisAttempt(id, failure, "run-a:1", 3)).toEqual({ granted: true, attempts: 1 });
    // The same attempt again (a retried step): granted, not counted twice.
    expect(await store.takeDiagnosisAttempt(id, failure, "run-a:1", 3)).toEqual({ granted: true, attempts: 1 });
    expect(await store.takeDiagnosisAttempt(id, failure, "run-b:1", 3)).toEqual({ granted: true, attempts: 2 });
    expect(await store.takeDiagnosisAttempt(id, failure, "run-c:1", 3)).toEqual({ granted: true, attempts: 3 });
    expect(await store.takeDiagnosisAttempt(id, failure, "run-d:1", 3)).toEqual({ granted: false, attempts: 3 });
    expect(await store.takeDiagnosisAttempt(id, failure, "run-c:1", 3)).toEqual({ granted: true, attempts: 3 });
    // Another failure of the project: its own count; the old failure is no longer the row's.
    const next = await failed(id, "run-2");
    expect(await store.takeDiagnosisAttempt(id, failure, "run-e:1", 3)).toMatchObject({ granted: false });
    expect(await store.takeDiagnosisAttempt(id, next, "run-e:1", 3)).toEqual({ granted: true, attempts: 1 });
    // Lifecycle columns and the audit log are untouched by attempts.
    expect(await types(id)).toEqual(["starting", "failed", "starting", "failed"]);
  });

  it("takeDiagnosisAttempt: concurrent takes of one failure never exceed the limit", async () => {
    const id = newId("attempts-race");
    const failure = await failed(id);
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => store.takeDiagnosisAttempt(id, failure, `run-${i}:1`, 3)));
    expect(results.filter((r) => r.granted)).toHaveLength(3);
    expect(await store.takeDiagnosisAttempt(id, failure, "run-late:1", 3)).toEqual({ granted: false, attempts: 3 });
  });
});
