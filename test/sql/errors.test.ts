/** Pure: how database failures are classified and worded. No database, no driver. */
import { describe, expect, it } from "vitest";
import { isPermanent, PermanentError } from "../../functions/ports.js";
import {
  asTimeout,
  databaseError,
  DatabaseNotReadyError,
  DatabaseTimeoutError,
  DatabaseUnavailableError,
  isRetryableDatabaseError,
  PermanentDatabaseError,
  sqlState,
} from "../../sql/errors.js";

/** What the drivers throw for a server's ErrorResponse: `code` (SQLSTATE) and `severity`. */
const serverError = (code: string, message = "x") => Object.assign(new Error(message), { code, severity: "ERROR" });
/** A Node system error (or anything else carrying a `code`). */
const withCode = (code: unknown, message = "x") => Object.assign(new Error(message), { code });

describe("classification", () => {
  it.each(["08006", "08001", "08P01", "53300", "53100", "57P01", "57P02", "57P03", "57P04", "57P05", "57014", "55P03", "40001", "40P01"])(
    "SQLSTATE %s is retryable",
    (code) => {
      expect(isRetryableDatabaseError(serverError(code))).toBe(true);
    },
  );
  it.each(["23505", "23514", "22P02", "42P01", "42601", "42501", "28P01", "3D000", "57000", "55000"])("SQLSTATE %s is not", (code) => {
    expect(isRetryableDatabaseError(serverError(code))).toBe(false);
  });
  // EPIPE, EPERM, EBUSY: five capitals, like a SQLSTATE, but not from the server.
  it.each(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EPERM", "EBUSY", undefined, 42, "23505"])(
    "no SQLSTATE from the server (code %s) is retryable",
    (code) => {
      expect(isRetryableDatabaseError(withCode(code, "Connection terminated unexpectedly"))).toBe(true);
    },
  );
  it("reads the SQLSTATE only from a server error's five-character code", () => {
    expect(sqlState(serverError("23505"))).toBe("23505");
    expect(sqlState(serverError("2350"))).toBeUndefined();
    expect(sqlState(serverError("23505x"))).toBeUndefined();
    expect(sqlState(Object.assign(new Error("write EPIPE"), { code: "EPIPE", errno: -32, syscall: "write" }))).toBeUndefined();
    expect(sqlState("23505")).toBeUndefined();
    expect(sqlState(null)).toBeUndefined();
  });
});

describe("databaseError", () => {
  it("a refused statement becomes a PermanentError naming the action, with the cause and its SQLSTATE", () => {
    const cause = serverError("42P01", 'relation "x" does not exist');
    const err = databaseError('get project "abc"', cause);
    expect(err).toBeInstanceOf(PermanentDatabaseError);
    expect(err).toBeInstanceOf(PermanentError);
    expect(isPermanent(err)).toBe(true);
    expect(err).toMatchObject({ name: "PermanentDatabaseError", sqlState: "42P01" });
    expect(err.message).toBe('database: get project "abc" failed: relation "x" does not exist (SQLSTATE 42P01)');
    expect(err.cause).toBe(cause);
  });

  it("a retryable failure is a DatabaseUnavailableError (not permanent), marked for the host without internals", () => {
    const cause = withCode("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:1");
    const err = databaseError("ping", cause);
    expect(err).toBeInstanceOf(DatabaseUnavailableError);
    expect(err).not.toBeInstanceOf(PermanentError);
    expect(isPermanent(err)).toBe(false);
    expect(err.message).toBe("database: ping failed: connect ECONNREFUSED 127.0.0.1:1");
    expect(err.cause).toBe(cause);
    // What runtime/app.ts reads: the dependency's name and a reason without the address.
    expect(err).toMatchObject({ unavailable: "database", publicReason: "ping failed: cannot reach the server" });
    expect(databaseError("ping", serverError("40P01", "deadlock detected"))).toMatchObject({ publicReason: "ping failed: the server is busy" });

    const terminated = databaseError("ping", serverError("57P01", "terminating connection due to administrator command"));
    expect(isPermanent(terminated)).toBe(false);
    expect(terminated.message).toBe("database: ping failed: terminating connection due to administrator command (SQLSTATE 57P01)");
  });

  it("describes the shapes drivers reject with", () => {
    // Node: a refused dual-stack connect is an AggregateError with an empty message.
    const aggregate = new AggregateError([withCode("ECONNREFUSED", "connect ECONNREFUSED ::1:5432"), withCode("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:5432")], "");
    expect(databaseError("ping", aggregate).message).toBe("database: ping failed: connect ECONNREFUSED ::1:5432; connect ECONNREFUSED 127.0.0.1:5432");
    // Neon: the WebSocket's ErrorEvent, which is not an Error.
    expect(databaseError("ping", { message: "", error: new Error("connect ECONNREFUSED 127.0.0.1:9") }).message).toBe(
      "database: ping failed: connect ECONNREFUSED 127.0.0.1:9",
    );
    expect(databaseError("ping", { message: "socket hang up" }).message).toBe("database: ping failed: socket hang up");
    // An error with neither message nor SQLSTATE: its code, else its name.
    expect(databaseError("ping", withCode("ECONNRESET", "")).message).toBe("database: ping failed: ECONNRESET");
    expect(databaseError("ping", "boom").message).toBe("database: ping failed: boom");
  });
});

describe("timeouts", () => {
  const limits = { timeoutMs: 1_000, queryTimeoutMs: 1_500 };

  it("node-postgres' query_timeout (a hung server) becomes a retryable error naming the action, the object and the limit", () => {
    const cause = new Error("Query read timeout");
    const timeout = asTimeout(cause, limits);
    expect(timeout).toBeInstanceOf(DatabaseTimeoutError);
    expect(timeout).toMatchObject({ timeoutMs: 1_000, cause });
    const err = databaseError('get project "abc"', timeout);
    expect(isRetryableDatabaseError(timeout)).toBe(true);
    expect(err).toBeInstanceOf(DatabaseUnavailableError);
    expect(isPermanent(err)).toBe(false);
    expect(err.message).toBe('database: get project "abc" failed: no answer within 1.5s (DATABASE_TIMEOUT 1s + 500ms grace); the server may be hung');
    expect(err).toMatchObject({
      unavailable: "database",
      publicReason: 'get project "abc" failed: no answer within 1.5s (DATABASE_TIMEOUT 1s + 500ms grace); the server may be hung',
    });
  });

  it("the pool's connection timeouts say no connection within the limit", () => {
    for (const message of ["Connection terminated due to connection timeout", "timeout exceeded when trying to connect"]) {
      const err = databaseError("list previews", asTimeout(new Error(message), { timeoutMs: 10_000, queryTimeoutMs: 10_500 }));
      expect(err).toBeInstanceOf(DatabaseUnavailableError);
      expect(err.message).toBe("database: list previews failed: no connection within 10s (DATABASE_TIMEOUT)");
    }
  });

  it("the server's statement_timeout (57014) is retryable and names the limit", () => {
    const cause = serverError("57014", "canceling statement due to statement timeout");
    expect(isRetryableDatabaseError(cause)).toBe(true);
    const err = databaseError("ping", asTimeout(cause, { timeoutMs: 250, queryTimeoutMs: 750 }));
    expect(isPermanent(err)).toBe(false);
    expect(err.message).toBe("database: ping failed: statement cancelled by the server after 250ms (DATABASE_TIMEOUT) (SQLSTATE 57014)");
  });

  it("leaves other errors alone (a cancel on request is not a timeout)", () => {
    expect(asTimeout(serverError("57014", "canceling statement due to user request"), limits)).toBeUndefined();
    expect(asTimeout(withCode("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:1"), limits)).toBeUndefined();
    expect(asTimeout(serverError("42P01", "Query read timeout"), limits)).toBeUndefined();
    expect(asTimeout("Query read timeout", limits)).toBeUndefined();
  });

  it("not migrated yet is retryable, and says so without internals", () => {
    const err = databaseError("list previews", new DatabaseNotReadyError("not ready: migrations not applied yet (attempt 2 failed: connect ECONNREFUSED 10.0.0.5:5432)"));
    expect(err).toBeInstanceOf(DatabaseUnavailableError);
    expect(err.message).toContain("ECONNREFUSED 10.0.0.5:5432");
    expect(err).toMatchObject({ publicReason: "list previews failed: not ready yet (migrations not applied)" });
  });
});
