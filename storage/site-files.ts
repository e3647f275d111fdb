/**
 * `SiteFiles` on the local file system: `{root}/projects/{projectId}/site`. The project id is a
 * validated DNS label, and every path is also checked to stay under `{root}/projects`; links are
 * refused because the folder is bind-mounted into a container (a link could expose the host).
 */
import { lstat, rm, rmdir } from "node:fs/promises";
import path from "node:path";
import { PermanentError, type SiteCheck, type SiteFiles } from "../functions/ports.js";
import { assertProjectId, type ProjectId } from "../functions/project-id.js";

export class LocalSiteFiles implements SiteFiles {
  private readonly projectsRoot: string;

  constructor(root: string) {
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

  async check(projectId: ProjectId): Promise<SiteCheck> {
    const { project, site } = this.paths(projectId);
    for (const [label, p] of [["project folder", project], ["site folder", site]] as const) {
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
    return { ok: true };
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
