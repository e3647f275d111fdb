/**
 * `PreviewRuntime` on a Docker engine, composed of the preview network (`network.ts`), the
 * container verbs (`containers.ts`) and the readiness probe (`readiness.ts`).
 *
 * Contracts kept by every method: the project id is validated first (`InvalidProjectIdError`);
 * a container is only ever acted on after its labels showed it is this instance's preview of
 * that project (a foreign one gives `ForeignContainerError`, and is left as it is); failures
 * that retrying will not change are `PermanentError`s, everything else is retryable.
 */
import type Docker from "dockerode";
import type { Logger } from "pino";
import type { ContainerSecrets, EnsuredContainer, FolderIdentity, PreviewRuntime, ProbeResult, RemoveOutcome, StartResult, StopOutcome } from "../functions/ports.js";
import { assertProjectId, type ProjectId } from "../functions/project-id.js";
import { publicUrl } from "./container-spec.js";
import { PreviewContainers } from "./containers.js";
import { ForeignContainerError, dockerError } from "./errors.js";
import { containerName } from "./labels.js";
import { PreviewNetwork } from "./network.js";
import { hostPortOf, probeSlice, probeTarget } from "./readiness.js";
import type { PreviewSettings } from "./settings.js";
import { traced } from "./trace.js";

export class DockerPreviewRuntime implements PreviewRuntime, ContainerSecrets {
  private readonly network: PreviewNetwork;
  private readonly containers: PreviewContainers;

  constructor(
    private readonly docker: Docker,
    private readonly settings: PreviewSettings,
    private readonly log?: Logger,
  ) {
    this.network = new PreviewNetwork(docker, settings, log);
    this.containers = new PreviewContainers(docker, settings, this.network, log);
  }

  async ping(): Promise<void> {
    try {
      await traced(this.log, "ping", {}, () => this.docker.ping());
    } catch (err) {
      throw dockerError("ping", "engine", err);
    }
  }

  /** Creates the preview network when missing (done by `ensureContainer` too; callable at start-up). */
  ensureNetwork(): Promise<void> {
    return this.network.ensure();
  }

  // async: an invalid id rejects the promise instead of throwing synchronously.
  async ensureContainer(projectId: ProjectId): Promise<EnsuredContainer> {
    return this.containers.ensure(assertProjectId(projectId));
  }

  async start(projectId: ProjectId, site: FolderIdentity): Promise<StartResult> {
    return this.containers.start(assertProjectId(projectId), site);
  }

  /**
   * One bounded probe slice (see `probeSlice`). A foreign container under the name throws
   * `ForeignContainerError`, as everywhere. (The logs of a preview that is down: `logTail`.)
   */
  async probeReady(projectId: ProjectId, sliceMs: number, signal?: AbortSignal): Promise<ProbeResult> {
    const id = assertProjectId(projectId);
    const outcome = await probeSlice({
      name: containerName(id),
      sliceMs,
      signal,
      inspect: () => this.containers.find(id, "probe"),
      target: (info) => probeTarget(info, this.settings),
    });
    switch (outcome.state) {
      case "ready":
        return { state: "ready", url: publicUrl(id, this.settings, hostPortOf(outcome.info)), containerId: outcome.info.Id };
      case "waiting":
        return { state: "waiting" };
      case "down":
        return { state: "down", reason: outcome.reason };
    }
  }

  /**
   * The last log lines of the project's container: "" when there is none or it is not ours (a
   * foreign container's logs are not ours to read). An unreachable engine throws (retryable).
   */
  async logTail(projectId: ProjectId): Promise<string> {
    const id = assertProjectId(projectId);
    const info = await this.findOwn(id, "read logs of");
    return info ? this.containers.logTail(id, info) : "";
  }

  /**
   * The values of the container's environment (`Config.Env`: what this service set, e.g. its
   * `PAYLOAD_SECRET`, and the image's), for diagnose-preview to redact from its logs; [] when
   * there is no container or it is not ours. Secrets: never logged here. An unreachable engine
   * throws (retryable).
   */
  async environmentValues(projectId: ProjectId): Promise<string[]> {
    const id = assertProjectId(projectId);
    const info = await this.findOwn(id, "read the environment of");
    return (info?.Config.Env ?? []).map((entry) => entry.slice(entry.indexOf("=") + 1)).filter((value) => value !== "");
  }

  /** The project's container, or null when there is none or it is not ours (left as it is). */
  private findOwn(id: ProjectId, action: string): ReturnType<PreviewContainers["find"]> {
    return this.containers.find(id, action).catch((err: unknown) => {
      if (err instanceof ForeignContainerError) return null;
      throw err;
    });
  }

  async stop(projectId: ProjectId): Promise<StopOutcome> {
    return this.containers.stop(assertProjectId(projectId));
  }

  async remove(projectId: ProjectId): Promise<RemoveOutcome> {
    return this.containers.remove(assertProjectId(projectId));
  }
}
