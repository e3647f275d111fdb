/**
 * `SiteFiles` on the local file system: `{root}/projects/{projectId}/site`. The project id is a
 * validated DNS label, and every path is also checked to stay under `{root}/projects`; links are
 * refused because the folder is bind-mounted into a container (a link could expose the host).
 */
import { lchown, lstat, mkdir, readdir, realpath, rm, rmdir } from "node:fs/promises";
import path from "node:path";
import { PermanentError, type SiteCheck, type SiteFiles } from "../functions/ports.js";
import { assertProjectId, type ProjectId } from "../functions/project-id.js";

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
   * and the site folder are each a real directory (no symbolic link anywhere on the way down from
   * the root), and the site's real path is the expected one. Callers run it in the same step as,
   * and right before, the create or start that mounts the folder.
   */
  async check(projectId: ProjectId): Promise<SiteCheck> {
    const { project, site } = this.paths(projectId);
    const levels = [
      ["projects folder", this.projectsRoot],
      ["project folder", project],
      ["site folder", site],
    ] as const;
    for (const [label, p] of levels) {
      let stat;
      try {
        stat = await lstat(p);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return { ok: false, reason: `site folder not found: ${site}` };
        throw new Error(`storage: check ${label} ${p} failed: ${(err as Error).message}`, { cause: err });
      }
      if (stat.isSymbolicLink()) return { ok: false, reason: `${label} ${p} is a symbolic link; refusing to mount it` };
      if (!stat.isDirectory()) return { ok: false, reason: `${label} ${p} is not a directory` };
    }
    // Above the projects folder the path is the operator's (verified at start-up); below it no
    // link was found, so the real path must be the expected one unless something moved since.
    const expected = path.join(await this.realRoot(), path.basename(project), "site");
    const real = await realpath(site).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return null;
      throw new Error(`storage: resolve site folder ${site} failed: ${err.message}`, { cause: err });
    });
    if (real === null) return { ok: false, reason: `site folder not found: ${site}` };
    if (real !== expected) return { ok: false, reason: `site folder ${site} resolves to ${real}, outside ${expected}; refusing to mount it` };
    return { ok: true };
  }

  /**
   * At start-up: `{root}/projects` exists (created if missing) and is a real directory, not a
   * symbolic link. Throws a `PermanentError` naming the path otherwise.
   */
  async verifyRoot(): Promise<void> {
    await mkdir(this.projectsRoot, { recursive: true }).catch(() => undefined);
    const stat = await lstat(this.projectsRoot).catch((err: NodeJS.ErrnoException) => {
      throw new PermanentError(`storage: ${this.projectsRoot} cannot be read: ${err.message}`, { cause: err });
    });
    if (stat.isSymbolicLink()) throw new PermanentError(`storage: ${this.projectsRoot} is a symbolic link; point STORAGE_PATH at the real folder`);
    if (!stat.isDirectory()) throw new PermanentError(`storage: ${this.projectsRoot} is not a directory`);
    this.root = null;
    await this.realRoot();
  }

  private root: Promise<string> | null = null;
  /** The real path of `{root}/projects` (STORAGE_PATH may itself sit behind an operator's link). */
  private realRoot(): Promise<string> {
    this.root ??= realpath(this.projectsRoot).catch((err: unknown) => {
      this.root = null;
      throw err;
    });
    return this.root;
  }

  /**
   * Gives every entry of the site folder that is not the preview user's to that user (lchown:
   * a link is changed itself, never followed), so the unprivileged preview can write there
   * (`npm ci`, `.next/`). Entries already owned are skipped, so a relaunch walks but writes
   * nothing; files with several hard links are never changed (their inode may be a host file's).
   * Run after `check`, in the same step.
   */
  async prepare(projectId: ProjectId): Promise<void> {
    const owner = this.owner;
    if (!owner) return;
    const { site } = this.paths(projectId);
    /** lstat, then lchown when not the owner's; null when the entry vanished meanwhile. */
    const give = async (p: string) => {
      const stat = await lstat(p).catch(() => null);
      // A file with more than one link shares its inode with a path elsewhere (a hard link to a
      // host file, or a package store): chowning it would hand THAT file to the preview user.
      // It is left as it is; the unprivileged preview reads it only if it is world-readable.
      const shared = stat !== null && !stat.isDirectory() && stat.nlink > 1;
      if (stat && !shared && (stat.uid !== owner.uid || stat.gid !== owner.gid)) {
        await lchown(p, owner.uid, owner.gid).catch((err: NodeJS.ErrnoException) => {
          const how = err.code === "EPERM" ? ": run the service as root or as that user, or write the folder as that user" : "";
          throw new PermanentError(`storage: give ${p} to the preview user ${owner.uid}:${owner.gid} failed: ${err.code ?? err.message}${how}`, { cause: err });
        });
      }
      return stat;
    };
    if (!(await give(site))?.isDirectory()) return;
    const pending = [site];
    for (let dir = pending.pop(); dir !== undefined; dir = pending.pop()) {
      for (const entry of await readdir(dir).catch(() => [])) {
        const p = path.join(dir, entry);
        // lstat: a link is never a directory here, so the walk never leaves the site folder.
        if ((await give(p))?.isDirectory()) pending.push(p);
      }
    }
  }

  async remove(projectId: ProjectId): Promise<void> {
    const { project, site } = this.paths(projectId);
    const projectStat = await lstat(project).catch(() => null);
    if (projectStat?.isSymbolicLink()) {
      throw new PermanentError(`storage: refusing to delete through ${project}: it is a symbolic link`);
    }
    try {
      // rm does not follow links: a linked site folder loses the link, not its target.
      await rm(site, { recursive: true, force: true });
      // Leave the project folder to its owner unless it is now empty.
      await rmdir(project).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "ENOENT" && err.code !== "ENOTEMPTY" && err.code !== "EEXIST") throw err;
      });
    } catch (err) {
      throw new Error(`storage: delete site folder ${site} failed: ${(err as Error).message}`, { cause: err });
    }
  }
}
