/**
 * Opening a database: picks the driver named by the settings. The only module that imports
 * every driver; the caller owns (and closes) what it returns. Nothing here is a singleton.
 */
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Database, QueryOptions } from "./database.js";
import { openNeon } from "./drivers/neon.js";
import { openPg } from "./drivers/pg.js";
import { openPglite } from "./drivers/pglite.js";
import { DatabaseNotReadyError } from "./errors.js";
import { migrate } from "./migrate.js";
import type { DatabaseSettings } from "./settings.js";

/** Connects without migrating. pg and Neon connect lazily (on the first query); PGlite opens now. */
export async function connect(settings: DatabaseSettings): Promise<Database> {
  switch (settings.driver) {
    case "pglite":
      // In-process: no server that could hang, so no timeout applies (see drivers/pglite.ts).
      return openPglite(path.join(settings.dataPath, "pglite"));
    case "pg":
    case "neon": {
      if (!settings.url) throw new Error(`database: the ${settings.driver} driver needs a DATABASE_URL`);
      return settings.driver === "pg" ? openPg(settings.url, settings.timeoutMs) : openNeon(settings.url, settings.neonWsProxy, settings.timeoutMs);
    }
  }
}

/** Connects and applies pending migrations; closes the connection again if migrating fails. */
export async function openDatabase(settings: DatabaseSettings): Promise<Database> {
  return (await connectAndMigrate(settings)).db;
}

/** `openDatabase`, also saying which migrations this call applied. */
async function connectAndMigrate(settings: DatabaseSettings): Promise<{ db: Database; applied: string[] }> {
  const db = await connect(settings);
  try {
    return { db, applied: await migrate(db) };
  } catch (err) {
    await db.close().catch(() => {});
    throw err;
  }
}

/** A database whose migrations may still be pending (see `migrateInBackground`). */
export interface BackgroundDatabase extends Database {
  /** Settles once migrations are applied (true), or when closed before that (false). Never rejects. */
  readonly ready: Promise<boolean>;
  isReady(): boolean;
}

export interface BackgroundOptions {
  /** After each failed attempt, before waiting `retryInMs` (log it). */
  onAttemptFailed?(failure: { attempt: number; error: Error; retryInMs: number }): void;
  /** Once migrations are applied (`applied`: the versions this call applied). */
  onReady?(result: { attempts: number; applied: string[] }): void;
  /** Wait after the first failure; doubled after each further one, up to `maxDelayMs`. */
  firstDelayMs?: number;
  maxDelayMs?: number;
}

export const BACKGROUND_FIRST_DELAY_MS = 500;
export const BACKGROUND_MAX_DELAY_MS = 10_000;

/**
 * `db`, usable at once, migrating in the background: attempts `migrate(db)` until it succeeds,
 * waiting after each failure (bounded exponential backoff). Until then every `query` and `exec`
 * throws a retryable `DatabaseNotReadyError` naming the last failure, so callers (the store, the
 * readiness probe, Inngest steps) see a momentary outage, not a crash. Each attempt is bounded by
 * the driver's timeouts (`DatabaseSettings.timeoutMs`). `close()` stops the loop, waits for the
 * attempt in flight to end, then closes `db`.
 */
export function migrateInBackground(db: Database, options: BackgroundOptions = {}): BackgroundDatabase {
  const { firstDelayMs = BACKGROUND_FIRST_DELAY_MS, maxDelayMs = BACKGROUND_MAX_DELAY_MS } = options;
  const stop = new AbortController();
  let ready = false;
  let attempts = 0;
  let lastError: Error | null = null;

  const loop = (async (): Promise<boolean> => {
    while (!stop.signal.aborted) {
      attempts++;
      try {
        const applied = await migrate(db);
        if (stop.signal.aborted) return false;
        ready = true;
        callSafely(() => options.onReady?.({ attempts, applied }));
        return true;
      } catch (err) {
        if (stop.signal.aborted) return false;
        lastError = err instanceof Error ? err : new Error(String(err));
        const retryInMs = Math.min(maxDelayMs, firstDelayMs * 2 ** Math.min(attempts - 1, 30));
        const error = lastError;
        callSafely(() => options.onAttemptFailed?.({ attempt: attempts, error, retryInMs }));
        await sleep(retryInMs, undefined, { signal: stop.signal }).catch(() => undefined);
      }
    }
    return false;
  })();

  const notReady = () =>
    new DatabaseNotReadyError(
      lastError
        ? `not ready: migrations not applied yet (attempt ${attempts} failed: ${lastError.message})`
        : "not ready: migrations not applied yet (first attempt under way)",
    );

  let closing: Promise<void> | undefined;
  return {
    driver: db.driver,
    ready: loop,
    isReady: () => ready,
    async query<T extends Record<string, unknown>>(text: string, params?: unknown[], options?: QueryOptions) {
      if (!ready) throw notReady();
      return db.query<T>(text, params, options);
    },
    async exec(text: string) {
      if (!ready) throw notReady();
      return db.exec(text);
    },
    close() {
      closing ??= (async () => {
        stop.abort();
        await loop;
        await db.close();
      })();
      return closing;
    },
  };
}

/**
 * Opens the database for a long-running host that must start even while the database is down or
 * hung. pg and Neon: connects lazily and migrates in the background (`migrateInBackground`).
 * PGlite (embedded, in-process, it cannot be "down") opens and migrates before this returns, as
 * `openDatabase` does, and a failure there is thrown.
 */
export async function openDatabaseInBackground(settings: DatabaseSettings, options: BackgroundOptions = {}): Promise<BackgroundDatabase> {
  if (settings.driver === "pglite") {
    const { db, applied } = await connectAndMigrate(settings);
    callSafely(() => options.onReady?.({ attempts: 1, applied }));
    return {
      driver: db.driver,
      ready: Promise.resolve(true),
      isReady: () => true,
      query: (text, params, options) => db.query(text, params, options),
      exec: (text) => db.exec(text),
      close: () => db.close(),
    };
  }
  return migrateInBackground(await connect(settings), options);
}

function callSafely(fn: () => void): void {
  try {
    fn();
  } catch {
    // a logging hook must not stop the loop
  }
}
