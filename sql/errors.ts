/**
 * One place that decides whether a database failure is worth retrying.
 *
 * Rule: a failure that carries a SQLSTATE means the server understood the statement and refused
 * it; retrying the same statement gives the same answer (bad data, constraint, syntax, missing
 * table), so it becomes a `PermanentError` (functions/errors.ts), which the functions turn into a
 * run that stops. The exceptions are the SQLSTATEs that describe the connection or the server's
 * momentary state. A failure WITHOUT a SQLSTATE never reached a verdict (refused/reset socket,
 * timeout, pool closed, "Connection terminated unexpectedly", WebSocket errors): it stays a plain
 * `Error` so it is retried. No Inngest import here: mapping to Inngest's errors is functions/'s job.
 */
import { PermanentError } from "../functions/ports.js";

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

/**
 * The SQLSTATE of an error the server sent (an ErrorResponse), if it is one. pg, Neon and PGlite
 * all parse it into `code` next to `severity`. Node's system errors also use `code`, and some
 * are five capitals too (EPIPE, EPERM, EBUSY): the `severity` field is what tells them apart.
 */
export function sqlState(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const { code, severity } = err as { code?: unknown; severity?: unknown };
  return typeof code === "string" && SQLSTATE.test(code) && typeof severity === "string" ? code : undefined;
}

export function isRetryableDatabaseError(err: unknown): boolean {
  const state = sqlState(err);
  if (state === undefined) return true;
  return RETRYABLE_SQLSTATE_CLASSES.has(state.slice(0, 2)) || RETRYABLE_SQLSTATES.has(state);
}

/** A statement the server refused for a reason retrying will not change. */
export class PermanentDatabaseError extends PermanentError {
  override name = "PermanentDatabaseError";
  constructor(
    message: string,
    /** The server's verdict, e.g. 23514 (check violation), 42P01 (undefined table). */
    readonly sqlState: string,
    options: { cause: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Wraps a driver error as `database: <action> failed: <message>`, keeping it as `cause`.
 * Retryable failures stay plain `Error`s; the rest become `PermanentDatabaseError`s.
 */
export function databaseError(action: string, err: unknown): Error {
  const message = `database: ${action} failed: ${describe(err)}`;
  if (isRetryableDatabaseError(err)) return new Error(message, { cause: err });
  // Not retryable implies a SQLSTATE (see isRetryableDatabaseError).
  return new PermanentDatabaseError(message, sqlState(err)!, { cause: err });
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
