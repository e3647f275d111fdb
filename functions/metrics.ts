/**
 * Counting a run's outcome exactly once (GET /metrics, issue 10).
 *
 * Inngest replays a handler from the top for every step: the steps already done are memoized and
 * their code does not run again, but everything between them does. A counter bumped in the
 * handler body would count once per step. So outcomes are counted only where a run ENDS: at a
 * `return` of the handler, which runs only once every step before it is memoized, i.e. in the
 * call request whose answer completes the run; failures in the failure handler, which is a run
 * of its own triggered once per failed run.
 *
 * That last request can still be executed twice: Inngest retries a call request whose answer it
 * did not get (a timeout, a connection closed at shutdown), and a retried step replays the code
 * after it. So every count goes through `countOnce` with a key naming the run: a key seen before
 * is not counted again. The memory is per process and bounded (the last RUNS_REMEMBERED keys):
 * a retry that lands on another instance after this one died counts there too (Prometheus
 * counters restart with the process anyway, and `rate()` absorbs such a reset).
 */
import type { Metrics } from "./ports.js";

/** Run keys remembered per `Metrics` (the oldest forgotten first). */
export const RUNS_REMEMBERED = 10_000;

const seen = new WeakMap<Metrics, Set<string>>();

/**
 * Calls `record` with `metrics` unless `key` (a run id, prefixed with what is counted) was
 * counted before with the same `metrics`. No metrics: nothing to do.
 */
export function countOnce(metrics: Metrics | undefined, key: string, record: (m: Metrics) => void): void {
  if (!metrics) return;
  let keys = seen.get(metrics);
  if (!keys) seen.set(metrics, (keys = new Set()));
  if (keys.has(key)) return;
  keys.add(key);
  if (keys.size > RUNS_REMEMBERED) keys.delete(keys.values().next().value!);
  try {
    record(metrics);
  } catch {
    // Metrics are diagnostics: a failing counter must never fail a run that did its work.
  }
}
