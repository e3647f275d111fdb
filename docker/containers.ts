/**
 * The container verbs. Every verb looks the container up by name (one inspect, ~1 ms whatever
 * the number of containers), checks it is this instance's preview of that project, and acts on
 * its id. Statuses that are outcomes (304 already started/stopped, 404 gone, 409 name taken) are
 * handled here; every other failure goes through `dockerError` once.
 */
import { randomBytes } from "node:crypto";
import type Docker from "dockerode";
import type { ContainerInspectInfo } from "dockerode";
import type { Logger } from "pino";
import { ContainerGoneError, type EnsuredContainer, type FolderIdentity, type RemoveOutcome, type StartResult, type StopOutcome } from "../functions/ports.js";
import { assertProjectId, type ProjectId } from "../functions/project-id.js";
import { APP_DIR, containerSpec, outdatedBy } from "./container-spec.js";
import { DockerPermanentError, DockerRetryableError, ForeignContainerError, dockerError, failureMessage, statusOf } from "./errors.js";
import { LABELS, containerName, isOwnPreview } from "./labels.js";
import { lastChars, logText } from "./logs.js";
import { mountedFolder } from "./mounted-folder.js";
import type { PreviewNetwork } from "./network.js";
import type { PreviewSettings } from "./settings.js";
import { traced } from "./trace.js";

/** How long a create that lost the name waits for the winner to become visible. */
const CONVERGE_MS = 5_000;
const BACKOFF_FIRST_MS = 10;
const BACKOFF_MAX_MS = 250;
/** Upper bound of a log tail, whatever the line count (a minified bundle can be one huge line). */
const LOG_TAIL_MAX_CHARS = 8_000;
const DEFAULT_LOG_TAIL_LINES = 50;
const DEFAULT_STOP_TIMEOUT_SECONDS = 10;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const ensured = (info: ContainerInspectInfo): EnsuredContainer => ({ containerId: info.Id, running: info.State.Running });
/**
 * Being removed: it will never start again, and its name is freed once the removal ends. While a
 * removal is in progress the engine answers a start with 409 "marked for removal" (Docker 20.10;
 * a 404 once its endpoint is gone is handled the same way), not 404 "no such container".
 */
const dying = (info: ContainerInspectInfo): boolean => info.State.Status === "removing";

/** How often, and how far apart, an unreadable mount is looked at again before it is refused (~0.5 s). */
const MOUNT_LOOKS = 10;
const MOUNT_LOOK_INTERVAL_MS = 50;

export class PreviewContainers {
  constructor(
    private readonly docker: Docker,
    private readonly settings: PreviewSettings,
    private readonly network: PreviewNetwork,
    private readonly log?: Logger,
  ) {}

  /**
   * Inspects the project's container by name. Null when there is none; throws
   * `ForeignContainerError` (permanent) when the name is held by a container that is not this
   * instance's preview of this project, so callers never act on it. `action` words the refusal.
   */
  async find(projectId: ProjectId, action: string): Promise<ContainerInspectInfo | null> {
    const name = containerName(assertProjectId(projectId));
    let info: ContainerInspectInfo;
    try {
      info = await traced(
        this.log,
        "container.inspect",
        { projectId, container: name },
        () => this.docker.getContainer(name).inspect(),
        (i) => i.Id,
      );
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw dockerError("inspect", `container ${name}`, err);
    }
    if (!isOwnPreview(info.Config.Labels, this.settings.instanceId, projectId)) {
      throw new ForeignContainerError(
        failureMessage(
          action,
          `container ${name}`,
          `it (${info.Id.slice(0, 12)}) is not managed by "${this.settings.instanceId}" for project ${projectId} (labels ${LABELS.MANAGED}/${LABELS.OWNER}/${LABELS.PROJECT_ID} missing or different); refusing to touch it`,
        ),
      );
    }
    return info;
  }

  /**
   * Finds the container or creates it. Concurrent ensures converge on one container: the engine
   * gives the name to one create and 409 to the others, which adopt the winner.
   */
  async ensure(projectId: ProjectId): Promise<EnsuredContainer> {
    let existing = await this.find(projectId, "create");
    if (existing && dying(existing)) {
      // Being removed (a sweep's expiry, a remove): wait for the name to be free, then create.
      await this.untilGone(projectId, existing.Id, "create");
      existing = await this.find(projectId, "create");
    }
    if (existing && existing.State.Status === "dead") {
      // Left dead by a removal that failed half-way: it can never start; ours, so removed.
      this.log?.warn({ projectId, containerId: existing.Id }, "removing a dead preview container before creating it again");
      await this.remove(projectId);
      existing = null;
    }
    if (existing) {
      // A container of an earlier version (or other settings) is not started with a weaker spec.
      const stale = outdatedBy(existing, containerSpec(projectId, this.settings, ""));
      if (!stale) return ensured(existing);
      this.log?.info({ projectId, containerId: existing.Id, stale }, "recreating a preview container whose spec is outdated");
      await this.remove(projectId);
    }
    await this.network.ensure();
    return this.create(projectId);
  }

  private async create(projectId: ProjectId): Promise<EnsuredContainer> {
    const name = containerName(projectId);
    const object = `container ${name}`;
    // The secret is generated here and never returned: step outputs are stored by Inngest.
    const spec = containerSpec(projectId, this.settings, randomBytes(32).toString("hex"));
    const deadline = Date.now() + CONVERGE_MS;
    let backoff = BACKOFF_FIRST_MS;
    let networkRecreated = false;
    for (;;) {
      try {
        const container = await traced(
          this.log,
          "container.create",
          { projectId, container: name },
          () => this.docker.createContainer(spec),
          (c) => c.id,
        );
        this.log?.info({ projectId, containerId: container.id }, "created preview container");
        return { containerId: container.id, running: false };
      } catch (err) {
        const status = statusOf(err);
        if (status === 409) {
          // The name is taken: by our own concurrent create (adopt it) or by a foreign container
          // (`find` refuses it, permanently).
          const winner = await this.find(projectId, "create");
          if (winner) return ensured(winner);
          // The engine reserves the name before the container can be inspected, so while the
          // winning create is in flight the name answers 409 and inspect answers 404. Wait for
          // it (or for the name to be freed, if that create fails) with backoff, bounded.
          if (Date.now() + backoff > deadline) {
            throw new DockerRetryableError(
              failureMessage("create", object, `409 the name is in use but no container of that name appeared within ${CONVERGE_MS / 1000}s`),
              { cause: err, status },
            );
          }
          await sleep(backoff);
          backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
          continue;
        }
        if (status === 404) {
          // 404 on create means a missing network or a missing image; the engine's reason does
          // not say which reliably, so ask the engine about each.
          if (!networkRecreated && !(await this.network.exists())) {
            networkRecreated = true; // deleted since `ensure` checked: recreate it, once
            await this.network.ensure();
            continue;
          }
          if (!(await this.imageExists(projectId))) {
            throw new DockerPermanentError(failureMessage("create", object, `image ${this.settings.image} not found`), { cause: err, status });
          }
        }
        throw dockerError("create", object, err);
      }
    }
  }

  private async imageExists(projectId: ProjectId): Promise<boolean> {
    const image = this.settings.image;
    try {
      await traced(this.log, "image.inspect", { projectId, image }, () => this.docker.getImage(image).inspect());
      return true;
    } catch (err) {
      if (statusOf(err) === 404) return false;
      throw dockerError("inspect", `image ${image}`, err);
    }
  }

  /**
   * Starts the container; already running is success. Only `ensure` creates: a container removed
   * since then (by a remove that slipped in, by hand, or by a sweep's expiry) never comes back
   * from here; a missing container is `ContainerGoneError` (permanent, and told apart from every
   * other refusal), so the caller, which knows whether it still holds the preview, decides
   * whether to create it again. Then compares what the container mounted at
   * `APP_DIR` with `site` (see `mounted-folder.ts`): another directory means the site folder was
   * swapped while the engine resolved the path, and the container is killed before it runs on.
   */
  async start(projectId: ProjectId, site: FolderIdentity): Promise<StartResult> {
    const info = await this.find(projectId, "start");
    if (!info) throw this.gone(projectId);
    if (dying(info)) {
      await this.untilGone(projectId, info.Id, "start");
      throw this.gone(projectId);
    }
    if (!info.State.Running) {
      // The engine attaches by network name at start: check (and recreate, if it is gone) the
      // network it would join, so a network replaced by one that does not isolate is refused here.
      await this.network.ensure();
      await this.startById(projectId, info.Id, true);
    }
    return this.verifyMount(projectId, site);
  }

  private async verifyMount(projectId: ProjectId, site: FolderIdentity): Promise<StartResult> {
    const info = await this.find(projectId, "verify the mount of");
    if (!info?.State.Running) return { mount: "unverified", reason: "the container is not running (it exited right after its start)" };
    let mounted = await mountedFolder(info.State.Pid, info.Id, APP_DIR, this.settings.procPath);
    if ("unknown" in mounted && this.settings.mountCheck === "path") return { mount: "unverified", reason: mounted.unknown };
    // Its process may simply be exiting (a site that fails at once): its root is gone from /proc
    // a moment before the engine reports the exit. Look again, briefly: once the engine says it
    // exited there is nothing running to compare or to kill (the probe reports it down); a
    // process still running whose mount cannot be read after that is refused below.
    for (let look = 0; "unknown" in mounted && look < MOUNT_LOOKS; look++) {
      const now = await this.find(projectId, "verify the mount of");
      if (!now?.State.Running || now.State.Pid !== info.State.Pid) return { mount: "unverified", reason: "the container exited right after its start" };
      await sleep(MOUNT_LOOK_INTERVAL_MS);
      mounted = await mountedFolder(info.State.Pid, info.Id, APP_DIR, this.settings.procPath);
    }
    if ("identity" in mounted && mounted.identity === site) return { mount: "verified" };
    const name = containerName(projectId);
    await traced(this.log, "container.kill", { projectId, containerId: info.Id }, () => this.docker.getContainer(info.Id).kill()).catch((err: unknown) => {
      if (statusOf(err) !== 404 && statusOf(err) !== 409) throw dockerError("kill", `container ${name}`, err);
    });
    const detail =
      "identity" in mounted
        ? `it mounted directory ${mounted.identity} at ${APP_DIR}, not the site folder checked right before (${site}): the folder was replaced while the engine mounted it; killed`
        : `what it mounted at ${APP_DIR} cannot be compared with the site folder checked (${mounted.unknown}); killed. Run the service on the host as root, or in a container with pid: host and the SYS_PTRACE capability, or set PREVIEW_MOUNT_CHECK=path`;
    throw new DockerPermanentError(failureMessage("start", `container ${name}`, detail));
  }

  private async startById(projectId: ProjectId, containerId: string, mayRecreateNetwork: boolean): Promise<void> {
    const name = containerName(projectId);
    try {
      await traced(this.log, "container.start", { projectId, containerId }, () => this.docker.getContainer(containerId).start());
    } catch (err) {
      const status = statusOf(err);
      if (status === 304) return; // already started
      if (status === 404 || status === 409) {
        // 404: the container is gone, or the network it is attached to is. 409: it is being
        // removed ("marked for removal"), or another refusal of the engine's.
        const now = await this.find(projectId, "start");
        if (!now || now.Id !== containerId) throw this.gone(projectId, err);
        if (dying(now)) {
          await this.untilGone(projectId, containerId, "start");
          throw this.gone(projectId, err);
        }
        if (status === 404 && mayRecreateNetwork && !(await this.network.exists())) {
          // Deleted behind our back. The engine attaches by name at start: a new network of
          // that name will do.
          await this.network.ensure();
          return this.startById(projectId, containerId, false);
        }
      }
      throw dockerError("start", `container ${name}`, err);
    }
  }

  /**
   * Waits (bounded, CONVERGE_MS) until the dying container `containerId` no longer holds the
   * project's name; still there after that is retryable (the engine is slow, not wrong).
   */
  private async untilGone(projectId: ProjectId, containerId: string, action: string): Promise<void> {
    const deadline = Date.now() + CONVERGE_MS;
    let backoff = BACKOFF_FIRST_MS;
    for (;;) {
      const now = await this.find(projectId, action);
      if (!now || now.Id !== containerId) return;
      if (!dying(now)) return; // the removal failed and left it: the caller goes on with it
      if (Date.now() + backoff > deadline) {
        throw new DockerRetryableError(failureMessage(action, `container ${containerName(projectId)}`, `it (${containerId.slice(0, 12)}) is being removed and still was after ${CONVERGE_MS / 1000}s`));
      }
      await sleep(backoff);
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    }
  }

  private gone(projectId: ProjectId, cause?: unknown): ContainerGoneError {
    const message = failureMessage("start", `container ${containerName(projectId)}`, "it no longer exists");
    return new ContainerGoneError(message, cause === undefined ? undefined : { cause });
  }

  /** Stops the container; stopped or missing is an outcome. */
  async stop(projectId: ProjectId): Promise<StopOutcome> {
    const info = await this.find(projectId, "stop");
    if (!info) return "absent";
    if (!info.State.Running) return "already-stopped";
    try {
      await traced(this.log, "container.stop", { projectId, containerId: info.Id }, () =>
        this.docker.getContainer(info.Id).stop({ t: this.settings.stopTimeoutSeconds ?? DEFAULT_STOP_TIMEOUT_SECONDS }),
      );
      return "stopped";
    } catch (err) {
      const status = statusOf(err);
      if (status === 304) return "already-stopped";
      if (status === 404) return "absent";
      throw dockerError("stop", `container ${containerName(projectId)}`, err);
    }
  }

  /** Removes the container, killing it first if it runs; missing is an outcome. */
  async remove(projectId: ProjectId): Promise<RemoveOutcome> {
    const info = await this.find(projectId, "remove");
    if (!info) return "absent";
    const object = `container ${containerName(projectId)}`;
    try {
      // force: a running container is killed and removed in one call; v: its anonymous volumes too.
      await traced(this.log, "container.remove", { projectId, containerId: info.Id }, () =>
        this.docker.getContainer(info.Id).remove({ force: true, v: true }),
      );
      return "removed";
    } catch (err) {
      const status = statusOf(err);
      if (status === 404) return "absent";
      // 409 "removal already in progress": the next attempt finds it gone.
      if (status === 409) throw new DockerRetryableError(failureMessage("remove", object, "a removal is already in progress"), { cause: err, status });
      throw dockerError("remove", object, err);
    }
  }

  /**
   * The last log lines of a container found by `find` (both streams, in order), at most
   * `LOG_TAIL_MAX_CHARS`. A container gone meanwhile has no logs: "".
   */
  async logTail(projectId: ProjectId, info: ContainerInspectInfo): Promise<string> {
    let raw: Buffer;
    try {
      raw = await traced(this.log, "container.logs", { projectId, containerId: info.Id }, () =>
        this.docker.getContainer(info.Id).logs({
          stdout: true,
          stderr: true,
          tail: this.settings.logTailLines ?? DEFAULT_LOG_TAIL_LINES,
          follow: false,
        }),
      );
    } catch (err) {
      if (statusOf(err) === 404) return "";
      throw dockerError("read logs of", `container ${containerName(projectId)}`, err);
    }
    // dockerode gives a Buffer for a non-follow answer; be lenient should that ever change.
    const bytes = Buffer.isBuffer(raw) ? raw : Buffer.from(String(raw));
    return lastChars(await logText(bytes, info.Config.Tty, this.docker.modem), LOG_TAIL_MAX_CHARS);
  }
}
