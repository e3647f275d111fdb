/**
 * In-memory `PreviewRuntime` and `SiteFiles` for the unit tier. Containers are plain records; a
 * test scripts how a preview behaves (answers, exits, never answers) and can make any method
 * fail, retryably or for good. The Docker adapter itself is proven against a real engine in the
 * integration tier.
 */
import type {
  EnsuredContainer,
  PreviewRuntime,
  ProbeResult,
  ProjectId,
  RemoveOutcome,
  SiteCheck,
  SiteFiles,
  StopOutcome,
} from "../../functions/ports.js";
import { PermanentError } from "../../functions/ports.js";

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

  async start(projectId: ProjectId): Promise<void> {
    this.enter("start", projectId);
    const c = this.ours(projectId, "start");
    if (!c) throw new PermanentError(`docker: start container preview-${projectId} failed: it no longer exists`);
    c.running = this.behaviour.get(projectId) !== "exits";
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

  async check(projectId: ProjectId): Promise<SiteCheck> {
    this.calls.push({ method: "check", projectId });
    return this.sites.has(projectId) ? { ok: true } : { ok: false, reason: `site folder not found: /storage/projects/${projectId}/site` };
  }

  async prepare(projectId: ProjectId): Promise<void> {
    this.calls.push({ method: "prepare", projectId });
  }

  async remove(projectId: ProjectId): Promise<void> {
    this.calls.push({ method: "remove", projectId });
    this.sites.delete(projectId);
  }
}
