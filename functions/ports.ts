/**
 * What the workflow needs from the outside world. The functions in this folder depend only on
 * these interfaces; `docker/`, `sql/` and `storage/` implement them, and `runtime/` wires the
 * implementations in. Every method takes an already-validated project id.
 */
import type { ProjectId } from "./project-id.js";

export const PREVIEW_STATUSES = [
  "starting",
  "running",
  "stopping",
  "stopped",
  "removing",
  "removed",
  "failed",
] as const;
export type PreviewStatus = (typeof PREVIEW_STATUSES)[number];

// ---------------------------------------------------------------------------------------------
// Preview runtime (Docker)

export interface EnsuredContainer {
  containerId: string;
  /** true when this call created it (false: found, or adopted after a concurrent create). */
  created: boolean;
  running: boolean;
}

export type ReadyResult =
  | { ready: true; url: string; containerId: string }
  | { ready: false; reason: string; logTail: string };

export type StopOutcome = "stopped" | "already-stopped" | "absent";
export type RemoveOutcome = "removed" | "absent";

export interface PreviewRuntime {
  /**
   * Finds the project's container by name and creates it when absent. Idempotent: a concurrent
   * create that wins the name is adopted. Throws a non-retriable error when the name belongs to
   * a container this service does not manage.
   */
  ensureContainer(projectId: ProjectId): Promise<EnsuredContainer>;
  /** Starts the container; already running is success. */
  start(projectId: ProjectId): Promise<void>;
  /**
   * Waits until the container answers HTTP (any status < 500), exits, or `timeoutMs` passes.
   * Only an unreachable Docker engine throws; a preview that does not come up is a result.
   */
  waitUntilReady(projectId: ProjectId, timeoutMs: number): Promise<ReadyResult>;
  /** Stops the container; a stopped or missing container is an outcome, not an error. */
  stop(projectId: ProjectId): Promise<StopOutcome>;
  /** Removes the container (stopping it first); a missing container is an outcome. */
  remove(projectId: ProjectId): Promise<RemoveOutcome>;
  /** Throws when the engine cannot be reached (readiness probe). */
  ping(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// State (Postgres)

export interface PreviewRecord {
  projectId: ProjectId;
  status: PreviewStatus;
  url: string | null;
  containerId: string | null;
  /** Why the last transition happened (failure reason for `failed`). */
  reason: string | null;
  /** Last container log lines, kept for `failed`. */
  logTail: string | null;
  /** When the preview was last stopped; null unless `status` is `stopped`. */
  stoppedAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

/**
 * A transition. `url`, `containerId` and `logTail` left undefined keep their stored value;
 * null clears it.
 */
export interface Transition {
  status: PreviewStatus;
  reason: string;
  url?: string | null;
  containerId?: string | null;
  logTail?: string | null;
}

export interface RecordOptions {
  /** Apply only to an existing row whose status is listed. */
  from?: readonly PreviewStatus[];
  /** Apply unless the row exists with one of these statuses (a missing row is created). */
  unless?: readonly PreviewStatus[];
}

export interface PreviewStore {
  get(projectId: ProjectId): Promise<PreviewRecord | null>;
  list(): Promise<PreviewRecord[]>;
  /**
   * Upserts the row and appends an audit event when the status changes. Replaying the same
   * transition leaves the row as it is and appends nothing, so retried steps converge.
   * The options make it a compare-and-set on the current status; when it does not apply,
   * nothing is written and null is returned.
   */
  record(projectId: ProjectId, transition: Transition, options?: RecordOptions): Promise<PreviewRecord | null>;
  /** Throws when the database cannot be reached (readiness probe). */
  ping(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Site files (local storage)

export type SiteCheck = { ok: true } | { ok: false; reason: string };

export interface SiteFiles {
  /** Checks the site folder exists and is a real directory (not a link out of storage). */
  check(projectId: ProjectId): Promise<SiteCheck>;
  /** Deletes the project's site folder; a missing folder is success. */
  remove(projectId: ProjectId): Promise<void>;
}
