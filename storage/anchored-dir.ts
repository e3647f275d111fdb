/**
 * Directory walks that never resolve a path twice. Each step opens the next component relative to
 * a directory this process already holds open, with `O_NOFOLLOW`: a component swapped for a
 * symbolic link between two steps makes the open fail (`ELOOP`) instead of leading out of storage,
 * and a directory renamed away keeps being the one worked on (the handle follows the inode, not
 * the name).
 *
 * Node has no `openat`; `/proc/self/fd/N/name` is its equivalent on Linux: the kernel resolves
 * `/proc/self/fd/N` to the open directory itself (not to its former path), then `name` inside it.
 * Names come from `readdir` and never contain `/`, so nothing else is ever resolved.
 */
import { constants } from "node:fs";
import { lstat, open, readdir, type FileHandle } from "node:fs/promises";

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK, O_NOCTTY } = constants;
/** A directory, never through a link at the last component. */
const DIR_FLAGS = O_RDONLY | O_DIRECTORY | O_NOFOLLOW;
/** A file opened only to fstat/fchown it: never a link, never blocking on a FIFO or a terminal. */
const ENTRY_FLAGS = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;

export type ErrnoError = NodeJS.ErrnoException;
export const errno = (err: unknown): string | undefined => (err as ErrnoError | null)?.code;

/** `device:inode` of an open file, as decimal text (step outputs are JSON; inodes can pass 2^53). */
export async function identityOf(handle: FileHandle): Promise<string> {
  const stat = await handle.stat({ bigint: true });
  return `${stat.dev}:${stat.ino}`;
}

/**
 * Opens a directory without following a link at the last component. Linux answers ENOTDIR for a
 * link there (O_DIRECTORY wins over O_NOFOLLOW); it is reported as ELOOP, so that callers can
 * tell a link from a file. (The lstat only words the error: the open has already refused.)
 */
async function openDir(p: string | Buffer): Promise<FileHandle> {
  try {
    return await open(p, DIR_FLAGS);
  } catch (err) {
    if (errno(err) === "ENOTDIR" && (await lstat(p).catch(() => null))?.isSymbolicLink()) {
      throw Object.assign(new Error(`ELOOP: ${p.toString()} is a symbolic link`, { cause: err }), { code: "ELOOP" });
    }
    throw err;
  }
}

/** How deep a walk goes: each level holds one open directory (a guard against fd exhaustion). */
export const MAX_DEPTH = 256;

/** A name as read from the directory: bytes, since a name need not be valid UTF-8. */
export type EntryName = Buffer;

export class AnchoredDir {
  private constructor(
    readonly handle: FileHandle,
    /** The path it was opened by, for messages only: never resolved again. */
    readonly shown: string,
    /** How many directories below the one first opened. */
    readonly depth: number,
  ) {}

  /**
   * Opens `absolutePath` as a directory. Links above its last component are followed (they are
   * the operator's: STORAGE_PATH may sit behind one); the last component must not be a link.
   */
  static async open(absolutePath: string): Promise<AnchoredDir> {
    return new AnchoredDir(await openDir(absolutePath), absolutePath, 0);
  }

  /** The path of `name` inside this directory, resolved through the handle. */
  at(name: string | EntryName): Buffer {
    const bytes = typeof name === "string" ? Buffer.from(name) : name;
    const dots = bytes.length <= 2 && bytes.every((b) => b === 0x2e);
    if (bytes.length === 0 || dots || bytes.includes(0x2f) || bytes.includes(0)) {
      throw new Error(`not a single path component: ${JSON.stringify(bytes.toString())}`);
    }
    return Buffer.concat([Buffer.from(`/proc/self/fd/${this.handle.fd}/`), bytes]);
  }

  /** For messages: the path of `name` under the path this directory was opened by. */
  show(name: string | EntryName): string {
    return `${this.shown}/${name.toString()}`;
  }

  /**
   * Opens the sub-directory `name`; throws ELOOP for a link, ENOTDIR for anything else, and
   * ETOODEEP past `MAX_DEPTH` levels.
   */
  async dir(name: string | EntryName): Promise<AnchoredDir> {
    if (this.depth + 1 > MAX_DEPTH) {
      throw Object.assign(new Error(`${this.show(name)} is nested more than ${MAX_DEPTH} folders deep`), { code: "ETOODEEP" });
    }
    return new AnchoredDir(await openDir(this.at(name)), this.show(name), this.depth + 1);
  }

  /** Opens the entry `name` (not a link) to stat or chown it through the handle. */
  entry(name: EntryName): Promise<FileHandle> {
    return open(this.at(name), ENTRY_FLAGS);
  }

  /** The names in this directory (without `.` and `..`), as bytes. */
  names(): Promise<EntryName[]> {
    return readdir(`/proc/self/fd/${this.handle.fd}`, { encoding: "buffer" });
  }

  identity(): Promise<string> {
    return identityOf(this.handle);
  }

  close(): Promise<void> {
    return this.handle.close().catch(() => undefined);
  }
}

/** Runs `use` with the directory (open, or being opened), closing it afterwards whatever happens. */
export async function withDir<T>(opened: AnchoredDir | Promise<AnchoredDir>, use: (dir: AnchoredDir) => Promise<T>): Promise<T> {
  const dir = await opened;
  try {
    return await use(dir);
  } finally {
    await dir.close();
  }
}
