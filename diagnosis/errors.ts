/**
 * Errors of the Anthropic Messages API, classified once for this adapter (as docker/errors.ts and
 * sql/errors.ts do for theirs): retrying helps when the service is overloaded (529), rate limited
 * (429), failing (5xx), slow (timeout, 408) or unreachable; it does not for bad credentials (401),
 * a missing permission or payment (402, 403), an unknown model (404) or a refused request (400,
 * 413, 422): those are `PermanentError`s. Messages name the action and what answered, never the key.
 */
import Anthropic from "@anthropic-ai/sdk";
import { PermanentError } from "../functions/ports.js";

export class ClaudePermanentError extends PermanentError {
  override name = "ClaudePermanentError";
  constructor(
    message: string,
    readonly status: number | null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export class ClaudeRetryableError extends Error {
  override name = "ClaudeRetryableError";
  constructor(
    message: string,
    readonly status: number | null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Statuses worth another attempt. */
export const retryableStatus = (status: number): boolean => status === 408 || status === 409 || status === 429 || status === 499 || status >= 500;

/** The API's own `{ error: { type, message } }`, shortened; never headers (they carry no key either). */
function detail(err: InstanceType<typeof Anthropic.APIError>): string {
  const body = err.error as { error?: { type?: unknown; message?: unknown } } | undefined;
  const type = typeof body?.error?.type === "string" ? body.error.type : "";
  const message = typeof body?.error?.message === "string" ? body.error.message : "";
  const text = [type, message].filter(Boolean).join(": ") || err.message;
  return text.length > 200 ? `${text.slice(0, 199)}…` : text;
}

/** Wraps what the SDK threw as `action` failed, classified. */
export function claudeError(action: string, err: unknown, timeoutMs: number): ClaudePermanentError | ClaudeRetryableError {
  if (err instanceof Anthropic.APIConnectionTimeoutError) {
    return new ClaudeRetryableError(`anthropic: ${action} failed: no answer within ${timeoutMs}ms (ANTHROPIC_TIMEOUT)`, null, { cause: err });
  }
  if (err instanceof Anthropic.APIConnectionError || err instanceof Anthropic.APIUserAbortError) {
    return new ClaudeRetryableError(`anthropic: ${action} failed: ${err.message || "connection error"}`, null, { cause: err });
  }
  if (err instanceof Anthropic.APIError && typeof err.status === "number") {
    const message = `anthropic: ${action} failed: ${err.status} ${detail(err)}`;
    return retryableStatus(err.status) ? new ClaudeRetryableError(message, err.status, { cause: err }) : new ClaudePermanentError(message, err.status, { cause: err });
  }
  const text = err instanceof Error ? err.message : String(err);
  return new ClaudeRetryableError(`anthropic: ${action} failed: ${text}`, null, { cause: err });
}
