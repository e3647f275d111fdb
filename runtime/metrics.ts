/**
 * `GET /metrics`: the `Metrics` port (functions/ports.ts) as Prometheus series (prom-client).
 *
 * One `Registry` per service instance, passed in: never prom-client's global default registry,
 * so two services in one process (tests) keep their own series. Series (README "Metrics"):
 *
 *   previews_by_status{status}                      gauge, read from the database at scrape time
 *   previews_status_up                              gauge, 1 when that read answered in time
 *   previews_launches_total{outcome}                counter (ready, already_running, superseded, failed)
 *   previews_launch_duration_seconds                histogram, container ensured -> dev server answers
 *   previews_stops_total{outcome}                   counter (done, noop, superseded, failed)
 *   previews_removals_total{outcome}                counter (done, noop, superseded, failed)
 *   previews_sweep_runs_total{dry_run}              counter
 *   previews_sweep_decisions_total{pass,action}     counter, what real sweep runs decided
 *   previews_sweep_guards_total{pass}               counter, passes skipped by a guard
 *   previews_sweep_last_run_timestamp_seconds       gauge, when the last real (not dry) run ended; 0 until then
 *   previews_sweep_items_total{action,outcome}      counter, sweep-item runs
 *   process_*, nodejs_*                             prom-client's default metrics
 *
 * The status gauge costs one `count(*) ... group by status` per scrape, bounded by
 * `queryTimeoutMs` (METRICS_QUERY_TIMEOUT): a hung database never hangs a scrape (Prometheus
 * gives up after its own scrape timeout, 10 s by default, and would record nothing at all). On a
 * timeout or error the gauge has no series and `previews_status_up` is 0; the query is not
 * started again while one is still in flight (a hung database is asked once, not once per scrape).
 */
import { Counter, Gauge, Histogram, collectDefaultMetrics, type Registry } from "prom-client";
import type { Logger } from "pino";
import type { ActionOutcome, LaunchOutcome, Metrics, PreviewCounts, SweepRunCounts } from "../functions/ports.js";
import { PREVIEW_STATUSES } from "../functions/lifecycle.js";
import { within } from "./timeout.js";

/** Launch durations: from a cached site's seconds to a first `npm install`'s minutes. */
export const LAUNCH_BUCKETS = [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600];

const LAUNCH_OUTCOMES: readonly LaunchOutcome[] = ["ready", "already_running", "superseded", "failed"];
const ACTION_OUTCOMES: readonly ActionOutcome[] = ["done", "noop", "superseded", "failed"];
/** What a sweep run's summary counts (functions/sweep-previews.ts `sweepRunCounts`). */
export const SWEEP_DECISIONS: readonly { pass: string; action: string }[] = [
  { pass: "expired", action: "remove" },
  { pass: "expired", action: "skip" },
  { pass: "orphans", action: "remove" },
  { pass: "orphans", action: "skip" },
  { pass: "reconcile", action: "correct" },
  { pass: "reconcile", action: "adopt" },
  { pass: "reconcile", action: "skip" },
  { pass: "idle", action: "stop" },
];
export const SWEEP_GUARDS: readonly string[] = ["orphans", "reconcile"];
/** sweep-item's outcomes per action (functions/sweep-item.ts): what it did, skip, or failed for good. */
export const SWEEP_ITEM_OUTCOMES: Readonly<Record<string, readonly string[]>> = {
  expire: ["removed", "skip", "failed"],
  orphan: ["removed", "skip", "failed"],
  correct: ["corrected", "skip", "failed"],
  adopt: ["adopted", "skip", "failed"],
};

export interface PromMetricsOptions {
  registry: Registry;
  /** Where `previews_by_status` is read from; absent: no such series. */
  counts?: PreviewCounts;
  /** METRICS_QUERY_TIMEOUT: the longest a scrape waits for the status counts. */
  queryTimeoutMs: number;
  /** Default process and Node.js metrics (off in unit tests that compare whole outputs). */
  processMetrics?: boolean;
  log?: Logger;
}

export class PromMetrics implements Metrics {
  readonly registry: Registry;
  readonly #launches: Counter<"outcome">;
  readonly #launchSeconds: Histogram;
  readonly #stops: Counter<"outcome">;
  readonly #removals: Counter<"outcome">;
  readonly #sweepRuns: Counter<"dry_run">;
  readonly #sweepDecisions: Counter<"pass" | "action">;
  readonly #sweepGuards: Counter<"pass">;
  readonly #sweepLast: Gauge;
  readonly #sweepItems: Counter<"action" | "outcome">;
  /** The status gauges and where they are read from (set at each `exposition()`). */
  readonly #status: { counts: PreviewCounts; timeoutMs: number; log: Logger | undefined; up: Gauge; byStatus: Gauge<"status"> } | null = null;
  /** The status read in flight, shared by concurrent scrapes. */
  #reading: Promise<Partial<Record<string, number>>> | null = null;

  constructor(opts: PromMetricsOptions) {
    const registers = [opts.registry];
    this.registry = opts.registry;
    this.#launches = new Counter({ name: "previews_launches_total", help: "launch-preview runs, by how they ended", labelNames: ["outcome"], registers });
    this.#launchSeconds = new Histogram({
      name: "previews_launch_duration_seconds",
      help: "Time from a launch claiming the preview (its container found or created) to its dev server answering HTTP, launches that ended ready",
      buckets: LAUNCH_BUCKETS,
      registers,
    });
    this.#stops = new Counter({ name: "previews_stops_total", help: "stop-preview runs, by how they ended", labelNames: ["outcome"], registers });
    this.#removals = new Counter({ name: "previews_removals_total", help: "remove-preview runs, by how they ended", labelNames: ["outcome"], registers });
    this.#sweepRuns = new Counter({ name: "previews_sweep_runs_total", help: "sweep-previews runs", labelNames: ["dry_run"], registers });
    this.#sweepDecisions = new Counter({
      name: "previews_sweep_decisions_total",
      help: "What real sweep runs decided, per pass and action (items dispatched, skips, idle stops)",
      labelNames: ["pass", "action"],
      registers,
    });
    this.#sweepGuards = new Counter({ name: "previews_sweep_guards_total", help: "Sweep passes skipped as a whole by a guard", labelNames: ["pass"], registers });
    this.#sweepLast = new Gauge({ name: "previews_sweep_last_run_timestamp_seconds", help: "When the last real (not dry) sweep run ended, unix seconds; 0 until one ended since this process started", registers });
    this.#sweepItems = new Counter({ name: "previews_sweep_items_total", help: "sweep-item runs, by action and outcome", labelNames: ["action", "outcome"], registers });
    // Every known label value from the start: a counter that never moved shows 0, so `rate()`
    // and alerts see the series before its first event.
    for (const outcome of LAUNCH_OUTCOMES) this.#launches.inc({ outcome }, 0);
    for (const outcome of ACTION_OUTCOMES) {
      this.#stops.inc({ outcome }, 0);
      this.#removals.inc({ outcome }, 0);
    }
    for (const dry_run of ["true", "false"]) this.#sweepRuns.inc({ dry_run }, 0);
    for (const labels of SWEEP_DECISIONS) this.#sweepDecisions.inc(labels, 0);
    for (const pass of SWEEP_GUARDS) this.#sweepGuards.inc({ pass }, 0);
    for (const [action, outcomes] of Object.entries(SWEEP_ITEM_OUTCOMES)) for (const outcome of outcomes) this.#sweepItems.inc({ action, outcome }, 0);
    // 0 = "no real run yet in this process": the README's alert rule falls back to
    // process_start_time_seconds then, so a restart neither fires it nor hides a sweep that stopped.
    this.#sweepLast.set(0);

    if (opts.counts) {
      this.#status = {
        counts: opts.counts,
        timeoutMs: opts.queryTimeoutMs,
        log: opts.log,
        up: new Gauge({ name: "previews_status_up", help: "1 when previews_by_status could be read from the database at this scrape, else 0", registers }),
        byStatus: new Gauge({
          name: "previews_by_status",
          help: "Previews tracked by this service, per status (read from the database at scrape time)",
          labelNames: ["status"],
          registers,
        }),
      };
    }
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: opts.registry });
  }

  launchFinished(outcome: LaunchOutcome, seconds: number | null): void {
    this.#launches.inc({ outcome });
    if (seconds !== null && Number.isFinite(seconds) && seconds >= 0) this.#launchSeconds.observe(seconds);
  }

  stopFinished(outcome: ActionOutcome): void {
    this.#stops.inc({ outcome });
  }

  removeFinished(outcome: ActionOutcome): void {
    this.#removals.inc({ outcome });
  }

  sweepFinished(counts: SweepRunCounts): void {
    this.#sweepRuns.inc({ dry_run: String(counts.dryRun) });
    // A dry run changed nothing: its decisions are not the system's, and it is not the sweep
    // the "last run" alert watches (POST /sweep?dryRun=1 must not hide a stopped cron).
    if (counts.dryRun) return;
    this.#sweepLast.setToCurrentTime();
    for (const { pass, action, count } of counts.decisions) this.#sweepDecisions.inc({ pass, action }, count);
    for (const pass of counts.guards) this.#sweepGuards.inc({ pass });
  }

  sweepItemFinished(action: string, outcome: string): void {
    this.#sweepItems.inc({ action, outcome });
  }

  /**
   * The Prometheus text exposition of everything in the registry, previews per status read
   * first (the one read from the database a scrape makes).
   */
  async exposition(): Promise<{ contentType: string; body: string }> {
    await this.#refreshStatus();
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** Reads previews per status (bounded) and sets both status gauges; without `counts`, nothing. */
  async #refreshStatus(): Promise<void> {
    const status = this.#status;
    if (!status) return;
    // Single flight: while a read hangs, later scrapes wait on it (bounded below), not anew.
    this.#reading ??= status.counts.countByStatus().finally(() => {
      this.#reading = null;
    });
    try {
      const byStatus = await within(this.#reading, status.timeoutMs, `no answer within ${status.timeoutMs}ms (METRICS_QUERY_TIMEOUT)`);
      status.byStatus.reset();
      for (const s of PREVIEW_STATUSES) status.byStatus.set({ status: s }, byStatus[s] ?? 0);
      status.up.set(1);
    } catch (err) {
      status.byStatus.reset();
      status.up.set(0);
      status.log?.warn({ err }, "metrics: previews per status could not be read; previews_by_status left out of this scrape");
    }
  }
}
