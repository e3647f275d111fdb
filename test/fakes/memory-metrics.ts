/** In-memory `Metrics` for the unit tier: every call, in order. */
import type { ActionOutcome, LaunchOutcome, Metrics, SweepRunCounts } from "../../functions/ports.js";

export type MetricCall =
  | { kind: "launch"; outcome: LaunchOutcome; seconds: number | null }
  | { kind: "stop" | "remove"; outcome: ActionOutcome }
  | { kind: "sweep"; counts: SweepRunCounts }
  | { kind: "sweep-item"; action: string; outcome: string };

export class MemoryMetrics implements Metrics {
  readonly calls: MetricCall[] = [];

  launchFinished(outcome: LaunchOutcome, seconds: number | null): void {
    this.calls.push({ kind: "launch", outcome, seconds });
  }
  stopFinished(outcome: ActionOutcome): void {
    this.calls.push({ kind: "stop", outcome });
  }
  removeFinished(outcome: ActionOutcome): void {
    this.calls.push({ kind: "remove", outcome });
  }
  sweepFinished(counts: SweepRunCounts): void {
    this.calls.push({ kind: "sweep", counts });
  }
  sweepItemFinished(action: string, outcome: string): void {
    this.calls.push({ kind: "sweep-item", action, outcome });
  }

  /** Calls of one kind. */
  of<K extends MetricCall["kind"]>(kind: K): Array<Extract<MetricCall, { kind: K }>> {
    return this.calls.filter((c): c is Extract<MetricCall, { kind: K }> => c.kind === kind);
  }

  clear(): void {
    this.calls.length = 0;
  }
}
