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
 *
 * Retryable failures become `DatabaseUnavailableError`s: the database is momentarily out (down,
 * hung, timed out, not migrated yet, busy). The HTTP host answers 503 for them, reading a marker
 * on the error rather than importing this module.
 */
import { PermanentError } from "../functions/ports.js";
import type { Database, QueryOptions } from "./database.js";

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
 * A failure retrying may fix: the database is momentarily unavailable (unreachable, hung, timed
 * out, not migrated yet, busy). A plain `Error` subclass, not a `PermanentError`, so the functions
 * retry it.
 *
 * `unavailable` (the dependency's name) and `publicReason` are a marker for the HTTP host, which
 * answers 503 `{ error: "database unavailable: <publicReason>" }` without importing this adapter.
 * `publicReason` is the action and the kind of failure, never the driver's text (which can carry
 * host names and ports); the full message is for logs.
 */
export class DatabaseUnavailableError extends Error {
  override name = "DatabaseUnavailableError";
  readonly unavailable = "database";
  constructor(
    message: string,
    /** e.g. `list previews failed: no answer within 10s (DATABASE_TIMEOUT)`. */
    readonly publicReason: string,
    options: { cause: unknown },
  ) {
    super(message, options);
  }
}

/**
 * The server did not answer within `DatabaseSettings.timeoutMs`: what the drivers' own timeout
 * errors (pg's "Query read timeout", the pool's connection timeouts, the server's
 * statement_timeout cancel) become, worded to say which limit was hit. Retryable (no SQLSTATE).
 */
export class DatabaseTimeoutError extends Error {
  override name = "DatabaseTimeoutError";
  constructor(
    message: string,
    readonly timeoutMs: number,
    options: { cause: unknown },
  ) {
    super(message, options);
  }
}

/** Migrations have not been applied yet (the database was down or hung at start-up). Retryable. */
export class DatabaseNotReadyError extends Error {
  override name = "DatabaseNotReadyError";
}

/** 1000 -> "1s", 10500 -> "10.5s", 500 -> "500ms". */
const duration = (ms: number) => (ms >= 1000 && ms % 100 === 0 ? `${ms / 1000}s` : `${ms}ms`);

/**
 * `err` as a `DatabaseTimeoutError` when it is one of the drivers' timeouts (pg and Neon share
 * node-postgres' wording), else undefined.
 */
export function asTimeout(err: unknown, limits: { timeoutMs: number; queryTimeoutMs: number }): DatabaseTimeoutError | undefined {
  if (err instanceof DatabaseTimeoutError) return err;
  const { timeoutMs, queryTimeoutMs } = limits;
  // The driver's own errors carry no SQLSTATE; the server's do.
  const state = sqlState(err);
  const message = err instanceof Error ? err.message : "";
  const clientMessage = state === undefined ? message : "";
  const limit = `${duration(timeoutMs)} (DATABASE_TIMEOUT)`;
  // node-postgres' client-side query_timeout: the only limit that ends a wait on a hung server.
  if (clientMessage === "Query read timeout") {
    const grace = queryTimeoutMs > timeoutMs ? ` + ${duration(queryTimeoutMs - timeoutMs)} grace` : "";
    return new DatabaseTimeoutError(`no answer within ${duration(queryTimeoutMs)} (DATABASE_TIMEOUT ${duration(timeoutMs)}${grace}); the server may be hung`, timeoutMs, {
      cause: err,
    });
  }
  // pg-pool's connectionTimeoutMillis: a new connection not established in time, or no pooled one free.
  if (clientMessage === "Connection terminated due to connection timeout" || clientMessage === "timeout exceeded when trying to connect") {
    return new DatabaseTimeoutError(`no connection within ${limit}`, timeoutMs, { cause: err });
  }
  // The server's statement_timeout cancelled a statement that ran too long.
  if (state === "57014" && /statement timeout/i.test(message)) {
    return new DatabaseTimeoutError(`statement cancelled by the server after ${limit} (SQLSTATE 57014)`, timeoutMs, { cause: err });
  }
  return undefined;
}

/**
 * Wraps a driver error as `database: <action> failed: <message>`, keeping it as `cause`.
 * Retryable failures become `DatabaseUnavailableError`s; the rest `PermanentDatabaseError`s.
 */
export function databaseError(action: string, err: unknown): Error {
  const message = `database: ${action} failed: ${describe(err)}`;
  if (isRetryableDatabaseError(err)) return new DatabaseUnavailableError(message, `${action} failed: ${publicKind(err)}`, { cause: err });
  // Not retryable implies a SQLSTATE (see isRetryableDatabaseError).
  return new PermanentDatabaseError(message, sqlState(err)!, { cause: err });
}

/** What kind of retryable failure `err` is, in words that reveal nothing about the deployment. */
function publicKind(err: unknown): string {
  if (err instanceof DatabaseTimeoutError) return err.message;
  if (err instanceof DatabaseNotReadyError) return "not ready yet (migrations not applied)";
  const state = sqlState(err);
  if (state === undefined || state.startsWith("08") || state.startsWith("57P")) return "cannot reach the server";
  return "the server is busy";
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

/** Runs one statement; a failure is wrapped (and classified) once, with `action` in its message. */
export async function queryAs<T extends Record<string, unknown>>(db: Database, action: string, text: string, params?: unknown[], options?: QueryOptions): Promise<T[]> {
  try {
    return await db.query<T>(text, params, options);
  } catch (err) {
    throw databaseError(action, err);
  }
}
