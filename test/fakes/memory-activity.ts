/**
 * In-memory `ActivityStore` and `CapacityStore` for the unit tier, over the rows of a
 * `MemoryPreviewStore` (same rules as the SQL store: `last_activity_at` only moves forward, only
 * existing rows are marked; a slot 1..max per holding preview). The integration tier proves the
 * SQL store agrees.
 */
import { lastUse, type ActivityMark, type ActivityStore, type Admission, type CapacityStore, type ProjectId } from "../../functions/ports.js";
import type { MemoryPreviewStore } from "./memory-store.js";

const HOLDING = new Set(["starting", "running", "stopping", "removing"]);

export class MemoryActivityStore implements ActivityStore, CapacityStore {
  readonly slots = new Map<string, number>();
  readonly writes: ActivityMark[][] = [];

  constructor(private readonly previews: MemoryPreviewStore) {}

  async recordActivity(marks: readonly ActivityMark[]): Promise<void> {
    this.writes.push([...marks]);
    for (const m of marks) {
      const row = this.previews.rows.get(m.projectId);
      if (row && (!row.lastActivityAt || row.lastActivityAt < m.at)) row.lastActivityAt = m.at;
    }
  }

  async lastActivity(projectId: ProjectId): Promise<Date | null> {
    return this.previews.rows.get(projectId)?.lastActivityAt ?? null;
  }

  async admit(projectId: ProjectId, claim: string, max: number): Promise<Admission> {
    const row = this.previews.rows.get(projectId);
    if (row?.status !== "starting" || row.claim !== claim) return { admitted: false, full: false, status: row?.status ?? null };
    for (const [id] of this.slots) if (!HOLDING.has(this.previews.rows.get(id)?.status ?? "")) this.slots.delete(id);
    const mine = this.slots.get(projectId);
    if (mine !== undefined) return { admitted: true, slot: mine };
    const held = new Set([...this.slots.values()]);
    // Running previews without a slot (from before the cap) count against it too.
    const unslotted = [...this.previews.rows.values()].filter((r) => r.status === "running" && r.projectId !== projectId && !this.slots.has(r.projectId)).length;
    for (let s = 1; s <= max && held.size + unslotted < max; s++) {
      if (!held.has(s)) {
        this.slots.set(projectId, s);
        return { admitted: true, slot: s };
      }
    }
    const victims = [...this.previews.rows.values()]
      .filter((r) => r.status === "running" && r.projectId !== projectId)
      .sort((a, b) => lastUse(a) - lastUse(b) || a.projectId.localeCompare(b.projectId));
    return { admitted: false, full: true, victim: victims[0]?.projectId ?? null, holders: this.slots.size + unslotted };
  }
}
