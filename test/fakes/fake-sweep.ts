/**
 * In-memory sweep ports for the unit tier: an inventory over `FakeRuntime`'s containers (plus the
 * times Docker would report), a project directory over a set, and an audit log in an array. The
 * Docker, SQL and project adapters themselves are proven in the integration tier.
 */
import type { ManagedContainer, PreviewInventory, ProjectDirectory, ProjectId, ProjectLookup, SweepDecision, SweepLog, SweepRemoveOutcome } from "../../functions/ports.js";
import type { FakeRuntime } from "./fake-runtime.js";

export class FakeInventory implements PreviewInventory {
  /** Created and finished times (ms) by project; default: created long ago, never finished. */
  readonly times = new Map<string, { createdAt: number; finishedAt: number | null }>();
  listCalls = 0;
  inspectCalls = 0;

  constructor(private readonly runtime: FakeRuntime) {}

  private describe(projectId: ProjectId): ManagedContainer | null {
    const c = this.runtime.containers.get(projectId);
    if (!c || c.foreign) return null;
    const t = this.times.get(projectId) ?? { createdAt: 0, finishedAt: null };
    return {
      projectId,
      containerId: c.id,
      state: c.running ? "running" : "exited",
      running: c.running,
      createdAt: t.createdAt,
      finishedAt: c.running ? null : t.finishedAt,
      url: c.running ? `http://${projectId}.preview.localhost` : null,
    };
  }

  async list(): Promise<ManagedContainer[]> {
    this.listCalls++;
    return [...this.runtime.containers.keys()].flatMap((id) => {
      const c = this.describe(id);
      return c ? [{ ...c, finishedAt: null, url: null }] : [];
    });
  }

  async inspect(projectId: ProjectId): Promise<ManagedContainer | null> {
    this.inspectCalls++;
    return this.describe(projectId);
  }

  /** Calls that vouched for the id (`recorded`): the engine skips its ownership inspect for them. */
  recordedRemovals = 0;

  async removeStopped(projectId: ProjectId, containerId: string, opts: { recorded?: boolean } = {}): Promise<SweepRemoveOutcome> {
    if (opts.recorded) this.recordedRemovals++;
    const c = this.describe(projectId);
    // As the adapter: vouched for, by id (another container under the name is not this id, and
    // the vouched one is gone); otherwise checked by name first.
    if (!c) return "absent";
    if (c.containerId !== containerId) return opts.recorded ? "absent" : "replaced";
    if (c.running) return "running";
    this.runtime.containers.delete(projectId);
    return "removed";
  }
}

export class FakeProjects implements ProjectDirectory {
  readonly source = "table projects (fake)";
  readonly ids = new Set<string>();
  failWith: Error | null = null;
  lookups = 0;

  async lookup(projectIds: readonly ProjectId[]): Promise<ProjectLookup> {
    this.lookups++;
    if (this.failWith) throw this.failWith;
    return { anyProject: this.ids.size > 0, existing: projectIds.filter((id) => this.ids.has(id)) };
  }
}

export class MemorySweepLog implements SweepLog {
  readonly entries: SweepDecision[] = [];

  async record(decisions: readonly SweepDecision[]): Promise<void> {
    for (const d of decisions) {
      const dup = this.entries.some((e) => e.runId === d.runId && e.pass === d.pass && e.action === d.action && e.projectId === d.projectId);
      // As the SQL log: a skip is not recorded after an outcome of the same run, pass and project.
      const afterOutcome = d.action === "skip" && this.entries.some((e) => e.runId === d.runId && e.pass === d.pass && e.projectId === d.projectId && ["removed", "corrected", "adopted", "failed"].includes(e.action));
      if (!dup && !afterOutcome) this.entries.push({ ...d });
    }
  }
}
