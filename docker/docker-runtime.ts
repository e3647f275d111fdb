/**
 * `PreviewRuntime` on a Docker engine. Every call looks the container up by name (one inspect,
 * ~1 ms, whatever the number of containers), checks it is ours, and acts on its id. Statuses that
 * are outcomes (304 already started/stopped, 404 gone, 409 name taken by a concurrent create)
 * are handled here; everything else goes through `dockerError` once.
 */
import { randomBytes } from "node:crypto";
import http from "node:http";
import type Docker from "dockerode";
import type { ContainerInspectInfo } from "dockerode";
import { NonRetriableError } from "inngest";
import type { Logger } from "pino";
import type { EnsuredContainer, PreviewRuntime, ReadyResult, RemoveOutcome, StopOutcome } from "../functions/ports.js";
import { assertProjectId, type ProjectId } from "../functions/project-id.js";
import { PREVIEW_PORT, containerSpec, publicUrl, type PreviewSettings } from "./container-spec.js";
import { dockerError, statusOf } from "./errors.js";
import { LABELS, containerName, isOwned } from "./labels.js";
import { demuxLogs, lastChars } from "./logs.js";

export interface DockerRuntimeOptions extends PreviewSettings {
  /** Seconds a stop waits for the process before SIGKILL. */
  stopTimeoutSeconds?: number;
  /** Log lines kept for a failed preview. */
  logTailLines?: number;
}

const LOG_TAIL_MAX_CHARS = 8_000;
const INSPECT_EVERY_MS = 250;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class DockerPreviewRuntime implements PreviewRuntime {
  /** Settled once the preview network is known to exist (reset if it disappears). */
  private network: Promise<void> | null = null;

  constructor(
    private readonly docker: Docker,
    private readonly options: DockerRuntimeOptions,
    private readonly log?: Logger,
  ) {}

  async ping(): Promise<void> {
    try {
      await this.docker.ping();
    } catch (err) {
      throw dockerError("ping", "engine", err);
    }
  }

  /** Creates the preview network when missing. Concurrent callers share one attempt. */
  ensureNetwork(): Promise<void> {
    this.network ??= this.createNetworkIfMissing().catch((err: unknown) => {
      this.network = null;
      throw err;
    });
    return this.network;
  }

  private async createNetworkIfMissing(): Promise<void> {
    const name = this.options.network;
    try {
      await this.docker.getNetwork(name).inspect();
      return;
    } catch (err) {
      if (statusOf(err) !== 404) throw dockerError("inspect network", name, err);
    }
    try {
      await this.docker.createNetwork({
        Name: name,
        Driver: "bridge",
        // Without it two concurrent creates can give two networks with one name.
        CheckDuplicate: true,
        Labels: { ...this.options.extraLabels, [LABELS.MANAGED]: "true", [LABELS.OWNER]: this.options.instanceId },
      });
      this.log?.info({ network: name }, "created preview network");
    } catch (err) {
      if (statusOf(err) !== 409) throw dockerError("create network", name, err);
    }
    await this.dedupeNetworks(name);
  }

  /**
   * `CheckDuplicate` does not stop concurrent creates (measured: five at once give five networks
   * with one name). Every creator therefore keeps the oldest network of that name and removes
   * the other ones it owns; all creators pick the same keeper, so they converge.
   */
  private async dedupeNetworks(name: string): Promise<void> {
    let networks;
    try {
      networks = (await this.docker.listNetworks({ filters: { name: [name] } })).filter((n) => n.Name === name);
    } catch (err) {
      throw dockerError("list networks", name, err);
    }
    if (networks.length <= 1) return;
    networks.sort((a, b) => a.Created.localeCompare(b.Created) || a.Id.localeCompare(b.Id));
    for (const extra of networks.slice(1)) {
      if (!isOwned(extra.Labels, this.options.instanceId)) continue;
      await this.docker
        .getNetwork(extra.Id)
        .remove()
        .catch((err: unknown) => this.log?.warn({ network: name, networkId: extra.Id, err }, "could not remove duplicate network"));
    }
  }

  /** Inspects by name; null when absent; refuses a container this instance does not manage. */
  private async find(projectId: ProjectId, action: string): Promise<ContainerInspectInfo | null> {
    const name = containerName(assertProjectId(projectId));
    let info: ContainerInspectInfo;
    try {
      info = await this.docker.getContainer(name).inspect();
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw dockerError("inspect", `container ${name}`, err);
    }
    if (!isOwned(info.Config.Labels, this.options.instanceId) || info.Config.Labels[LABELS.PROJECT_ID] !== projectId) {
      throw new NonRetriableError(
        `docker: refusing to ${action} container ${name} (${info.Id.slice(0, 12)}): it is not managed by "${this.options.instanceId}" for project ${projectId} (labels ${LABELS.MANAGED}/${LABELS.OWNER}/${LABELS.PROJECT_ID} missing or different)`,
      );
    }
    return info;
  }

  async ensureContainer(projectId: ProjectId): Promise<EnsuredContainer> {
    const existing = await this.find(projectId, "launch");
    if (existing) return { containerId: existing.Id, created: false, running: existing.State.Running };
    await this.ensureNetwork();
    const name = containerName(projectId);
    // The secret is generated here and never returned: step outputs are stored by Inngest.
    const spec = containerSpec(projectId, this.options, randomBytes(32).toString("hex"));
    for (let attempt = 0; ; attempt++) {
      try {
        const container = await this.docker.createContainer(spec);
        this.log?.info({ projectId, containerId: container.id }, "created preview container");
        return { containerId: container.id, created: true, running: false };
      } catch (err) {
        const status = statusOf(err);
        if (status === 409) {
          // A concurrent launch won the name: adopt its container.
          const adopted = await this.find(projectId, "adopt");
          if (adopted) return { containerId: adopted.Id, created: false, running: adopted.State.Running };
          if (attempt < 2) continue; // it was removed in between: try again
        }
        if (status === 404 && /network/i.test(String((err as Error).message)) && attempt < 1) {
          this.network = null; // deleted behind our back
          await this.ensureNetwork();
          continue;
        }
        if (status === 404) {
          throw new NonRetriableError(`docker: create container ${name} failed: image ${this.options.image} not found`, { cause: err });
        }
        throw dockerError("create", `container ${name}`, err);
      }
    }
  }

  async start(projectId: ProjectId): Promise<void> {
    const name = containerName(projectId);
    const info = await this.find(projectId, "start");
    // Only ensureContainer creates: a container removed since then (by a remove that slipped in,
    // or by hand) must not come back behind that remove's back.
    if (!info) throw new NonRetriableError(`docker: start container ${name} failed: it no longer exists`);
    if (info.State.Running) return;
    try {
      await this.docker.getContainer(info.Id).start();
    } catch (err) {
      if (statusOf(err) === 304) return; // already started
      throw dockerError("start", `container ${name}`, err);
    }
  }

  async waitUntilReady(projectId: ProjectId, timeoutMs: number): Promise<ReadyResult> {
    const name = containerName(projectId);
    const deadline = Date.now() + timeoutMs;
    let info = await this.find(projectId, "probe");
    if (!info) return { ready: false, reason: `container ${name} does not exist`, logTail: "" };
    let target = this.probeTarget(info);
    let lastInspect = Date.now();
    let delay = 5;
    for (;;) {
      if (!info.State.Running) {
        const logTail = await this.logTail(info.Id);
        return { ready: false, reason: `container ${name} exited with code ${info.State.ExitCode} before answering HTTP on port ${PREVIEW_PORT}`, logTail };
      }
      if (target && (await probe(target.host, target.port, Math.max(1, Math.min(2_000, deadline - Date.now()))))) {
        return { ready: true, url: this.publicUrlOf(projectId, info), containerId: info.Id };
      }
      if (Date.now() >= deadline) {
        const logTail = await this.logTail(info.Id);
        return { ready: false, reason: `container ${name} did not answer HTTP on port ${PREVIEW_PORT} within ${Math.round(timeoutMs / 1000)}s`, logTail };
      }
      await sleep(Math.min(delay, Math.max(0, deadline - Date.now())));
      delay = Math.min(delay * 2, 100);
      if (!target || Date.now() - lastInspect >= INSPECT_EVERY_MS) {
        info = await this.find(projectId, "probe");
        lastInspect = Date.now();
        if (!info) return { ready: false, reason: `container ${name} was removed while starting`, logTail: "" };
        target ??= this.probeTarget(info);
      }
    }
  }

  /** Where this process can reach the dev server: the published port, or the network address. */
  private probeTarget(info: ContainerInspectInfo): { host: string; port: number } | null {
    if (this.options.routing === "port") {
      const hostPort = info.NetworkSettings.Ports?.[`${PREVIEW_PORT}/tcp`]?.[0]?.HostPort;
      return hostPort ? { host: "127.0.0.1", port: Number(hostPort) } : null;
    }
    const ip = info.NetworkSettings.Networks?.[this.options.network]?.IPAddress;
    return ip ? { host: ip, port: PREVIEW_PORT } : null;
  }

  private publicUrlOf(projectId: ProjectId, info: ContainerInspectInfo): string {
    return publicUrl(projectId, this.options, info.NetworkSettings.Ports?.[`${PREVIEW_PORT}/tcp`]?.[0]?.HostPort);
  }

  private async logTail(containerId: string): Promise<string> {
    try {
      const raw = (await this.docker.getContainer(containerId).logs({
        stdout: true,
        stderr: true,
        tail: this.options.logTailLines ?? 50,
        follow: false,
      })) as unknown as Buffer;
      return lastChars(demuxLogs(Buffer.isBuffer(raw) ? raw : Buffer.from(String(raw))), LOG_TAIL_MAX_CHARS);
    } catch (err) {
      // The tail is diagnostic: a failure to read it must not hide the real failure.
      this.log?.warn({ containerId, err }, "could not read container logs");
      return "";
    }
  }

  async stop(projectId: ProjectId): Promise<StopOutcome> {
    const name = containerName(projectId);
    const info = await this.find(projectId, "stop");
    if (!info) return "absent";
    if (!info.State.Running) return "already-stopped";
    try {
      await this.docker.getContainer(info.Id).stop({ t: this.options.stopTimeoutSeconds ?? 10 });
      return "stopped";
    } catch (err) {
      const status = statusOf(err);
      if (status === 304) return "already-stopped";
      if (status === 404) return "absent";
      throw dockerError("stop", `container ${name}`, err);
    }
  }

  async remove(projectId: ProjectId): Promise<RemoveOutcome> {
    const name = containerName(projectId);
    const info = await this.find(projectId, "remove");
    if (!info) return "absent";
    try {
      // force: a running container is killed and removed in one call; v: its anonymous volumes too.
      await this.docker.getContainer(info.Id).remove({ force: true, v: true });
      return "removed";
    } catch (err) {
      const status = statusOf(err);
      if (status === 404) return "absent";
      // "removal already in progress": the next attempt finds it gone.
      if (status === 409) throw new Error(`docker: remove container ${name} is already in progress; retrying`, { cause: err });
      throw dockerError("remove", `container ${name}`, err);
    }
  }
}

/** One HTTP GET; true when the server answers with a status below 500. */
function probe(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: "/", agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      resolve((res.statusCode ?? 500) < 500);
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(false));
  });
}
