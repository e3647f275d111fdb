/** Embedded Postgres (PGlite, WASM): zero set-up when no DATABASE_URL is configured. */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { PGlite, types } from "@electric-sql/pglite";
import type { Database } from "../database.js";

/**
 * Opens PGlite on `dataDir` (created if missing), or in memory when `dataDir` is undefined.
 * The first open of a directory runs initdb (~2-3 s); later opens take ~0.2 s.
 *
 * No timeout (`DatabaseSettings.timeoutMs`) applies: there is no server and no socket, so
 * nothing can hang the way a stopped or partitioned Postgres does. A slow statement runs
 * synchronously in WASM on this thread, so no JavaScript timer could fire before it ends, and
 * PGlite does not enforce `statement_timeout` (measured: `pg_sleep(1.5)` under a 200 ms
 * statement_timeout ran its full 1.5 s, with the event loop blocked throughout).
 */
export async function openPglite(dataDir?: string): Promise<Database> {
  let unlock = async () => {};
  if (dataDir !== undefined) {
    dataDir = path.resolve(dataDir);
    await mkdir(dataDir, { recursive: true });
    unlock = await lockDataDir(dataDir);
  }
  let db: PGlite;
  try {
    // pg and Neon return int8 (count(*), bigserial) as a string; PGlite would return a lossy
    // number. Same answer on every driver. timestamptz already comes back as a Date.
    db = await PGlite.create({ dataDir, parsers: { [types.INT8]: (value: string) => value } });
  } catch (err) {
    await unlock();
    throw err;
  }
  return {
    driver: "pglite",
    async query<T extends Record<string, unknown>>(text: string, params: unknown[] = []) {
      const result = await db.query<T>(text, params);
      return result.rows;
    },
    async exec(text: string) {
      await db.exec(text); // simple protocol: several statements, one implicit transaction
    },
    async close() {
      try {
        if (!db.closed) await db.close();
      } finally {
        await unlock();
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// PGlite does not lock its directory: two processes (or two opens in one process) on the same
// folder silently lose writes. A `<dir>.lock` file holding the owner's pid refuses the second
// open; a lock whose process is gone (crash) is taken over.

const heldHere = new Set<string>(); // lock files this process holds (a crash-reused pid is ours)

async function lockDataDir(dir: string): Promise<() => Promise<void>> {
  const file = `${dir}.lock`;
  if (heldHere.has(file)) throw new Error(`pglite: ${dir} is already open in this process`);
  heldHere.add(file); // before any await: two concurrent opens in this process must not both pass
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await writeFile(file, String(process.pid), { flag: "wx" });
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 0) throw err;
        const pid = Number((await readFile(file, "utf8").catch(() => "")).trim());
        // Our own pid in a lock we do not hold: left by an earlier run that crashed (containers
        // restart with the same pids), so it is stale like a dead one.
        if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
          throw new Error(`pglite: ${dir} is in use by process ${pid} (remove ${file} if that is wrong)`);
        }
        await rm(file, { force: true }); // stale lock
      }
    }
  } catch (err) {
    heldHere.delete(file);
    throw err;
  }
  let released = false; // a second close() must not delete a lock someone else took since
  return async () => {
    if (released) return;
    released = true;
    heldHere.delete(file);
    await rm(file, { force: true });
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
