/**
 * Exhaustive: every status (and "no row") x every action in LIFECYCLE, applied to a real table
 * on every driver. The table in functions/lifecycle.ts is the specification; this checks that
 * the one SQL statement implements exactly it:
 *   - applied exactly when `allows(action, status)`, to the action's target status;
 *   - `changed` exactly when the status moved, and then one audit event, else none;
 *   - stopped_at set when moving to stopped, kept on a stopped replay, null otherwise;
 *   - updated_at moves when something changed, created_at never;
 *   - a replay right after is applied, unchanged, and leaves row and log exactly as they were;
 *   - a refused apply writes nothing (row identical, no event) and returns the current row.
 * Each case seeds its own project with timestamps in the past, so "moved" and "kept" are exact
 * comparisons, not clock races.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allows, LIFECYCLE, LIFECYCLE_ACTIONS, PREVIEW_STATUSES, type LifecycleAction, type PreviewStatus } from "../../functions/lifecycle.js";
import type { TransitionFields } from "../../functions/ports.js";
import { SqlPreviewStore } from "../../sql/preview-store.js";
import { drivers, openTestDatabase, type TestDatabase } from "../helpers/postgres.js";

const SEEDED_AT = new Date("2020-01-02T03:04:05.000Z");
const STOPPED_AT = new Date("2020-01-01T00:00:00.000Z");

const cases = [null, ...PREVIEW_STATUSES].flatMap((status) => LIFECYCLE_ACTIONS.map((action) => ({ status, action })));

/** A DNS-label project id of its own per case: no case sees another's data. */
const projectOf = (status: PreviewStatus | null, action: LifecycleAction) => `${status ?? "none"}-${action}`.toLowerCase();

describe("the cases", () => {
  it("cover every status and no row, times every action", () => {
    expect(cases).toHaveLength((PREVIEW_STATUSES.length + 1) * LIFECYCLE_ACTIONS.length);
    expect(new Set(cases.map((c) => projectOf(c.status, c.action))).size).toBe(cases.length);
  });
});

describe.each(drivers)("every lifecycle action from every status on %s", (driver) => {
  let t: TestDatabase;
  let store: SqlPreviewStore;

  beforeAll(async () => {
    t = await openTestDatabase(driver);
    store = new SqlPreviewStore(t.db);
  }, 60_000);
  afterAll(async () => {
    await t?.cleanup();
  });

  /** A row in `status` with every field set, and the event that brought it there. */
  async function seed(id: string, status: PreviewStatus) {
    await t.db.query(
      `insert into previews (project_id, status, url, container_id, reason, log_tail, stopped_at, created_at, updated_at)
       values ($1, $2, 'http://old', 'c-old', 'seeded', 'old log', $3, $4, $4)`,
      [id, status, status === "stopped" ? STOPPED_AT : null, SEEDED_AT],
    );
    await t.db.query("insert into preview_events (project_id, type, reason, at) values ($1, $2, 'seeded', $3)", [id, status, SEEDED_AT]);
  }

  it.each(cases)("$action from $status", async ({ status, action }) => {
    const id = projectOf(status, action);
    if (status !== null) await seed(id, status);
    const before = await store.get(id);
    const eventsBefore = await store.events(id);
    expect(before?.status ?? null).toBe(status);

    // A new reason and url, the container id left as it is, the log tail cleared.
    const fields: TransitionFields = { reason: `by ${action}`, url: "http://new", logTail: null };
    const result = await store.apply(id, action, fields);
    const after = await store.get(id);
    const eventsAfter = await store.events(id);

    if (!allows(action, status)) {
      expect(result).toEqual({ applied: false, row: before });
      expect(after).toEqual(before);
      expect(eventsAfter).toEqual(eventsBefore);
      return;
    }

    const to = LIFECYCLE[action].to;
    const changed = status !== to;
    expect(result).toEqual({ applied: true, changed, row: after });
    expect(after).toMatchObject({
      projectId: id,
      status: to,
      reason: fields.reason,
      url: "http://new",
      containerId: status === null ? null : "c-old",
      logTail: null,
    });
    // The reason changed, so updated_at moved (to the statement's now()).
    expect(after!.updatedAt.getTime()).toBeGreaterThan(SEEDED_AT.getTime());
    expect(after!.createdAt).toEqual(status === null ? after!.updatedAt : SEEDED_AT);
    // stopped_at: the first stop time survives a stopped replay; a new stop is stamped with the
    // statement's now(), which is also its updated_at.
    const stoppedAt = to !== "stopped" ? null : status === "stopped" ? STOPPED_AT : after!.updatedAt;
    expect(after!.stoppedAt).toEqual(stoppedAt);
    expect(eventsAfter).toEqual(changed ? [...eventsBefore, { type: to, reason: fields.reason, at: after!.updatedAt }] : eventsBefore);

    // Replayed (a retried step, a duplicate event): applied, nothing changes, nothing logged.
    const replay = await store.apply(id, action, fields);
    expect(replay).toEqual({ applied: true, changed: false, row: after });
    expect(await store.get(id)).toEqual(after);
    expect(await store.events(id)).toEqual(eventsAfter);
  });
});
