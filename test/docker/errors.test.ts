/**
 * Pure unit tests (no engine) of how Docker failures are classified and worded: by status only,
 * 4xx permanent, 5xx and transport retryable, always `docker: <action> <object> failed: ...`.
 */
import { describe, expect, it } from "vitest";
import {
  DockerPermanentError,
  DockerRetryableError,
  ForeignContainerError,
  detailOf,
  dockerError,
  failureMessage,
  isPermanentStatus,
  statusOf,
} from "../../docker/errors.js";
import { PermanentError, isPermanent } from "../../functions/ports.js";
import { InvalidProjectIdError, assertProjectId } from "../../functions/project-id.js";

/** What docker-modem rejects with for an HTTP error answer. */
function apiError(statusCode: number, message: string): Error & { statusCode: number; json: { message: string } } {
  return Object.assign(new Error(`(HTTP code ${statusCode}) unexpected - ${message}`), { statusCode, json: { message } });
}

describe("statusOf / detailOf", () => {
  it("reads the engine's status and message", () => {
    const err = apiError(404, "No such container: preview-a");
    expect(statusOf(err)).toBe(404);
    expect(detailOf(err)).toBe("404 No such container: preview-a");
  });

  it("has no status for transport errors, and uses their message", () => {
    const err = Object.assign(new Error("connect ENOENT /var/run/docker.sock"), { code: "ENOENT" });
    expect(statusOf(err)).toBeUndefined();
    expect(detailOf(err)).toBe("connect ENOENT /var/run/docker.sock");
  });

  it("ignores a non-numeric statusCode and non-objects", () => {
    expect(statusOf({ statusCode: "404" })).toBeUndefined();
    expect(statusOf(null)).toBeUndefined();
    expect(statusOf("boom")).toBeUndefined();
    expect(detailOf("boom")).toBe("boom");
  });

  it("falls back to the error message when the body was not JSON (304 gives an empty Buffer)", () => {
    const err = Object.assign(new Error("(HTTP code 304) container already started"), { statusCode: 304, json: null });
    expect(detailOf(err)).toBe("304 (HTTP code 304) container already started");
  });
});

describe("dockerError", () => {
  it.each([400, 403, 404, 409, 499])("makes %i permanent, naming action and object", (status) => {
    const err = dockerError("create", "container preview-a", apiError(status, "nope"));
    expect(err).toBeInstanceOf(DockerPermanentError);
    expect(err).toBeInstanceOf(PermanentError);
    expect(isPermanent(err)).toBe(true);
    expect(err.message).toBe(`docker: create container preview-a failed: ${status} nope`);
    expect(err.status).toBe(status);
  });

  it.each([500, 502, 503])("makes %i retryable", (status) => {
    const cause = apiError(status, "server error");
    const err = dockerError("start", "container preview-a", cause);
    expect(err).toBeInstanceOf(DockerRetryableError);
    expect(isPermanent(err)).toBe(false);
    expect(err.message).toBe(`docker: start container preview-a failed: ${status} server error`);
    expect(err.cause).toBe(cause);
  });

  it("makes transport failures retryable", () => {
    const err = dockerError("ping", "engine", Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }));
    expect(err).toBeInstanceOf(DockerRetryableError);
    expect(err.status).toBeUndefined();
    expect(err.message).toBe("docker: ping engine failed: socket hang up");
  });

  it("decides by status only, never by message text", () => {
    // A message that mentions a network says nothing about what went wrong.
    expect(dockerError("create", "container x", apiError(500, "network not found"))).toBeInstanceOf(DockerRetryableError);
    expect(dockerError("create", "container x", apiError(404, "temporarily unavailable"))).toBeInstanceOf(DockerPermanentError);
    expect(isPermanentStatus(304)).toBe(false);
    expect(isPermanentStatus(undefined)).toBe(false);
  });
});

describe("error classes", () => {
  it("a foreign container is a permanent Docker failure", () => {
    const err = new ForeignContainerError(failureMessage("stop", "container preview-a", "not ours"));
    expect(err).toBeInstanceOf(DockerPermanentError);
    expect(isPermanent(err)).toBe(true);
    expect(err.name).toBe("ForeignContainerError");
    expect(err.message).toBe("docker: stop container preview-a failed: not ours");
  });

  it("an invalid project id is permanent", () => {
    const err = (() => {
      try {
        return assertProjectId("../etc");
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(InvalidProjectIdError);
    expect(isPermanent(err)).toBe(true);
  });
});
