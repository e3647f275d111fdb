/**
 * `PreviewInventory`: what the sweep reads from and removes in the engine. A new module next to
 * `containers.ts` (the lifecycle verbs), sharing its rules: a container is this instance's
 * preview only when it carries `MANAGED=true` and this instance's `OWNER` (exact values, the
 * engine's label filter, checked again here), a valid `PROJECT_ID`, and the name
 * `preview-{that id}`. Anything else is invisible to the sweep: never listed, never removed.
 * Statuses that are outcomes (404 gone, 409 running) are answered as such; every other failure
 * goes through `dockerError` once (4xx permanent, the rest retryable).
 */
import type Docker from "dockerode";
import type { ContainerInspectInfo } from "dockerode";
import type { Logger } from "pino";
import type { ManagedContainer, PreviewInventory, SweepRemoveOutcome } from "../functions/ports.js";
import { assertProjectId, isProjectId, type ProjectId } from "../functions/project-id.js";
import { publicUrl } from "./container-spec.js";
import { dockerError, statusOf } from "./errors.js";
import { LABELS, containerName, isOwnPreview, isOwned } from "./labels.js";
import { hostPortOf } from "./readiness.js";
import type { PreviewSettings } from "./settings.js";
import { traced } from "./trace.js";

const RUNNING_STATES = new Set(["running", "paused", "restarting"]);
/** Docker's "never" for `FinishedAt`. */
const ZERO_TIME = /^0001-01-01/;

export class DockerPreviewInventory implements PreviewInventory {
  constructor(
    private readonly docker: Docker,
    private readonly settings: Pick<PreviewSettings, "instanceId" | "routing" | "domain">,
    private readonly log?: Logger,
  ) {}

  async list(): Promise<ManagedContainer[]> {
    const owner = this.settings.instanceId;
    let listed: Docker.ContainerInfo[];
    try {
      listed = await traced(this.log, "container.list", {}, () =>
        this.docker.listContainers({ all: true, filters: { label: [`${LABELS.MANAGED}=true`, `${LABELS.OWNER}=${owner}`] } }),
      );
    } catch (err) {
      throw dockerError("list", `containers of owner ${owner}`, err);
    }
    const found: ManagedContainer[] = [];
    for (const c of listed) {
      if (!isOwned(c.Labels, owner)) continue;
      const projectId = c.Labels[LABELS.PROJECT_ID];
      // The verbs address a preview by name: a container with our labels under another name
      // (copied labels, a renamed container) is not the preview of that project.
      if (!isProjectId(projectId) || !c.Names.includes(`/${containerName(projectId)}`)) continue;
      found.push({
        projectId,
        containerId: c.Id,
        state: c.State,
        running: RUNNING_STATES.has(c.State),
        createdAt: c.Created * 1000,
        finishedAt: null,
        url: null,
      });
    }
    return found;
  }

  async inspect(projectId: ProjectId): Promise<ManagedContainer | null> {
    const info = await this.inspectByName(assertProjectId(projectId));
    return info ? this.describe(projectId, info) : null;
  }

  /**
   * Removes `containerId` only if it is, now, this instance's preview of the project under its
   * name (one inspect by name: the id may come from an event, and an event can be forged), and
   * not running; no force, so one started in between answers 409 and stays. A container that
   * replaced it is another id and is not touched.
   */
  async removeStopped(projectId: ProjectId, containerId: string, opts: { recorded?: boolean } = {}): Promise<SweepRemoveOutcome> {
    const id = assertProjectId(projectId);
    if (!opts.recorded) {
      // The id comes from an event: only the container that is this instance's preview of the
      // project, under its name, is ever removed (a forged id of anyone else's container is not).
      const mine = await this.inspectByName(id);
      if (!mine) return "absent";
      if (mine.Id !== containerId) return "replaced";
      if (RUNNING_STATES.has(mine.State.Status)) return "running";
    }
    // With `recorded`, the id is the one on the project's row: ours by construction (see the
    // port). One engine call per expiry instead of two: what a sweep of thousands spends.
    try {
      await traced(this.log, "container.remove", { projectId: id, containerId }, () => this.docker.getContainer(containerId).remove({ v: true }));
      return "removed";
    } catch (err) {
      const status = statusOf(err);
      if (status === 404) return "absent";
      if (status === 409) {
        // Running again, or a removal already in progress: ask.
        const now = await this.inspectByName(id);
        if (!now) return "absent";
        if (now.Id !== containerId) return "replaced";
        if (RUNNING_STATES.has(now.State.Status)) return "running";
        // Someone else's removal of it (remove-preview, a re-create of an outdated spec) is under
        // way: it is going, which is what the expiry wanted.
        if (now.State.Status === "removing") return "absent";
      }
      throw dockerError("remove", `container ${containerName(id)}`, err);
    }
  }

  /** This instance's preview of the project, by name; null when none or not ours. */
  private async inspectByName(projectId: ProjectId): Promise<ContainerInspectInfo | null> {
    const name = containerName(projectId);
    let info: ContainerInspectInfo;
    try {
      info = await traced(this.log, "container.inspect", { projectId, container: name }, () => this.docker.getContainer(name).inspect());
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw dockerError("inspect", `container ${name}`, err);
    }
    return isOwnPreview(info.Config.Labels, this.settings.instanceId, projectId) ? info : null;
  }

  private describe(projectId: ProjectId, info: ContainerInspectInfo): ManagedContainer {
    const running = RUNNING_STATES.has(info.State.Status);
    const finished = info.State.FinishedAt && !ZERO_TIME.test(info.State.FinishedAt) ? Date.parse(info.State.FinishedAt) : NaN;
    let url: string | null = null;
    if (running) {
      try {
        url = publicUrl(projectId, this.settings, hostPortOf(info));
      } catch {
        url = null; // port mode before the engine published the port
      }
    }
    return {
      projectId,
      containerId: info.Id,
      state: info.State.Status,
      running,
      createdAt: Date.parse(info.Created),
      finishedAt: running || Number.isNaN(finished) ? null : finished,
      url,
    };
  }
}
