/**
 * In-memory `PreviewRuntime` and `SiteFiles` for the unit tier. Containers are plain records; a
 * test scripts how a preview behaves (answers, exits, never answers) and can make any method
 * fail, retryably or for good. The Docker adapter itself is proven against a real engine in the
 * integration tier.
 */
import type {
  EnsuredContainer,
  FolderIdentity,
  PreviewRuntime,
  ProbeResult,
  ProjectId,
  RemoveOutcome,
  SiteCheck,
  SiteFiles,
  StartResult,
  StopOutcome,
} from "../../functions/ports.js";
import { ContainerGoneError, PermanentError } from "../../functions/ports.js";

export type Behaviour = "answers" | "exits" | "silent";
type Method = "ensureContainer" | "start" | "probeReady" | "logTail" | "stop" | "remove" | "ping";

interface FakeContainer {
  id: string;
  running: boolean;
  /** A container this service does not own holds the name. */
  foreign: boolean;
}

export class FakeRuntime implements PreviewRuntime {
  readonly containers = new Map<string, FakeContainer>();
  readonly behaviour = new Map<string, Behaviour>();
  readonly calls: Array<{ method: Method; projectId?: string }> = [];
  private readonly failures = new Map<Method, { error: Error; times: number }>();
  private counter = 0;

  /** The next `times` calls of `method` throw `error` (Infinity: every call). */
  failNext(method: Method, error: Error, times = Infinity): void {
    this.failures.set(method, { error, times });
  }

  /** A container of someone else's holds the project's name. */
  plantForeign(projectId: string): void {
    this.containers.set(projectId, { id: `foreign-${projectId}`, running: true, foreign: true });
  }

  private enter(method: Method, projectId?: string): void {
    this.calls.push({ method, ...(projectId !== undefined ? { projectId } : {}) });
    const failure = this.failures.get(method);
    if (failure && failure.times > 0) {
      failure.times -= 1;
      throw failure.error;
    }
  }

  private ours(projectId: string, action: string): FakeContainer | null {
    const c = this.containers.get(projectId) ?? null;
    if (c?.foreign) throw new PermanentError(`docker: refusing to ${action} container preview-${projectId}: it is not managed by this service`);
    return c;
  }

  async ensureContainer(projectId: ProjectId): Promise<EnsuredContainer> {
    this.enter("ensureContainer", projectId);
    const existing = this.ours(projectId, "launch");
    if (existing) return { containerId: existing.id, running: existing.running };
    const c = { id: `c${++this.counter}-${projectId}`, running: false, foreign: false };
    this.containers.set(projectId, c);
    return { containerId: c.id, running: false };
  }

  /**
   * What a start "mounts" for a project, when it is not the folder it was given: another
   * identity (a folder swapped while the engine mounted it) or "unknown" (the runtime cannot see
   * the container's processes).
   */
  readonly mounts = new Map<string, FolderIdentity | "unknown">();

  /**
   * How many of the project's next starts find its container removed just before them (by hand,
   * or by a sweep's expiry, between ensure-container and start-container).
   */
  readonly vanishBeforeStart = new Map<string, number>();

  async start(projectId: ProjectId, site: FolderIdentity): Promise<StartResult> {
    this.enter("start", projectId);
    const vanish = this.vanishBeforeStart.get(projectId) ?? 0;
    if (vanish > 0 && !this.containers.get(projectId)?.foreign) {
      this.vanishBeforeStart.set(projectId, vanish - 1);
      this.containers.delete(projectId);
    }
    const c = this.ours(projectId, "start");
    if (!c) throw new ContainerGoneError(`docker: start container preview-${projectId} failed: it no longer exists`);
    c.running = this.behaviour.get(projectId) !== "exits";
    const mounted = this.mounts.get(projectId) ?? site;
    if (mounted === "unknown") return { mount: "unverified", reason: "fake: no view of the container's processes" };
    if (mounted !== site) {
      c.running = false;
      throw new PermanentError(`docker: start container preview-${projectId} failed: it mounted directory ${mounted}, not ${site}; killed`);
    }
    return { mount: "verified" };
  }

  async probeReady(projectId: ProjectId, sliceMs: number, signal?: AbortSignal): Promise<ProbeResult> {
    this.enter("probeReady", projectId);
    const c = this.ours(projectId, "probe");
    if (!c) return { state: "down", reason: `container preview-${projectId} does not exist` };
    const behaviour = this.behaviour.get(projectId) ?? "answers";
    if (!c.running) return { state: "down", reason: `container preview-${projectId} exited with code 3` };
    if (behaviour === "silent") {
      // A real probe spends its slice trying (or ends at once on shutdown).
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, sliceMs);
        signal?.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
      });
      return { state: "waiting" };
    }
    return { state: "ready", url: `http://${projectId}.preview.localhost`, containerId: c.id };
  }

  async logTail(projectId: ProjectId): Promise<string> {
    this.enter("logTail", projectId);
    const c = this.containers.get(projectId);
    return c && !c.foreign ? `log of ${projectId}\n` : "";
  }

  async stop(projectId: ProjectId): Promise<StopOutcome> {
    this.enter("stop", projectId);
    const c = this.ours(projectId, "stop");
    if (!c) return "absent";
    if (!c.running) return "already-stopped";
    c.running = false;
    return "stopped";
  }

  async remove(projectId: ProjectId): Promise<RemoveOutcome> {
    this.enter("remove", projectId);
    const c = this.ours(projectId, "remove");
    if (!c) return "absent";
    this.containers.delete(projectId);
    return "removed";
  }

  async ping(): Promise<void> {
    this.enter("ping");
  }

  count(method: Method): number {
    return this.calls.filter((c) => c.method === method).length;
  }
}

export class FakeSiteFiles implements SiteFiles {
  readonly sites = new Set<string>();
  readonly calls: Array<{ method: "check" | "prepare" | "remove"; projectId: string }> = [];

  /** A site's identity when a test replaced its folder; otherwise `FakeSiteFiles.folder(id)`. */
  readonly folders = new Map<string, FolderIdentity>();
  static folder = (projectId: string): FolderIdentity => `1:${projectId}`;

  async check(projectId: ProjectId): Promise<SiteCheck> {
    this.calls.push({ method: "check", projectId });
    if (!this.sites.has(projectId)) return { ok: false, reason: `site folder not found: /storage/projects/${projectId}/site` };
    return { ok: true, folder: this.folders.get(projectId) ?? FakeSiteFiles.folder(projectId) };
  }

  async prepare(projectId: ProjectId, folder: FolderIdentity): Promise<void> {
    this.calls.push({ method: "prepare", projectId });
    if ((this.folders.get(projectId) ?? FakeSiteFiles.folder(projectId)) !== folder) throw new PermanentError(`storage: prepare ${projectId} failed: the site folder changed since it was checked`);
  }

  async remove(projectId: ProjectId): Promise<void> {
    this.calls.push({ method: "remove", projectId });
    this.sites.delete(projectId);
  }
}
