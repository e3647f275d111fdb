/**
 * Pure: what `SqlPreviewStore.apply` sends and how it reads the answer, over a scripted
 * `Database` (no server). The statement itself is tested against real databases in
 * preview-store.int.test.ts and lifecycle.int.test.ts.
 */
import { describe, expect, it } from "vitest";
import { createsRow, fromStatuses, LIFECYCLE, LIFECYCLE_ACTIONS, matchesClaim, takesClaim, type LifecycleAction } from "../../functions/lifecycle.js";
import { isPermanent, PermanentError } from "../../functions/ports.js";
import type { Database } from "../../sql/database.js";
import { PermanentDatabaseError } from "../../sql/errors.js";
import { SqlPreviewStore } from "../../sql/preview-store.js";

/** A Database that answers each query with the next scripted result (rows, or an error to throw). */
function scripted(...answers: Array<Record<string, unknown>[] | Error>) {
  const calls: Array<{ text: string; params: unknown[] }> = [];
  const db: Database = {
    driver: "pg",
    async query<T extends Record<string, unknown>>(text: string, params: unknown[] = []) {
      calls.push({ text, params });
      const answer = answers.shift();
      if (answer === undefined) throw new Error("test: no more scripted answers");
      if (answer instanceof Error) throw answer;
      return answer as T[];
    },
    async exec() {
      throw new Error("test: exec not expected");
    },
    async close() {},
  };
  return { db, calls };
}

const at = new Date("2024-05-06T07:08:09.000Z");
const row = (status: string, extra: Record<string, unknown> = {}) => ({
  project_id: "p1",
  status,
  url: null,
  container_id: null,
  reason: "r",
  log_tail: null,
  stopped_at: null,
  claim: null,
  created_at: at,
  updated_at: at,
  ...extra,
});
const record = (status: string) => ({
  projectId: "p1",
  status,
  url: null,
  containerId: null,
  reason: "r",
  logTail: null,
  stoppedAt: null,
  claim: null,
  createdAt: at,
  updatedAt: at,
  diagnosis: null,
});

describe("SqlPreviewStore.apply (scripted database)", () => {
  it.each(LIFECYCLE_ACTIONS)("%s: sends the table's target, from-statuses, whether it creates the row and how it treats the claim", async (action) => {
    const { db, calls } = scripted([row(LIFECYCLE[action].to, { applied: true, changed: true })]);
    await new SqlPreviewStore(db).apply("p1", action, { reason: "why", url: undefined, containerId: null, logTail: "tail", claim: "run-1" });
    expect(calls).toHaveLength(1);
    expect(calls[0]!.params).toEqual(["p1", LIFECYCLE[action].to, fromStatuses(action), createsRow(action), "why", false, null, true, null, true, "tail", "run-1", takesClaim(action), matchesClaim(action)]);
  });

  it("an unknown action is a PermanentError and sends nothing", async () => {
    const { db, calls } = scripted();
    const err = await new SqlPreviewStore(db).apply("p1", "explode" as LifecycleAction, { reason: "x" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toBe('database: apply "explode" to project "p1": not a lifecycle action');
    // Inherited names are not actions either.
    await expect(new SqlPreviewStore(db).apply("p1", "toString" as LifecycleAction, { reason: "x" })).rejects.toBeInstanceOf(PermanentError);
    expect(calls).toEqual([]);
  });

  it("reads applied, changed and the row", async () => {
    const { db } = scripted([row("running", { applied: true, changed: false })], [row("stopping", { applied: false, changed: false })]);
    const store = new SqlPreviewStore(db);
    expect(await store.apply("p1", "ready", { reason: "r" })).toEqual({ applied: true, changed: false, row: record("running") });
    expect(await store.apply("p1", "ready", { reason: "r" })).toEqual({ applied: false, row: record("stopping") });
  });

  it("no row for an action that cannot create one: refused, one statement", async () => {
    const { db, calls } = scripted([]);
    expect(await new SqlPreviewStore(db).apply("p1", "stop", { reason: "idle" })).toEqual({ applied: false, row: null });
    expect(calls).toHaveLength(1);
  });

  it("no row for a creating action (lost creation race): runs again and returns that answer", async () => {
    const creating = LIFECYCLE_ACTIONS.find(createsRow)!;
    const { db, calls } = scripted([], [row("removing", { applied: false, changed: false })]);
    expect(await new SqlPreviewStore(db).apply("p1", creating, { reason: "l" })).toEqual({ applied: false, row: record("removing") });
    expect(calls).toHaveLength(2);
    expect(calls[1]).toEqual(calls[0]);
  });

  it("a creating action that never sees its row gives up with a retryable error", async () => {
    const creating = LIFECYCLE_ACTIONS.find(createsRow)!;
    const { db, calls } = scripted([], [], [], []);
    const err = await new SqlPreviewStore(db).apply("p1", creating, { reason: "l" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(isPermanent(err)).toBe(false);
    expect((err as Error).message).toMatch(new RegExp(`^database: apply "${creating}" to project "p1" failed: .*3 runs`));
    expect(calls).toHaveLength(3);
  });

  it("driver errors are wrapped once, naming the action and the project", async () => {
    const refused = Object.assign(new Error('relation "previews" does not exist'), { code: "42P01", severity: "ERROR" });
    const { db } = scripted(refused, new Error("Connection terminated unexpectedly"));
    const store = new SqlPreviewStore(db);
    const permanent = await store.apply("p1", "stop", { reason: "idle" }).catch((e: unknown) => e);
    expect(permanent).toBeInstanceOf(PermanentDatabaseError);
    expect((permanent as Error).message).toBe('database: apply "stop" to project "p1" failed: relation "previews" does not exist (SQLSTATE 42P01)');
    const transient = await store.apply("p1", "stop", { reason: "idle" }).catch((e: unknown) => e);
    expect(isPermanent(transient)).toBe(false);
    expect((transient as Error).message).toBe('database: apply "stop" to project "p1" failed: Connection terminated unexpectedly');
  });
});
