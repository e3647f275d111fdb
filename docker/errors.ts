/**
 * The one place that decides whether a Docker failure is worth retrying, and that words it:
 * every error the adapter throws reads `docker: <action> <object> failed: <detail>`.
 *
 * Classification is by HTTP status only, never by message text: a 4xx answer (bad spec, missing
 * image, a conflict the caller did not expect) will be the same on the next attempt, so it is a
 * `PermanentError`; a 5xx answer or a transport failure (engine restarting, socket gone, timeout)
 * may not be. Statuses that are outcomes (304 already started/stopped, 404 gone, 409 name taken)
 * are handled by the callers before anything reaches `dockerError`.
 *
 * This module must not import the Inngest SDK: `functions/` maps `PermanentError` to Inngest's
 * `NonRetriableError` in one place.
 */
import { PermanentError } from "../functions/ports.js";

/** A Docker failure that retrying will not change. `status` is the engine's answer, if any. */
export class DockerPermanentError extends PermanentError {
  override name = "DockerPermanentError";
  readonly status: number | undefined;
  constructor(message: string, options: { cause?: unknown; status?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.status = options.status;
  }
}

/**
 * The name is held by a container this instance does not manage (missing or different
 * managed/owner/project-id labels). Permanent: it is never stopped, removed or adopted.
 */
export class ForeignContainerError extends DockerPermanentError {
  override name = "ForeignContainerError";
}

/** A Docker failure that may go away (5xx, transport). `status` is undefined for transport errors. */
export class DockerRetryableError extends Error {
  override name = "DockerRetryableError";
  readonly status: number | undefined;
  constructor(message: string, options: { cause?: unknown; status?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.status = options.status;
  }
}

/** The shape docker-modem gives its errors (only the fields read here). */
interface DockerApiError {
  statusCode?: unknown;
  json?: { message?: unknown } | null;
  message?: unknown;
}

/** The engine's HTTP status of a dockerode failure; undefined for transport errors. */
export function statusOf(err: unknown): number | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const status = (err as DockerApiError).statusCode;
  return typeof status === "number" ? status : undefined;
}

/** The engine's own message when it sent one (JSON body), else the error's message. */
export function detailOf(err: unknown): string {
  if (typeof err !== "object" || err === null) return String(err);
  const e = err as DockerApiError;
  const message = typeof e.json?.message === "string" ? e.json.message : String(e.message ?? err);
  const status = statusOf(err);
  return status === undefined ? message : `${status} ${message}`;
}

export const failureMessage = (action: string, object: string, detail: string): string => `docker: ${action} ${object} failed: ${detail}`;

/** True for statuses that will be the same on retry. */
export const isPermanentStatus = (status: number | undefined): boolean => status !== undefined && status >= 400 && status < 500;

/** Classifies a dockerode failure once: 4xx permanent, anything else retryable. */
export function dockerError(action: string, object: string, err: unknown): DockerPermanentError | DockerRetryableError {
  const status = statusOf(err);
  const message = failureMessage(action, object, detailOf(err));
  const options = { cause: err, ...(status === undefined ? {} : { status }) };
  return isPermanentStatus(status) ? new DockerPermanentError(message, options) : new DockerRetryableError(message, options);
}
