/**
 * One place that turns a dockerode failure into an error naming the action and the object, and
 * decides once whether Inngest should retry it. Statuses that are outcomes (304 already
 * started/stopped, 404 gone, 409 name taken) are handled by the callers before this.
 */
import { NonRetriableError } from "inngest";

export interface DockerApiError {
  statusCode?: number;
  reason?: string;
  code?: string;
  json?: { message?: string } | null;
  message: string;
}

export function statusOf(err: unknown): number | undefined {
  return typeof err === "object" && err !== null && "statusCode" in err ? (err as DockerApiError).statusCode : undefined;
}

function detail(err: unknown): string {
  if (typeof err !== "object" || err === null) return String(err);
  const e = err as DockerApiError;
  const message = e.json?.message ?? e.message;
  return e.statusCode ? `${e.statusCode} ${message}` : message;
}

/**
 * 4xx answers (bad spec, missing image, conflicts the caller did not expect) will not change on
 * retry; 5xx answers and transport errors (engine restarting, socket gone) may.
 */
export function dockerError(action: string, object: string, err: unknown): Error {
  const status = statusOf(err);
  const message = `docker: ${action} ${object} failed: ${detail(err)}`;
  if (status !== undefined && status >= 400 && status < 500) return new NonRetriableError(message, { cause: err });
  return new Error(message, { cause: err });
}
