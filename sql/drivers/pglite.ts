/** Embedded Postgres (PGlite, WASM): zero set-up when no DATABASE_URL is configured. */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { access, link, mkdir, readdir, readFile, realpath, rename, rm, rmdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { PGlite, types } from "@electric-sql/pglite";
import type { Database } from "../database.js";

// ---------------------------------------------------------------------------------------------
// Memory (issue 10; README "Memory"; measured by `bench/memory.ts`). Untuned, the service on a
// file-backed PGlite held ~860 MB after its first start and ~390 MB after a restart, against
// ~160 MB on pg (now ~280 and ~255 MB). Two things held it, found by measuring RSS
// (`/proc/self/status`) around `PGlite.create`:
//   - shared_buffers: Postgres' default 128 MB buffer pool is allocated inside the WASM linear
//     memory, which grows from its 128 MB floor to ~190 MB to hold it (and the pages are
//     touched). 16 MB holds this service's hot data many times over (1,000 previews and their
//     audit events: under 1 MB of tables and indexes) and keeps the WASM memory at its floor:
//     ~135 MB less after a restart. (`initialMemory` cannot go below the module's own 128 MB
//     minimum: PGlite refuses it; wal_buffers, work_mem, temp_buffers changed nothing measurable.)
//   - initdb: on a new data directory PGlite runs initdb in-process in a SECOND PGlite instance
//     plus the initdb WASM. Closed, their memory is not given back: the code V8 compiled for
//     every Postgres function initdb ran stays, and the WASM memories wait for a major GC that an
//     idle process never runs (~450 MB left behind). So a new directory is initialised in a
//     short-lived child process (plain Node, no loader) and this process only ever opens an
//     existing one. If that child cannot run, the open below runs initdb in-process as before.

/** The Postgres settings of the embedded database, on top of PGlite's own. */
export const PGLITE_START_PARAMS: readonly string[] = [...PGlite.defaultStartParams, "-c", "shared_buffers=16MB"];

/**
 * Runs initdb for `dataDir` in a child process when it holds no database yet (see "Memory"):
 * into a sibling `<dir>.init-<pid>`, renamed onto the (empty) `dataDir` only once the child has
 * finished, so a child killed half-way never leaves a half-initialised database to be opened.
 * The caller holds the directory's lock (`<dir>.lock`). Never throws: on any failure the open
 * that follows runs initdb itself and reports its own error.
 */
export async function initInChildProcess(dataDir: string): Promise<void> {
  if (await exists(path.join(dataDir, "PG_VERSION"))) return;
  const staging = `${dataDir}.init-${process.pid}`;
  try {
    // Leftovers of a start killed during its initdb (the caller holds the lock: nobody else
    // initialises this directory now).
    const base = path.basename(dataDir);
    for (const name of await readdir(path.dirname(dataDir))) {
      if (name.startsWith(`${base}.init-`)) await rm(path.join(path.dirname(dataDir), name), { recursive: true, force: true });
    }
    const code = [
      // Ends with its parent (the IPC channel closes): a killed start's initdb ends at its next
      // await (initdb itself is one synchronous WASM call, a few seconds), its folder removed by
      // the next open.
      "process.on('disconnect', () => process.exit(1));",
      "const [url, dataDir, startParams] = JSON.parse(process.argv[1]);",
      "const { PGlite } = await import(url);",
      "const db = await PGlite.create({ dataDir, startParams });",
      "await db.close();",
      "process.exit(0);",
    ].join("\n");
    const args = JSON.stringify([import.meta.resolve("@electric-sql/pglite"), staging, PGLITE_START_PARAMS]);
    const ok = await new Promise<boolean>((resolve) => {
      const child = spawn(process.execPath, ["--input-type=module", "-e", code, args], { stdio: ["ignore", "ignore", "ignore", "ipc"] });
      child.once("error", () => resolve(false));
      child.once("exit", (status) => resolve(status === 0));
    });
    if (!ok || !(await exists(path.join(staging, "PG_VERSION")))) return;
    // Only onto an empty directory (created by the open): anything else there is left to the open.
    if ((await readdir(dataDir)).length > 0) return;
    await rmdir(dataDir);
    await rename(staging, dataDir);
  } catch {
    // The open below decides (it finds the database, or runs initdb in-process).
  } finally {
    await rm(staging, { recursive: true, force: true }).catch(() => undefined);
  }
}

const exists = (file: string) => access(file).then(() => true, () => false);

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
    await mkdir(dataDir, { recursive: true });
    // The real path: PGlite's file system fails on a data directory that is a symbolic link
    // (an opaque `ErrnoError`), and the lock must name the directory, not one of its aliases.
    dataDir = await realpath(dataDir);
    unlock = await lockDataDir(dataDir);
  }
  let db: PGlite;
  try {
    // pg and Neon return int8 (count(*), bigserial) as a string; PGlite would return a lossy
    // number. Same answer on every driver. timestamptz already comes back as a Date.
    if (dataDir !== undefined) await initInChildProcess(dataDir);
    db = await PGlite.create({ dataDir, startParams: [...PGLITE_START_PARAMS], parsers: { [types.INT8]: (value: string) => value } });
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

async function lockOwner(file: string): Promise<number> {
  const pid = Number((await readFile(file, "utf8").catch(() => "")).trim());
  return Number.isInteger(pid) ? pid : 0;
}

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
        if ((err as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 2) throw err;
        const pid = await lockOwner(file);
        // Our own pid in a lock we do not hold: left by an earlier run that crashed (containers
        // restart with the same pids), so it is stale like a dead one.
        const inUse = (owner: number) => owner > 0 && owner !== process.pid && isAlive(owner);
        if (inUse(pid)) throw new Error(`pglite: ${dir} is in use by process ${pid} (remove ${file} if that is wrong)`);
        // Stale. Taken over by moving it aside under a name of our own (one rename: of two
        // processes taking over at once, each moves what is there), then looking at what was
        // moved: a live lock another process took over in between is put back and refused.
        const aside = `${file}.stale-${process.pid}-${randomBytes(4).toString("hex")}`;
        try {
          await rename(file, aside);
        } catch (renameErr) {
          if ((renameErr as NodeJS.ErrnoException).code === "ENOENT") continue; // gone meanwhile: try again
          throw renameErr;
        }
        const moved = await lockOwner(aside);
        if (inUse(moved)) {
          await link(aside, file).catch(() => undefined); // back, unless a third took it already
          await rm(aside, { force: true });
          throw new Error(`pglite: ${dir} is in use by process ${moved} (remove ${file} if that is wrong)`);
        }
        await rm(aside, { force: true });
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
