/**
 * Pure: `migrateInBackground` over a fake `Database` whose server is "down" for a while. The same
 * over a real, stopped Postgres cluster is test/runtime/database-outage.int.test.ts.
 */
import { describe, expect, it } from "vitest";
import { isPermanent } from "../../functions/ports.js";
import { migrateInBackground } from "../../sql/connect.js";
import type { Database } from "../../sql/database.js";
import { DatabaseNotReadyError, DatabaseUnavailableError } from "../../sql/errors.js";
import { loadMigrations } from "../../sql/migrate.js";
import { SqlPreviewStore } from "../../sql/preview-store.js";

/** Answers like an empty Postgres once `down` is false; refuses connections until then. */
class FlakyDatabase implements Database {
  readonly driver = "pg" as const;
  down = true;
  queries = 0;
  execs: string[] = [];
  closed = false;
  /** When set, the next query waits for it (an attempt in flight). */
  hold: Promise<void> | null = null;

  async query<T extends Record<string, unknown>>(text: string): Promise<T[]> {
    this.queries++;
    if (this.hold) await this.hold;
    if (this.down) throw Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
    if (text.includes("to_regclass")) return [{ present: false }] as unknown as T[];
    return [] as T[];
  }
  async exec(text: string): Promise<void> {
    if (this.down) throw Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
    this.execs.push(text);
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

const until = async (cond: () => boolean, ms = 5_000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe("migrateInBackground", () => {
  it("answers a retryable 'not ready' until migrations apply, retrying with bounded backoff, then passes queries through", async () => {
    const inner = new FlakyDatabase();
    const failures: Array<{ attempt: number; retryInMs: number; message: string }> = [];
    let readyWith: { attempts: number; applied: string[] } | null = null;
    const db = migrateInBackground(inner, {
      firstDelayMs: 5,
      maxDelayMs: 20,
      onAttemptFailed: ({ attempt, retryInMs, error }) => failures.push({ attempt, retryInMs, message: error.message }),
      onReady: (r) => (readyWith = r),
    });
    try {
      expect(db.driver).toBe("pg");
      await until(() => failures.length >= 5);
      expect(db.isReady()).toBe(false);
      // Each failure once, with the error; the wait doubles up to the bound.
      expect(failures.slice(0, 5).map((f) => [f.attempt, f.retryInMs])).toEqual([
        [1, 5],
        [2, 10],
        [3, 20],
        [4, 20],
        [5, 20],
      ]);
      expect(failures[0]!.message).toBe("database: read applied migrations failed: connect ECONNREFUSED 127.0.0.1:5432");

      const err = await db.query("select 1").catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DatabaseNotReadyError);
      expect(isPermanent(err)).toBe(false);
      expect((err as Error).message).toMatch(/^not ready: migrations not applied yet \(attempt \d+ failed: database: read applied migrations failed: connect ECONNREFUSED/);
      await expect(db.exec("select 1")).rejects.toBeInstanceOf(DatabaseNotReadyError);
      // Through the store: a retryable error the host answers 503 for.
      const storeErr = await new SqlPreviewStore(db).list().catch((e: unknown) => e);
      expect(storeErr).toBeInstanceOf(DatabaseUnavailableError);
      expect(storeErr).toMatchObject({ unavailable: "database", publicReason: "list previews failed: not ready yet (migrations not applied)" });

      inner.down = false;
      expect(await db.ready).toBe(true);
      expect(db.isReady()).toBe(true);
      const versions = (await loadMigrations()).map((m) => m.version);
      expect(readyWith).toEqual({ attempts: failures.length + 1, applied: versions });
      expect(inner.execs).toHaveLength(versions.length);
      await expect(db.query("select 1")).resolves.toEqual([]);
    } finally {
      await db.close();
    }
    expect(inner.closed).toBe(true);
  });

  it("close() stops the loop: no attempt after it, ready settles false, the database is closed", async () => {
    const inner = new FlakyDatabase();
    let attempts = 0;
    const db = migrateInBackground(inner, { firstDelayMs: 5, maxDelayMs: 5, onAttemptFailed: () => attempts++ });
    await until(() => attempts >= 2);
    await db.close();
    expect(await db.ready).toBe(false);
    expect(inner.closed).toBe(true);
    const queries = inner.queries;
    await new Promise((r) => setTimeout(r, 50));
    expect(inner.queries).toBe(queries);
    await db.close(); // idempotent
  });

  it("close() waits for the attempt in flight before closing the database", async () => {
    const inner = new FlakyDatabase();
    let release!: () => void;
    inner.hold = new Promise<void>((r) => (release = r));
    const db = migrateInBackground(inner, { firstDelayMs: 5 });
    await until(() => inner.queries === 1);
    let closed = false;
    const closing = db.close().then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 30));
    expect(closed).toBe(false);
    expect(inner.closed).toBe(false);
    release();
    await closing;
    expect(inner.closed).toBe(true);
    expect(await db.ready).toBe(false);
  });

  it("a hook that throws does not stop the loop", async () => {
    const inner = new FlakyDatabase();
    let calls = 0;
    const db = migrateInBackground(inner, {
      firstDelayMs: 5,
      onAttemptFailed: () => {
        calls++;
        throw new Error("logger broke");
      },
    });
    await until(() => calls >= 2);
    inner.down = false;
    expect(await db.ready).toBe(true);
    await db.close();
  });
});
