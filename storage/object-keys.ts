/**
 * Which object keys may become files in a site folder: the zip-slip of object stores. A listing
 * comes from a store this service does not control (AWS S3 accepts any key; a compromised
 * pipeline can write any key), and a key is turned into a path below the site folder. Every key
 * is checked BEFORE anything is written: a listing with a single refused key downloads nothing.
 *
 * Refused: a key outside the project's prefix; empty, `.` or `..` segments (so no absolute path,
 * no `a//b`, no way up); backslashes (a separator elsewhere, and a `..\\..` in disguise); NUL and
 * other control characters; a segment longer than NAME_MAX (255 bytes) or a path longer than
 * `MAX_RELATIVE_PATH` bytes; deeper than `MAX_SEGMENTS`; a name that is both a file and a folder
 * (`a` and `a/b`), or twice the same file. A key ending in `/` (a "folder marker" some tools
 * write, size 0) stands for a folder.
 */

/** What a listing entry becomes below the site folder. */
export interface SiteEntry {
  /** The object key, as listed. */
  key: string;
  /** The path below the site folder: segments joined by `/`, each one a plain file name. */
  path: string;
  /** The path's segments (at least one). */
  segments: string[];
  /** A folder marker (`key` ends in `/`): a folder, nothing to download. */
  folder: boolean;
}

export interface RefusedKey {
  key: string;
  why: string;
}

/** Linux NAME_MAX: the longest single file name, in bytes. */
export const MAX_SEGMENT_BYTES = 255;
/** Longest path below the site folder, in bytes (PATH_MAX 4096 leaves room for STORAGE_PATH). */
export const MAX_RELATIVE_PATH = 3072;
/** Deepest path below the site folder (the site-folder walks stop at 256 levels too). */
export const MAX_SEGMENTS = 128;

// C0 controls (NUL included) and DEL: no file name of a site needs them, and a terminal or a
// log line that shows them can be misled.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why `key` (below `prefix`) cannot become a path in the site folder; null when it can. */
export function refuseKey(prefix: string, key: string): string | null {
  if (!key.startsWith(prefix)) return `not below ${prefix}`;
  const rel = key.slice(prefix.length);
  if (rel.length === 0) return null; // the prefix's own folder marker
  if (key.includes("\u0000")) return "contains a NUL character";
  if (CONTROL.test(rel)) return "contains a control character";
  if (rel.includes("\\")) return "contains a backslash";
  if (rel.startsWith("/")) return "is an absolute path (a `/` right after the prefix)";
  if (Buffer.byteLength(rel) > MAX_RELATIVE_PATH) return `is longer than ${MAX_RELATIVE_PATH} bytes below the site folder`;
  const segments = (rel.endsWith("/") ? rel.slice(0, -1) : rel).split("/");
  if (segments.length > MAX_SEGMENTS) return `is nested more than ${MAX_SEGMENTS} folders deep`;
  for (const s of segments) {
    if (s === "..") return "has a `..` segment (it would land outside the site folder)";
    if (s === ".") return "has a `.` segment";
    if (s === "") return "has an empty segment (`//`)";
    if (Buffer.byteLength(s) > MAX_SEGMENT_BYTES) return `has a name longer than ${MAX_SEGMENT_BYTES} bytes`;
    // A lone surrogate cannot be written as UTF-8: the file would get another name than the key.
    if (LONE_SURROGATE.test(s)) return "is not valid Unicode";
  }
  return null;
}

/**
 * Turns a listing below `prefix` into site entries, or says which keys are refused (all of them,
 * so one report names every problem). Also refuses a listing where one name is both a file and
 * a folder, or the same file comes twice.
 */
export function siteEntries(prefix: string, keys: readonly string[]): { entries: SiteEntry[]; refused: RefusedKey[] } {
  const entries: SiteEntry[] = [];
  const refused: RefusedKey[] = [];
  for (const key of keys) {
    const why = refuseKey(prefix, key);
    if (why) {
      refused.push({ key, why });
      continue;
    }
    const rel = key.slice(prefix.length);
    if (rel.length === 0) continue;
    const folder = rel.endsWith("/");
    const path = folder ? rel.slice(0, -1) : rel;
    entries.push({ key, path, segments: path.split("/"), folder });
  }
  if (refused.length > 0) return { entries: [], refused };
  // A file that is also a folder (a, a/b) cannot be laid out; a path that comes twice is a
  // second file for one name (a store never lists a key twice, but a listing is input).
  const files = new Map<string, string>();
  const folders = new Map<string, string>();
  for (const e of entries) {
    if (!e.folder) {
      if (files.has(e.path)) refused.push({ key: e.key, why: `names the same file as ${files.get(e.path)}` });
      else files.set(e.path, e.key);
    }
    const parents = e.folder ? e.segments.length : e.segments.length - 1;
    for (let i = 1; i <= parents; i++) {
      const p = e.segments.slice(0, i).join("/");
      if (!folders.has(p)) folders.set(p, e.key);
    }
  }
  for (const [p, key] of files) {
    if (folders.has(p)) refused.push({ key, why: `is a file and a folder at once (${folders.get(p)} is inside it)` });
  }
  return refused.length > 0 ? { entries: [], refused } : { entries, refused };
}

/** One line naming the refused keys (at most `shown`, then how many more). */
export function describeRefused(refused: readonly RefusedKey[], shown = 5): string {
  const listed = refused.slice(0, shown).map((r) => `${JSON.stringify(r.key)} ${r.why}`);
  const more = refused.length > shown ? `; and ${refused.length - shown} more` : "";
  return `${listed.join("; ")}${more}`;
}
