/**
 * `SiteFiles` on the local file system: `{root}/projects/{projectId}/site`. The project id is a
 * validated DNS label, and every path is also checked to stay under `{root}/projects`; links are
 * refused because the folder is bind-mounted into a container (a link could expose the host).
 */
import { access, lstat, mkdir, rmdir, unlink, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { PermanentError, type FolderIdentity, type SiteCheck, type SiteFiles } from "../functions/ports.js";
import { assertProjectId, type ProjectId } from "../functions/project-id.js";
import { AnchoredDir, errno, withDir, type EntryName } from "./anchored-dir.js";

/** Who previews run as: what `prepare` gives the site folder to. */
export interface SiteOwner {
  uid: number;
  gid: number;
}

export class LocalSiteFiles implements SiteFiles {
  private readonly projectsRoot: string;

  /** @param owner the preview user (`PREVIEW_USER`); null: site folders are left as they are. */
  constructor(
    root: string,
    private readonly owner: SiteOwner | null = null,
  ) {
    this.projectsRoot = path.join(path.resolve(root), "projects");
  }

  /** `{root}/projects/{id}` and `{root}/projects/{id}/site`, guaranteed inside the root. */
  private paths(projectId: ProjectId): { project: string; site: string } {
    const project = path.join(this.projectsRoot, assertProjectId(projectId));
    if (path.dirname(project) !== this.projectsRoot) throw new PermanentError(`storage: site path for ${projectId} escapes ${this.projectsRoot}`);
    return { project, site: path.join(project, "site") };
  }

  /** Where the site of a project is read from (for messages and tests). */
  sitePath(projectId: ProjectId): string {
    return this.paths(projectId).site;
  }

  /**
   * Verifies that the site folder can be mounted as it is: `{root}/projects`, the project folder
   * and the site folder are each a real directory, opened one inside the other without following
   * a link, and returns the site folder's identity (`device:inode`) for the caller to compare
   * with what the container ends up mounting. Callers run it in the same step as, and right
   * before, the create or start that mounts the folder.
   */
  async check(projectId: ProjectId): Promise<SiteCheck> {
    const { project, site } = this.paths(projectId);
    const opened: AnchoredDir[] = [];
    const open = async (label: string, shown: string, how: () => Promise<AnchoredDir>): Promise<AnchoredDir | string> => {
      try {
        const dir = await how();
        opened.push(dir);
        return dir;
      } catch (err) {
        switch (errno(err)) {
          case "ENOENT":
            return `site folder not found: ${site}`;
          case "ELOOP":
            return `${label} ${shown} is a symbolic link; refusing to mount it`;
          case "ENOTDIR":
            return `${label} ${shown} is not a directory`;
          default:
            throw new Error(`storage: check ${label} ${shown} failed: ${(err as Error).message}`, { cause: err });
        }
      }
    };
    try {
      const projects = await open("projects folder", this.projectsRoot, () => AnchoredDir.open(this.projectsRoot));
      if (typeof projects === "string") return { ok: false, reason: projects };
      const dir = await open("project folder", project, () => projects.dir(path.basename(project)));
      if (typeof dir === "string") return { ok: false, reason: dir };
      const siteDir = await open("site folder", site, () => dir.dir("site"));
      if (typeof siteDir === "string") return { ok: false, reason: siteDir };
      return { ok: true, folder: await siteDir.identity() };
    } finally {
      await Promise.all(opened.map((d) => d.close()));
    }
  }

  /**
   * At start-up: `{root}/projects` exists (created if missing) and is a real directory, not a
   * symbolic link, and `/proc/self/fd` (through which folders are walked) is there. Throws a
   * `PermanentError` naming the path otherwise.
   */
  async verifyRoot(): Promise<void> {
    await mkdir(this.projectsRoot, { recursive: true }).catch(() => undefined);
    await access("/proc/self/fd").catch((err: NodeJS.ErrnoException) => {
      throw new PermanentError(`storage: /proc/self/fd is not available (${err.code ?? err.message}); site folders are walked through it, mount /proc`, { cause: err });
    });
    const p = this.projectsRoot;
    await withDir(AnchoredDir.open(p), async () => undefined).catch((err: unknown) => {
      const code = errno(err);
      if (code === "ELOOP") throw new PermanentError(`storage: ${p} is a symbolic link; point STORAGE_PATH at the real folder`, { cause: err });
      if (code === "ENOTDIR") throw new PermanentError(`storage: ${p} is not a directory`, { cause: err });
      throw new PermanentError(`storage: ${p} cannot be read: ${(err as Error).message}`, { cause: err });
    });
  }

  /**
   * Opens the project folder through `{root}/projects`, neither through a link; null when
   * either is missing. `action` words the refusal.
   */
  private async openProject(projectId: ProjectId, action: string): Promise<AnchoredDir | null> {
    const { project } = this.paths(projectId);
    const refuse = (err: unknown, shown: string): null => {
      const code = errno(err);
      if (code === "ENOENT") return null;
      if (code === "ELOOP") throw new PermanentError(`storage: refusing to ${action} through ${shown}: it is a symbolic link`, { cause: err });
      if (code === "ENOTDIR") throw new PermanentError(`storage: refusing to ${action} ${shown}: it is not a directory`, { cause: err });
      throw err;
    };
    const projects = await AnchoredDir.open(this.projectsRoot).catch((err: unknown) => refuse(err, this.projectsRoot));
    if (!projects) return null;
    return withDir(projects, (dir) => dir.dir(path.basename(project)).catch((err: unknown) => refuse(err, project)));
  }

  /**
   * Gives every file and directory of the site folder that is not the preview user's to that
   * user, so the unprivileged preview can write there (`npm ci`, `.next/`). The walk holds each
   * directory open and works inside it (`anchored-dir.ts`): an entry swapped for a link while it
   * runs is never followed. Each entry is opened without following a link and changed through
   * that handle (fchown), so what is changed is what was looked at: links themselves, devices,
   * FIFOs and sockets are left as they are, and so are files with several hard links (their
   * inode may be a host file's). Entries already owned are only looked at, so a relaunch writes
   * nothing. `folder` is the identity `check` returned: a site folder replaced since is refused.
   */
  async prepare(projectId: ProjectId, folder: FolderIdentity): Promise<void> {
    const owner = this.owner;
    if (!owner) return;
    const { site } = this.paths(projectId);
    const project = await this.openProject(projectId, "prepare");
    if (!project) throw new PermanentError(`storage: prepare ${site} failed: site folder not found`);
    const siteDir = await withDir(project, (dir) => dir.dir("site")).catch((err: unknown) => {
      throw new PermanentError(`storage: prepare ${site} failed: ${errno(err) === "ELOOP" ? "it is a symbolic link" : (err as Error).message}`, { cause: err });
    });
    const needs = (stat: { uid: number; gid: number }) => stat.uid !== owner.uid || stat.gid !== owner.gid;
    const give = async (handle: FileHandle, shown: string) => {
      await handle.chown(owner.uid, owner.gid).catch((err: NodeJS.ErrnoException) => {
        const how = err.code === "EPERM" ? ": run the service as root or as that user, or write the folder as that user" : "";
        throw new PermanentError(`storage: give ${shown} to the preview user ${owner.uid}:${owner.gid} failed: ${err.code ?? err.message}${how}`, { cause: err });
      });
    };
    /**
     * A regular file, handed over only once it is shown to be the site's own: opened without
     * following a link, then, looked up again by name, the name must still lead to that very
     * inode and it must have no other link. An inode with one link, reached by the site's name,
     * is no host file (a host file keeps its own link, which the attacker cannot remove); a hard
     * link added and removed around the open fails one of the two tests.
     */
    const giveFile = async (dir: AnchoredDir, name: EntryName) => {
      const handle = await dir.entry(name).catch(() => null);
      if (!handle) return;
      try {
        const opened = await handle.stat({ bigint: true });
        if (!opened.isFile() || !needs({ uid: Number(opened.uid), gid: Number(opened.gid) })) return;
        const now = await lstat(dir.at(name), { bigint: true }).catch(() => null);
        if (!now || now.dev !== opened.dev || now.ino !== opened.ino || now.nlink !== 1n) return;
        await give(handle, dir.show(name));
      } finally {
        await handle.close().catch(() => undefined);
      }
    };
    const walk = async (dir: AnchoredDir): Promise<void> => {
      // Directories cannot be hard-linked: one opened by name without following a link is the site's.
      if (needs(await dir.handle.stat())) await give(dir.handle, dir.shown);
      for (const name of await dir.names()) {
        const stat = await lstat(dir.at(name)).catch(() => null);
        if (!stat || stat.isSymbolicLink()) continue;
        if (stat.isDirectory()) {
          const sub = await dir.dir(name).catch((err: unknown) => {
            if (errno(err) === "ETOODEEP") throw new PermanentError(`storage: prepare ${site} failed: ${(err as Error).message}`, { cause: err });
            // ELOOP/ENOTDIR/ENOENT: swapped or gone since the lstat; nothing to follow.
            return null;
          });
          if (sub) await withDir(sub, walk);
        } else if (stat.isFile() && needs(stat) && stat.nlink === 1) {
          await giveFile(dir, name);
        }
      }
    };
    await withDir(siteDir, async (dir) => {
      if ((await dir.identity()) !== folder) throw new PermanentError(`storage: prepare ${site} failed: the site folder changed since it was checked`);
      await walk(dir);
    });
  }

  /**
   * Deletes the project's site folder, then the project folder if that leaves it empty. The
   * deletion works inside directories it holds open and never follows a link (`deleteEntry`), so
   * a link planted in the site, or a directory swapped for one while the deletion runs, loses
   * the link and never its target.
   */
  async remove(projectId: ProjectId): Promise<void> {
    const { project, site } = this.paths(projectId);
    const dir = await this.openProject(projectId, "delete");
    if (!dir) return;
    await withDir(dir, async (projectDir) => {
      try {
        await deleteEntry(projectDir, "site");
        // Leave the project folder to its owner unless it is now empty.
        await withDir(AnchoredDir.open(this.projectsRoot), (projects) =>
          rmdir(projects.at(path.basename(project))).catch((err: NodeJS.ErrnoException) => {
            if (err.code !== "ENOENT" && err.code !== "ENOTEMPTY" && err.code !== "EEXIST" && err.code !== "ENOTDIR") throw err;
          }),
        );
      } catch (err) {
        // Too deep is not going to change by retrying; anything else (EIO, EMFILE...) may.
        const Failure = errno(err) === "ETOODEEP" ? PermanentError : Error;
        throw new Failure(`storage: delete site folder ${site} failed: ${(err as Error).message}`, { cause: err });
      }
    });
  }
}

/** How often an entry that keeps changing under the deletion is tried before giving up. */
const DELETE_ATTEMPTS = 5;

/**
 * Deletes `name` inside `dir`, whatever it is, without following a link: unlink first (a link or
 * a file goes, its target stays); a directory is opened without following a link, emptied
 * through that handle, and removed. Missing is success. An entry swapped back and forth while
 * this runs is retried a bounded number of times, then reported.
 */
export async function deleteEntry(dir: AnchoredDir, name: string | EntryName): Promise<void> {
  for (let attempt = 1; attempt <= DELETE_ATTEMPTS; attempt++) {
    try {
      await unlink(dir.at(name));
      return;
    } catch (err) {
      const code = errno(err);
      if (code === "ENOENT") return;
      if (code !== "EISDIR" && code !== "EPERM") throw err;
    }
    const sub = await dir.dir(name).catch((err: unknown) => {
      // Swapped for a link or a file since the unlink: go round and unlink it.
      if (errno(err) === "ELOOP" || errno(err) === "ENOTDIR" || errno(err) === "ENOENT") return null;
      throw err;
    });
    if (sub) await withDir(sub, emptyDir);
    try {
      await rmdir(dir.at(name));
      return;
    } catch (err) {
      const code = errno(err);
      if (code === "ENOENT") return;
      // Refilled while it was emptied, or swapped: go round again.
      if (code !== "ENOTEMPTY" && code !== "EEXIST" && code !== "ENOTDIR") throw err;
    }
  }
  throw new Error(`${dir.show(name)} kept changing while it was deleted (${DELETE_ATTEMPTS} attempts)`);
}

/**
 * Deletes everything inside `dir`: a few entries at a time, one sub-directory at a time. Every
 * delete of a batch has finished before an error is thrown (the handle stays open while any
 * path through it is in use).
 */
async function emptyDir(dir: AnchoredDir): Promise<void> {
  const names = await dir.names();
  for (let i = 0; i < names.length; i += LEAVES_AT_ONCE) {
    const batch = names.slice(i, i + LEAVES_AT_ONCE);
    const dirs: EntryName[] = [];
    const results = await Promise.allSettled(
      batch.map(async (name) => {
        try {
          await unlink(dir.at(name));
        } catch (err) {
          if (errno(err) === "ENOENT") return;
          if (errno(err) !== "EISDIR" && errno(err) !== "EPERM") throw err;
          dirs.push(name);
        }
      }),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
    // Sub-directories one after the other: each level of the walk holds one open directory.
    for (const name of dirs) await deleteEntry(dir, name);
  }
}

/** Files unlinked concurrently inside one directory. */
const LEAVES_AT_ONCE = 16;
