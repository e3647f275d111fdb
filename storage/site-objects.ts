/**
 * `ProjectObjects` over an `ObjectStore`: the local site folder `{root}/projects/{id}/site` as a
 * cache of `projects/{id}/site/**` in the bucket.
 *
 * Layout of a project folder (only this service writes there; the preview sees `site/` alone):
 *   site/                    what previews mount (checked, prepared and mounted as before)
 *   .site-manifest.json      what `site/` was downloaded from: the ETag of every object, and the
 *                            identity of the folder it was downloaded into (device, inode and
 *                            birth time: an inode number alone is reused)
 *   .site-incoming-XXXX/     a download in progress (0700): renamed to `site/` once complete
 *   .site-outgoing-XXXX/     the folder it replaced, being deleted
 * Leftovers of a crash (`.site-incoming-*`, `.site-outgoing-*`, a manifest half-written) are
 * deleted by the next hydration.
 *
 * Why the manifest is a file beside the site folder, not a database column: it describes THIS
 * host's copy (the local folder is a per-host cache; a second Docker host has its own folder and
 * its own manifest), and it must change together with the folder it describes. It is outside
 * `site/`, so the preview, which can write everything in `site/`, cannot forge it; and it names
 * the folder's identity, so a folder replaced by anything else (by hand, a restore, the pipeline
 * writing locally) no longer matches and is downloaded again.
 *
 * Safety (issue 6): the project folder is reached through `AnchoredDir` (no link followed), the
 * download goes into a fresh 0700 folder inside it (same file system, so the rename is atomic),
 * files are created with O_EXCL|O_NOFOLLOW, and every key is validated before anything is written
 * (`object-keys.ts`). Paths below the incoming folder are resolved through its handle: it was
 * created empty by this process, is reachable by nobody else (0700, not mounted), and holds no
 * link, so validated relative paths cannot leave it. After the rename, launch runs the normal
 * check/prepare on the result.
 */
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { mkdir, open, readFile, rename, rmdir } from "node:fs/promises";
import path from "node:path";
import { PermanentError, type Hydration, type ProjectObjects } from "../functions/ports.js";
import { assertProjectId, type ProjectId } from "../functions/project-id.js";
import { AnchoredDir, errno, withDir } from "./anchored-dir.js";
import { describeRefused, siteEntries, type SiteEntry } from "./object-keys.js";
import { ObjectStoreRetryableError, listAll, objectStoreError, type ObjectStore, type StoredObject } from "./object-store.js";
import { deleteEntry } from "./site-files.js";

const MANIFEST = ".site-manifest.json";
const INCOMING = ".site-incoming-";
const OUTGOING = ".site-outgoing-";
const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_RDONLY } = constants;

/** Downloads at once (bounded: sockets, file descriptors, memory). */
export const DEFAULT_DOWNLOAD_CONCURRENCY = 16;

interface Manifest {
  version: 1;
  /** The site folder it was downloaded into: `device:inode:birth time (ns)` (`stampOf`). */
  folder: string;
  /** path below site/ -> [etag, size], for every object (folder markers included). */
  objects: Record<string, [string, number]>;
}

export interface ObjectSitesOptions {
  concurrency?: number;
}

export class ObjectSites implements ProjectObjects {
  private readonly projectsRoot: string;
  private readonly concurrency: number;

  constructor(
    root: string,
    private readonly store: ObjectStore,
    options: ObjectSitesOptions = {},
  ) {
    this.projectsRoot = path.join(path.resolve(root), "projects");
    this.concurrency = Math.max(1, options.concurrency ?? DEFAULT_DOWNLOAD_CONCURRENCY);
  }

  get location(): string {
    return this.store.location;
  }

  /** The bucket prefix of a project's site. */
  static sitePrefix(projectId: ProjectId): string {
    return `projects/${assertProjectId(projectId)}/site/`;
  }

  async hydrate(projectId: ProjectId): Promise<Hydration> {
    const prefix = ObjectSites.sitePrefix(projectId);
    const listing = await listAll(this.store, prefix);
    if (listing.length === 0) return { outcome: "no-objects" };
    const { entries, refused } = siteEntries(
      prefix,
      listing.map((o) => o.key),
    );
    if (refused.length > 0) {
      throw new PermanentError(
        `object store: refusing to download the site of ${projectId} from ${this.store.location}: ${refused.length} key(s) would not land inside the site folder, nothing was written: ${describeRefused(refused)}`,
      );
    }
    const byKey = new Map(listing.map((o) => [o.key, o]));
    const wanted = manifestObjects(entries, byKey);
    return withDir(this.openProject(projectId), async (project) => {
      const site = await project.dir("site").catch((err: unknown) => {
        if (errno(err) === "ENOENT") return null;
        throw openFailure(err, project.show("site"), project.show("site"));
      });
      const current = site ? await withDir(site, (d) => stampOf(d)) : null;
      const manifest = await readManifest(project);
      if (current !== null && manifest?.folder === current && sameObjects(manifest.objects, wanted)) {
        return { outcome: "unchanged", objects: listing.length };
      }
      await this.clearLeftovers(project);
      const incoming = `${INCOMING}${randomBytes(6).toString("hex")}`;
      await mkdir(project.at(incoming), { mode: 0o700 });
      let bytes = 0;
      let folder: string;
      try {
        folder = await withDir(project.dir(incoming), async (dir) => {
          bytes = await this.download(dir, entries, byKey);
          // Readable by the preview user before `prepare` hands it over (and without PREVIEW_USER).
          await dir.handle.chmod(0o755);
          return stampOf(dir);
        });
      } catch (err) {
        await deleteEntry(project, incoming).catch(() => undefined);
        throw err;
      }
      // The swap: the old folder is moved aside (one rename), the new one takes its name (one
      // rename). A crash in between leaves no site folder, which the next launch downloads again.
      let outgoing: string | null = null;
      if (current !== null) {
        outgoing = `${OUTGOING}${randomBytes(6).toString("hex")}`;
        await rename(project.at("site"), project.at(outgoing));
      }
      await rename(project.at(incoming), project.at("site"));
      await writeManifest(project, { version: 1, folder, objects: wanted });
      if (outgoing) await deleteEntry(project, outgoing);
      return { outcome: "downloaded", objects: listing.length, bytes, replaced: current !== null };
    });
  }

  /**
   * Every object under `projects/{id}/` (listed page by page, deleted 1,000 keys per request),
   * then this side's local traces: the manifest and any crash leftovers beside the site folder,
   * and the project folder itself when that leaves it empty (the site folder is `SiteFiles`'s
   * to delete, before this).
   */
  async removeAll(projectId: ProjectId): Promise<{ removed: number }> {
    const prefix = `projects/${assertProjectId(projectId)}/`;
    const keys = (await listAll(this.store, prefix)).map((o) => o.key);
    for (let i = 0; i < keys.length; i += 1000) await this.store.remove(keys.slice(i, i + 1000));
    await this.forgetLocal(projectId);
    return { removed: keys.length };
  }

  /** Deletes the manifest and leftovers of a project folder (never created here), then the folder if empty. */
  private async forgetLocal(projectId: ProjectId): Promise<void> {
    const id = assertProjectId(projectId);
    const projects = await AnchoredDir.open(this.projectsRoot).catch(() => null);
    if (!projects) return;
    await withDir(projects, async (dir) => {
      const project = await dir.dir(id).catch((err: unknown) => {
        // Missing: nothing to forget. A link or a file: not ours to touch (LocalSiteFiles refuses it too).
        if (errno(err) === "ENOENT" || errno(err) === "ELOOP" || errno(err) === "ENOTDIR") return null;
        throw err;
      });
      if (!project) return;
      await withDir(project, async (p) => {
        await this.clearLeftovers(p);
        await deleteEntry(p, MANIFEST);
      });
      await rmdir(dir.at(id)).catch((err: unknown) => {
        const code = errno(err);
        if (code !== "ENOENT" && code !== "ENOTEMPTY" && code !== "EEXIST" && code !== "ENOTDIR") throw err;
      });
    });
  }

  async archiveLog(projectId: ProjectId, containerId: string, log: string): Promise<{ key: string }> {
    if (!/^[a-f0-9]{12,64}$/.test(containerId)) throw new PermanentError(`object store: archive log of ${projectId}: ${JSON.stringify(containerId)} is not a container id`);
    const key = `projects/${assertProjectId(projectId)}/logs/${containerId}.log`;
    await this.store.put(key, Buffer.from(log, "utf8"), "text/plain; charset=utf-8");
    return { key };
  }

  /** `{root}/projects/{id}`, created if missing, opened without following a link. */
  private async openProject(projectId: ProjectId): Promise<AnchoredDir> {
    const id = assertProjectId(projectId);
    await mkdir(this.projectsRoot, { recursive: true });
    const refuse = (shown: string) => (err: unknown) => {
      throw openFailure(err, shown, `through ${shown}`);
    };
    return withDir(AnchoredDir.open(this.projectsRoot).catch(refuse(this.projectsRoot)), async (projects) => {
      await mkdir(projects.at(id)).catch((err: unknown) => {
        if (errno(err) !== "EEXIST") throw err;
      });
      return projects.dir(id).catch(refuse(projects.show(id)));
    });
  }

  /** Deletes what a crashed hydration left in the project folder. */
  private async clearLeftovers(project: AnchoredDir): Promise<void> {
    for (const name of await project.names()) {
      const text = name.toString();
      if (text.startsWith(INCOMING) || text.startsWith(OUTGOING) || text.startsWith(`${MANIFEST}.`)) await deleteEntry(project, name);
    }
  }

  /**
   * Downloads every entry into `dir` (empty, this process's own), `concurrency` at a time;
   * returns the bytes written. Folders first (every parent of every file), then files.
   */
  private async download(dir: AnchoredDir, entries: readonly SiteEntry[], byKey: Map<string, StoredObject>): Promise<number> {
    const base = `/proc/self/fd/${dir.handle.fd}`;
    const folders = new Set<string>();
    for (const e of entries) {
      const upTo = e.folder ? e.segments.length : e.segments.length - 1;
      for (let i = 1; i <= upTo; i++) folders.add(e.segments.slice(0, i).join("/"));
    }
    // Parents before children: sorted by depth.
    for (const f of [...folders].sort((a, b) => a.split("/").length - b.split("/").length)) {
      await mkdir(`${base}/${f}`, { mode: 0o755 }).catch((err: unknown) => {
        if (errno(err) !== "EEXIST") throw err;
      });
    }
    const files = entries.filter((e) => !e.folder);
    let bytes = 0;
    let next = 0;
    let failed: unknown = null;
    const worker = async () => {
      while (failed === null && next < files.length) {
        const entry = files[next++]!;
        try {
          const n = await this.downloadOne(base, entry, byKey.get(entry.key)!);
          bytes += n;
        } catch (err) {
          failed ??= err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, files.length) }, worker));
    if (failed !== null) throw failed;
    return bytes;
  }

  private async downloadOne(base: string, entry: SiteEntry, object: StoredObject): Promise<number> {
    const file = await open(`${base}/${entry.path}`, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644);
    let written = 0;
    try {
      const body = await this.store.read(entry.key);
      try {
        for await (const chunk of body as AsyncIterable<Buffer>) {
          await file.write(chunk);
          written += chunk.length;
        }
      } catch (err) {
        body.destroy();
        throw objectStoreError(`read ${this.store.location}/${entry.key}`, err);
      }
    } finally {
      await file.close().catch(() => undefined);
    }
    // Changed since the listing, or cut short: the next attempt lists again.
    if (written !== object.size) {
      throw new ObjectStoreRetryableError(`object store: read ${this.store.location}/${entry.key} failed: got ${written} bytes, the listing said ${object.size}`);
    }
    return written;
  }
}

/**
 * Why a folder on the way to the site folder could not be opened: a link or not a folder is
 * refused (permanent); anything else may pass (retryable). `what` words the refusal.
 */
function openFailure(err: unknown, shown: string, what: string): Error {
  const code = errno(err);
  if (code === "ELOOP" || code === "ENOTDIR") {
    return new PermanentError(`storage: refusing to hydrate ${what}: it is ${code === "ELOOP" ? "a symbolic link" : "not a directory"}`, { cause: err });
  }
  return new Error(`storage: open ${shown} failed: ${(err as Error).message}`, { cause: err });
}

/**
 * Which directory this is, for the manifest: device and inode, plus its birth time, since an
 * inode number is reused as soon as a folder is deleted (a folder deleted and made again by hand
 * often gets the same one). Where the file system keeps no birth time it reads 0, and the
 * comparison falls back to device and inode.
 */
async function stampOf(dir: AnchoredDir): Promise<string> {
  const s = await dir.handle.stat({ bigint: true });
  return `${s.dev}:${s.ino}:${s.birthtimeNs}`;
}

function manifestObjects(entries: readonly SiteEntry[], byKey: Map<string, StoredObject>): Manifest["objects"] {
  const objects: Manifest["objects"] = {};
  for (const e of entries) {
    const o = byKey.get(e.key)!;
    objects[e.folder ? `${e.path}/` : e.path] = [o.etag, o.size];
  }
  return objects;
}

function sameObjects(a: Manifest["objects"], b: Manifest["objects"]): boolean {
  const keys = Object.keys(b);
  if (Object.keys(a).length !== keys.length) return false;
  return keys.every((k) => {
    const x = a[k];
    const y = b[k]!;
    return x !== undefined && x[0] === y[0] && x[1] === y[1];
  });
}

/** The manifest beside the site folder; null when missing or unreadable (then: download again). */
async function readManifest(project: AnchoredDir): Promise<Manifest | null> {
  const handle = await open(project.at(MANIFEST), O_RDONLY | O_NOFOLLOW).catch(() => null);
  if (!handle) return null;
  try {
    const parsed = JSON.parse(await readFile(handle, "utf8")) as Partial<Manifest>;
    if (parsed.version !== 1 || typeof parsed.folder !== "string" || typeof parsed.objects !== "object" || parsed.objects === null) return null;
    return parsed as Manifest;
  } catch {
    return null;
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** Written beside, then renamed over the old one: a reader sees the old or the new manifest. */
async function writeManifest(project: AnchoredDir, manifest: Manifest): Promise<void> {
  const temp = `${MANIFEST}.${randomBytes(6).toString("hex")}`;
  const handle = await open(project.at(temp), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
  try {
    await handle.writeFile(JSON.stringify(manifest));
  } finally {
    await handle.close();
  }
  await rename(project.at(temp), project.at(MANIFEST));
}
