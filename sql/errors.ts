/**
 * One place that decides whether a database failure is worth retrying.
 *
 * Rule: a failure that carries a SQLSTATE means the server understood the statement and refused
 * it; retrying the same statement gives the same answer (bad data, constraint, syntax, missing
 * table), so it becomes a `NonRetriableError` and the Inngest run stops. The exceptions are the
 * SQLSTATEs that describe the connection or the server's momentary state. A failure WITHOUT a
 * SQLSTATE never reached a verdict (refused/reset socket, timeout, pool closed, "Connection
 * terminated unexpectedly", WebSocket errors): it stays a plain `Error` so Inngest retries it.
 */
import { NonRetriableError } from "inngest";

const RETRYABLE_SQLSTATE_CLASSES = new Set([
  "08", // connection exception
  "53", // insufficient resources (too many connections, out of memory, disk full)
]);
const RETRYABLE_SQLSTATES = new Set([
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now (server starting up)
  "57P04", // database_dropped
  "57P05", // idle_session_timeout
  "57014", // query_canceled (statement_timeout)
  "55P03", // lock_not_available (lock_timeout)
  "40001", // serialization_failure
  "40P01", // deadlock_detected
]);

const SQLSTATE = /^[0-9A-Z]{5}$/;

/** The SQLSTATE of a driver error (pg, Neon and PGlite all expose it as `code`), if any. */
export function sqlState(err: unknown): string | undefined {
  const code = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  // Node's system errors also use `code` (ECONNREFUSED...), never five characters of [0-9A-Z].
  return typeof code === "string" && SQLSTATE.test(code) ? code : undefined;
}

export function isRetryableDatabaseError(err: unknown): boolean {
  const state = sqlState(err);
  if (state === undefined) return true;
  return RETRYABLE_SQLSTATE_CLASSES.has(state.slice(0, 2)) || RETRYABLE_SQLSTATES.has(state);
}

/**
 * Wraps a driver error as `database: <action> failed: <message>`, keeping it as `cause`.
 * Retryable failures stay plain `Error`s; the rest become `NonRetriableError`.
 */
export function databaseError(action: string, err: unknown): Error {
  const message = `database: ${action} failed: ${describe(err)}`;
  return isRetryableDatabaseError(err) ? new Error(message, { cause: err }) : new NonRetriableError(message, { cause: err });
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) {
    // The Neon driver rejects with the WebSocket's ErrorEvent ({ message, error }) when its
    // proxy cannot be reached.
    const event = err as { error?: unknown; message?: unknown } | null;
    if (event?.error instanceof Error) return describe(event.error);
    return typeof event?.message === "string" && event.message ? event.message : String(err);
  }
  // Node reports a refused dual-stack connect as an AggregateError with an empty message.
  if (!err.message && err instanceof AggregateError) return err.errors.map(describe).join("; ") || err.name;
  const state = sqlState(err);
  return state ? `${err.message} (SQLSTATE ${state})` : err.message || (err as { code?: string }).code || err.name;
}
