/**
 * In-memory `PreviewStore` for the unit tier: the same lifecycle table and the same replay rules
 * as the SQL store (stop time kept across `stopped` replays, `updatedAt` moves only on a change,
 * an audit event only when the status moves). The integration tier proves the SQL store agrees.
 */
import { LIFECYCLE, allows, matchesClaim, takesClaim, type LifecycleAction, type PreviewStatus } from "../../functions/lifecycle.js";
import type { ApplyResult, ExpireResult, ExpireWrite, PreviewCounts, PreviewRecord, PreviewStore, ProjectId, SweepLog, TransitionFields } from "../../functions/ports.js";
import { failureKey, type DiagnosisState, type DiagnosisStore, type FailureOf } from "../../functions/ports.js";

export class MemoryPreviewStore implements PreviewStore, DiagnosisStore, PreviewCounts {
  readonly rows = new Map<string, PreviewRecord>();
  readonly audit: Array<{ projectId: string; type: PreviewStatus; reason: string | null }> = [];
  /** Set to make every call throw (a database outage). */
  failWith: Error | null = null;
  /** Actions applied, in order, with their outcome (for assertions). */
  readonly applied: Array<{ projectId: string; action: LifecycleAction; applied: boolean }> = [];

  async get(projectId: ProjectId): Promise<PreviewRecord | null> {
    this.check();
    const row = this.rows.get(projectId);
    return row ? { ...row } : null;
  }

  async list(): Promise<PreviewRecord[]> {
    this.check();
    return [...this.rows.values()].sort((a, b) => a.projectId.localeCompare(b.projectId)).map((r) => ({ ...r }));
  }

  async getMany(projectIds: readonly ProjectId[]): Promise<PreviewRecord[]> {
    this.check();
    return [...new Set(projectIds)].sort().flatMap((id) => (this.rows.has(id) ? [{ ...this.rows.get(id)! }] : []));
  }

  /** Where `expireMany` records its audit entries (the SQL store: the same database). */
  auditLog: SweepLog | null = null;

  /** As the SQL statement: `expire` where the row is still stopped with the `updatedAt` read. */
  async expireMany(writes: readonly ExpireWrite[], claim: string, audit?: { runId: string }): Promise<ExpireResult[]> {
    this.check();
    // The SQL store always writes the audit entries it is asked for: never drop them silently.
    if (audit && writes.length > 0 && !this.auditLog) throw new Error("MemoryPreviewStore.expireMany: an audit was asked for but no auditLog is set (set store.auditLog)");
    const before = new Map(writes.map((w) => [w.projectId, this.rows.get(w.projectId)?.status ?? null]));
    const results: ExpireResult[] = [];
    for (const w of writes) {
      const row = this.rows.get(w.projectId);
      const unchanged = row?.status === "stopped" && row.updatedAt.getTime() === w.readUpdatedAt.getTime();
      if (unchanged) await this.apply(w.projectId, "expire", { reason: w.reason, claim, containerId: null, url: null });
      else this.applied.push({ projectId: w.projectId, action: "expire", applied: false });
      results.push({ projectId: w.projectId, applied: unchanged, status: before.get(w.projectId) ?? null });
    }
    if (audit && this.auditLog) {
      await this.auditLog.record(
        results.map((r, k) => ({
          runId: audit.runId,
          pass: "expired" as const,
          action: "removed",
          projectId: r.projectId,
          reason: r.applied ? (writes[k]!.auditReason ?? writes[k]!.reason) : `${writes[k]!.reason}; row not recorded (now ${r.status ?? "gone"})`,
        })),
      );
    }
    return results;
  }

  async countByStatus(): Promise<Partial<Record<PreviewStatus, number>>> {
    this.check();
    const counts: Partial<Record<PreviewStatus, number>> = {};
    for (const row of this.rows.values()) counts[row.status] = (counts[row.status] ?? 0) + 1;
    return counts;
  }

  async apply(projectId: ProjectId, action: LifecycleAction, fields: TransitionFields): Promise<ApplyResult> {
    this.check();
    const prev = this.rows.get(projectId) ?? null;
    const claimHeld = !matchesClaim(action) || (prev?.claim ?? null) === (fields.claim ?? null);
    if (!allows(action, prev?.status ?? null) || !claimHeld) {
      this.applied.push({ projectId, action, applied: false });
      return { applied: false, row: prev ? { ...prev } : null };
    }
    const now = new Date();
    const to = LIFECYCLE[action].to;
    const next: PreviewRecord = {
      projectId,
      status: to,
      reason: fields.reason,
      url: fields.url !== undefined ? fields.url : (prev?.url ?? null),
      containerId: fields.containerId !== undefined ? fields.containerId : (prev?.containerId ?? null),
      logTail: fields.logTail !== undefined ? fields.logTail : (prev?.logTail ?? null),
      stoppedAt: to !== "stopped" ? null : prev?.status === "stopped" ? prev.stoppedAt : now,
      claim: takesClaim(action) ? (fields.claim ?? null) : (prev?.claim ?? null),
      lastActivityAt: prev?.lastActivityAt ?? null,
      createdAt: prev?.createdAt ?? now,
      updatedAt: now,
    };
    const same =
      prev !== null &&
      prev.status === next.status &&
      prev.reason === next.reason &&
      prev.url === next.url &&
      prev.containerId === next.containerId &&
      prev.logTail === next.logTail;
    if (same) next.updatedAt = prev.updatedAt;
    const changed = prev?.status !== to;
    this.rows.set(projectId, next);
    if (changed) this.audit.push({ projectId, type: to, reason: fields.reason });
    this.applied.push({ projectId, action, applied: true });
    return { applied: true, changed, row: { ...next } };
  }

  async ping(): Promise<void> {
    this.check();
  }

  /** Diagnosis outcomes appended to the audit log (`diagnosed`, `diagnosis-unavailable`). */
  readonly diagnosisAudit: Array<{ projectId: string; type: "diagnosed" | "diagnosis-unavailable"; reason: string }> = [];

  /** The same compare-and-set as the SQL store's `DIAGNOSIS_SQL`. */
  async recordDiagnosis(projectId: ProjectId, failure: FailureOf, outcome: { state: DiagnosisState; text: string }): Promise<{ recorded: boolean; written: boolean }> {
    this.check();
    const row = this.rows.get(projectId);
    const key = failureKey({ projectId, ...failure });
    const d = row?.diagnosis ?? null;
    const sameFailure = row?.status === "failed" && row.claim === failure.claim && row.reason === failure.reason && row.logTail === failure.logTail;
    const kept = d !== null && d.key === key && (d.state === "diagnosed" || (d.state === outcome.state && d.text === outcome.text));
    if (row && sameFailure && !kept) {
      row.diagnosis = { key, state: outcome.state, text: outcome.text, at: new Date() };
      this.diagnosisAudit.push({ projectId, type: outcome.state === "diagnosed" ? "diagnosed" : "diagnosis-unavailable", reason: outcome.text });
      return { recorded: true, written: true };
    }
    const now = row?.diagnosis ?? null;
    return { recorded: now !== null && now.key === key && now.state === outcome.state && now.text === outcome.text, written: false };
  }

  /** Diagnosis attempts per project: the failure they count for, how many, the last attempt id. */
  readonly diagnosisAttempts = new Map<string, { key: string; attempts: number; lastId: string }>();

  async takeDiagnosisAttempt(projectId: ProjectId, failure: FailureOf, attemptId: string, max: number): Promise<{ granted: boolean; attempts: number }> {
    this.check();
    const row = this.rows.get(projectId);
    const key = failureKey({ projectId, ...failure });
    const sameFailure = row?.status === "failed" && row.claim === failure.claim && row.reason === failure.reason && row.logTail === failure.logTail;
    const now = this.diagnosisAttempts.get(projectId);
    if (sameFailure && now?.lastId !== attemptId && (now?.key !== key || now.attempts < max)) {
      const next = { key, attempts: now?.key === key ? now.attempts + 1 : 1, lastId: attemptId };
      this.diagnosisAttempts.set(projectId, next);
      return { granted: true, attempts: next.attempts };
    }
    const ours = now !== undefined && now.key === key;
    return { granted: ours && now.lastId === attemptId, attempts: ours ? now.attempts : 0 };
  }

  /** The audit trail of one project: the statuses it moved to, in order. */
  events(projectId: string): PreviewStatus[] {
    return this.audit.filter((e) => e.projectId === projectId).map((e) => e.type);
  }

  /** Puts a row in a given status directly (test set-up). */
  seed(projectId: string, status: PreviewStatus, extra: Partial<PreviewRecord> = {}): void {
    const now = new Date();
    this.rows.set(projectId, {
      projectId,
      status,
      url: null,
      containerId: null,
      reason: "seeded",
      logTail: null,
      stoppedAt: status === "stopped" ? now : null,
      claim: null,
      lastActivityAt: null,
      createdAt: now,
      updatedAt: now,
      ...extra,
    });
  }

  private check(): void {
    if (this.failWith) throw this.failWith;
  }
}
