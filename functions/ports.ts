/**
 * What the workflow needs from the outside world. The functions in this folder depend only on
 * these interfaces (and on `lifecycle.ts`); `docker/`, `sql/` and `storage/` implement them, and
 * `runtime/` wires the implementations in. Every method takes an already-validated project id.
 * Errors: see `errors.ts` (`PermanentError` for what retrying will not change).
 */
import { createHash } from "node:crypto";
import type { LifecycleAction, PreviewStatus } from "./lifecycle.js";
import type { ProjectId } from "./project-id.js";

export type { LifecycleAction, PreviewStatus } from "./lifecycle.js";
export type { ProjectId } from "./project-id.js";
export { PermanentError, isPermanent } from "./errors.js";

// ---------------------------------------------------------------------------------------------
// Preview runtime (Docker)

export interface EnsuredContainer {
  containerId: string;
  running: boolean;
}

/** One bounded readiness probe. */
export type ProbeResult =
  /** The dev server answers HTTP (any status below 500). */
  | { state: "ready"; url: string; containerId: string }
  /** Still starting: probe again later. */
  | { state: "waiting" }
  /** It will not come up: the process exited, or the container is gone (`logTail` has its logs). */
  | { state: "down"; reason: string };

/**
 * A folder's `device:inode` in decimal: what a check saw, compared with what a container mounted
 * (the same directory whatever path or link led to it).
 */
export type FolderIdentity = string;

export type StartResult = { mount: "verified" } | { mount: "unverified"; reason: string };

// The container vanished between two verbs (see `PreviewRuntime.start`): the workflow decides.
export { ContainerGoneError } from "./errors.js";

export type StopOutcome = "stopped" | "already-stopped" | "absent";
export type RemoveOutcome = "removed" | "absent";

export interface PreviewRuntime {
  /**
   * Finds the project's container by name and creates it when absent. Idempotent: a concurrent
   * create that wins the name is waited for and adopted. Throws `PermanentError` when the name
   * belongs to a container this service does not manage.
   */
  ensureContainer(projectId: ProjectId): Promise<EnsuredContainer>;
  /**
   * Starts the container; already running is success. A container missing under its name (the
   * name maps to nothing, or to another container than the one found) throws
   * `ContainerGoneError`: this never creates one; the caller decides whether to. Then
   * checks that what the container mounted as its site is `site` (the identity `SiteFiles.check`
   * returned right before): a folder swapped while the engine resolved the mount path is a
   * `PermanentError`, and the container is killed at once. `mount` says whether that could be
   * verified (it needs a view of the container's processes; without it, see `reason`).
   */
  start(projectId: ProjectId, site: FolderIdentity): Promise<StartResult>;
  /**
   * Probes the dev server for at most `sliceMs`, or until `signal` aborts (shutdown), and says
   * where it stands. Only an unreachable engine throws; a preview that does not come up is a
   * result.
   */
  probeReady(projectId: ProjectId, sliceMs: number, signal?: AbortSignal): Promise<ProbeResult>;
  /** The last log lines of the project's container; "" when there is none (or it is not ours). */
  logTail(projectId: ProjectId): Promise<string>;
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
  /** The run that last took the preview (launch, stop, remove): see `Transition.claim`. */
  claim: string | null;
  /** When the preview was last used (forward-auth, heartbeat), as flushed; null when never. */
  lastActivityAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
  /** The last diagnosis stored (diagnose-preview); see `currentDiagnosis`. Absent: none. */
  diagnosis?: StoredDiagnosis | null;
}

/**
 * When a preview was last used, in ms since the epoch: its last recorded activity, or when it
 * became what it is (for a running row: ready), whichever is later. What idleness is measured
 * from (`track-idle`, the sweep's idle pass).
 */
export const lastUse = (row: Pick<PreviewRecord, "updatedAt" | "lastActivityAt">): number =>
  Math.max(row.updatedAt.getTime(), row.lastActivityAt?.getTime() ?? 0);

/**
 * What an action writes besides the status. `url`, `containerId` and `logTail` left undefined
 * keep their stored value; null clears it.
 */
export interface TransitionFields {
  reason: string;
  /**
   * The acting run (its Inngest run id). Recorded by actions that take the claim; compared by
   * actions that match it (they apply only while this run still holds the row).
   */
  claim?: string;
  url?: string | null;
  containerId?: string | null;
  logTail?: string | null;
}

export type ApplyResult =
  /** The table allowed it; `changed`: the status moved (and an audit event was appended). */
  | { applied: true; changed: boolean; row: PreviewRecord }
  /** Refused by the table: nothing was written; `row` is the current one (null: no row). */
  | { applied: false; row: PreviewRecord | null };

export interface PreviewStore {
  get(projectId: ProjectId): Promise<PreviewRecord | null>;
  list(): Promise<PreviewRecord[]>;
  /** The rows of these projects (those that exist), in one read: the sweep's expiry batches. */
  getMany(projectIds: readonly ProjectId[]): Promise<PreviewRecord[]>;
  /**
   * The sweep's expiry of many previews at once, as ONE statement: `expire` (see `lifecycle.ts`:
   * row stays `stopped`, its stop time kept, container id and URL cleared, `reason` recorded,
   * the claim taken by `claim`) applied to each preview whose row is still exactly as the sweep
   * read it before removing its container: status `stopped` and `updatedAt` unchanged. Any
   * write since (a launch's claim, a stop, a remove) refuses it: nothing is written for that
   * preview. A replay of an applied write is refused (its row moved) or changes nothing.
   * One result per write, in order, with the status the row had when refused.
   * `audit`: each write's outcome goes to the sweep's audit log (`SweepLog`) under that run, in
   * the same statement (so a removal is never recorded on the row without its audit entry, or
   * the reverse): `removed` with `auditReason` when applied, with `reason` and "row not recorded
   * (now <status>)" when refused.
   */
  expireMany(writes: readonly ExpireWrite[], claim: string, audit?: { runId: string }): Promise<ExpireResult[]>;
  /**
   * Applies a lifecycle action (see `lifecycle.ts`) as one compare-and-set and appends an audit
   * event when the status changes. Replaying an applied action leaves the row as it is and
   * appends nothing, so retried steps converge.
   */
  apply(projectId: ProjectId, action: LifecycleAction, fields: TransitionFields): Promise<ApplyResult>;
  /** Throws when the database cannot be reached (readiness probe). */
  ping(): Promise<void>;
}

/** One expiry of `PreviewStore.expireMany`. */
export interface ExpireWrite {
  projectId: ProjectId;
  reason: string;
  /** The row's `updatedAt` as read before the container was removed (its version). */
  readUpdatedAt: Date;
  /** The audit entry's reason when applied (default `reason`). */
  auditReason?: string;
}

export interface ExpireResult {
  projectId: ProjectId;
  applied: boolean;
  /** The row's status (when refused: the status that refused it; null: no row). */
  status: PreviewStatus | null;
}

// ---------------------------------------------------------------------------------------------
// Site files (local storage)

/** `folder`: the identity of the site folder that was checked (see `PreviewRuntime.start`). */
export type SiteCheck = { ok: true; folder: FolderIdentity } | { ok: false; reason: string };

export interface SiteFiles {
  /**
   * Checks the site folder exists and is a real directory inside storage, reached without
   * following a link, and says which directory it is.
   */
  check(projectId: ProjectId): Promise<SiteCheck>;
  /**
   * Makes the checked site folder (`folder`, from `check`; a folder replaced since is refused)
   * writable by the unprivileged preview user, so the preview can install dependencies and
   * build in it. Idempotent; never follows a link.
   */
  prepare(projectId: ProjectId, folder: FolderIdentity): Promise<void>;
  /** Deletes the project's site folder; a missing folder is success. */
  remove(projectId: ProjectId): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Activity and capacity (Postgres)

/** One project's latest use, as the host flushes it (in batches). */
export interface ActivityMark {
  projectId: ProjectId;
  at: Date;
}

export interface ActivityStore {
  /**
   * Records the latest use of each project in ONE statement (`last_activity_at` only moves
   * forward; a project without a preview row is skipped). Idempotent.
   */
  recordActivity(marks: readonly ActivityMark[]): Promise<void>;
  /** When the preview was last used; null when never (or there is no row). */
  lastActivity(projectId: ProjectId): Promise<Date | null>;
}

/** The answer of `CapacityStore.admit`. */
export type Admission =
  /** The preview holds capacity slot `slot` (taken now, or already held). */
  | { admitted: true; slot: number }
  /** Every slot is held: `victim` is the least recently active running preview (null: none is running yet). */
  | { admitted: false; full: true; victim: ProjectId | null; holders: number }
  /** The row is no longer this run's launch (`starting` with its claim): nothing was taken. */
  | { admitted: false; full: false; status: PreviewStatus | null };

export interface CapacityStore {
  /**
   * Takes a capacity slot (1..`max`) for a preview being launched by `claim`, as ONE statement
   * guarded by a unique constraint: concurrent admissions never hand out more than `max` slots.
   * Slots of previews that no longer hold a container (stopped, failed, removed) are released
   * on the way. Idempotent: a preview that holds a slot keeps it.
   */
  admit(projectId: ProjectId, claim: string, max: number): Promise<Admission>;
}

// ---------------------------------------------------------------------------------------------
// Sweep (sweep-previews, sweep-item)

/** One of this instance's preview containers, as the sweep sees it. */
export interface ManagedContainer {
  projectId: ProjectId;
  containerId: string;
  /** Docker's state: created, running, paused, restarting, removing, exited, dead. */
  state: string;
  /** True while the container runs (running, paused or restarting): never expired. */
  running: boolean;
  /** When the container was created (ms since the epoch): the grace period counts from it. */
  createdAt: number;
  /**
   * When it last stopped (ms since the epoch, Docker's `State.FinishedAt`); null while it runs,
   * if it never ran, or when read from a listing (only `inspect` has it).
   */
  finishedAt: number | null;
  /** Its URL while it runs (known from `inspect` only; port mode needs the published port). */
  url: string | null;
}

export type SweepRemoveOutcome =
  | "removed"
  /** No container by that name any more. */
  | "absent"
  /** The name now belongs to another container than the one checked: left alone. */
  | "replaced"
  /** It runs (again): an expiry never removes a running container. */
  | "running";

/**
 * The sweep's view of the engine. Only containers carrying the managed label AND this
 * instance's owner label (exact values) and named `preview-{their project id}` are ever
 * listed, inspected or removed; anything else is invisible to the sweep.
 */
export interface PreviewInventory {
  /** Every managed container of this instance, in one listing (no inspect per container). */
  list(): Promise<ManagedContainer[]>;
  /**
   * The project's container with its stop time and URL; null when there is none or it is not
   * this instance's (a foreign container under the name is never the sweep's business).
   */
  inspect(projectId: ProjectId): Promise<ManagedContainer | null>;
  /**
   * Removes the container `containerId` (which the caller found by `inspect` to be this
   * project's preview) unless it runs: no force, so a container started meanwhile stays, and a
   * container that replaced it under the name is another id and is never touched. Outcomes,
   * not errors, for the rest.
   *
   * `recorded`: the caller vouches that `containerId` is the id this service itself recorded on
   * the project's row (written only from containers it created or adopted under the project's
   * name with its labels): the ownership check by name is then skipped and the container is
   * removed by id, still without force; the engine's refusal (409: it runs, or a removal is in
   * progress) is classified by name as above. An id taken from an event alone is never `recorded`.
   */
  removeStopped(projectId: ProjectId, containerId: string, opts?: { recorded?: boolean }): Promise<SweepRemoveOutcome>;
}

/** What the project source said about a set of project ids. */
export interface ProjectLookup {
  /** Whether the source holds any (live) project at all: an empty answer is a guard, not a verdict. */
  anyProject: boolean;
  /** The asked ids that exist (and are not deleted). */
  existing: ProjectId[];
}

/**
 * The orchestrator's projects, read only: which projects exist. Every failure throws (the
 * sweep then skips what depends on it, loudly; it never reads a failure as "no projects").
 */
export interface ProjectDirectory {
  /** For messages: where the projects are read from (no credentials). */
  readonly source: string;
  lookup(projectIds: readonly ProjectId[]): Promise<ProjectLookup>;
}

export type SweepPass = "expired" | "orphans" | "reconcile" | "run";

/** One decision of the sweep, as the audit log keeps it. */
export interface SweepDecision {
  /** The sweep run that decided, or the item run that acted. */
  runId: string;
  pass: SweepPass;
  /** e.g. remove, removed, skip, guard, correct, corrected, adopt, adopted, failed, summary. */
  action: string;
  /** null for decisions about the whole pass (guards, summaries). */
  projectId: ProjectId | null;
  reason: string;
}

/**
 * The sweep's audit log (append-only). Recording the same decision of the same run twice (a
 * retried step) keeps one entry. A `skip` is not recorded after an outcome (removed, corrected,
 * adopted, failed) of the same run, pass and project: it is a retried step finding its own work
 * done (or overtaken since), which must not read as "did nothing".
 */
export interface SweepLog {
  record(decisions: readonly SweepDecision[]): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Failure diagnosis (issue 9: diagnose-preview). The model's answer is text for a person: it is
// stored and emitted, never parsed or acted upon.

/** What the model is asked: instructions (system) and the redacted failure (user content). */
export interface DiagnosisPrompt {
  system: string;
  prompt: string;
}

/**
 * Asks a language model why a preview failed. Throws `PermanentError` for what retrying will not
 * change (bad credentials, an unknown model, a refused request); anything else it throws
 * (overloaded, rate limited, timed out, unreachable) is retryable.
 */
export interface Diagnoser {
  /** For logs and the audit entry: which model answers. */
  readonly model: string;
  diagnose(request: DiagnosisPrompt): Promise<string>;
}

/**
 * The environment values of the project's container (e.g. its generated `PAYLOAD_SECRET`), read
 * to be redacted from its logs before they leave the step that read them; [] when there is no
 * container of ours. Values are secrets: never logged, never returned from a step.
 */
export interface ContainerSecrets {
  environmentValues(projectId: ProjectId): Promise<string[]>;
}

/** `diagnosed`: the model's answer; `unavailable`: no answer could be had (the text says why). */
export type DiagnosisState = "diagnosed" | "unavailable";

/** A diagnosis as stored on the preview, with the failure it explains (`failureKey`). */
export interface StoredDiagnosis {
  key: string;
  state: DiagnosisState;
  text: string;
  at: Date;
}

/**
 * The failure a diagnosis explains: the preview's failed row as recorded (the failing run's
 * claim, the reason and the log tail). Two deliveries of one `preview.failed` name the same
 * failure; a later failure of the project (a new run) is another, even with the same text.
 */
export function failureKey(row: Pick<PreviewRecord, "projectId" | "claim" | "reason" | "logTail">): string {
  return createHash("sha256")
    .update(JSON.stringify([row.projectId, row.claim, row.reason, row.logTail]))
    .digest("hex");
}

/** The diagnosis of the preview's current failure; null when it is not failed or has none yet. */
export function currentDiagnosis(row: PreviewRecord): StoredDiagnosis | null {
  const d = row.diagnosis;
  return row.status === "failed" && d && d.key === failureKey(row) ? d : null;
}

/** The failure a diagnosis is for, as the failed row records it. */
export type FailureOf = Pick<PreviewRecord, "claim" | "reason" | "logTail">;

export interface DiagnosisStore {
  /**
   * Stores the outcome on the preview (key `failureKey`) and appends it to the audit log
   * (`diagnosed` or `diagnosis-unavailable`), as ONE compare-and-set: only while the row is still
   * `failed` with exactly that failure (claim, reason, log tail), and never over a stored
   * `diagnosed` of the same failure (an `unavailable` may be replaced by a later answer).
   * `written`: this call wrote it. `recorded`: the row now holds exactly this outcome for this
   * failure (written now, or by an earlier try of the same step), so a replay converges.
   */
  recordDiagnosis(projectId: ProjectId, failure: FailureOf, outcome: { state: DiagnosisState; text: string }): Promise<{ recorded: boolean; written: boolean }>;
  /**
   * Takes one attempt at diagnosing the failure (one model request: the ask step and its
   * retries), as ONE compare-and-set: only while the row is still `failed` with exactly that
   * failure and fewer than `max` attempts were taken for it. Idempotent per `attemptId`: taken
   * again with the same id (a retried step) it is granted without counting twice. `attempts`:
   * the attempts counted for this failure (0 when none were).
   */
  takeDiagnosisAttempt(projectId: ProjectId, failure: FailureOf, attemptId: string, max: number): Promise<{ granted: boolean; attempts: number }>;
}

// Metrics (issue 10: GET /metrics). The workflow says what ended and how; `runtime/metrics.ts`
// turns it into Prometheus series. Every call is made once per run (see `functions/metrics.ts`:
// when the run returns, deduplicated by run id), never per step or per replay.

/** How a launch run ended. */
export type LaunchOutcome =
  /** It claimed the preview and the dev server answered: recorded `running`. */
  | "ready"
  /** The preview was already running and answering: nothing recorded, `preview.ready` again. */
  | "already_running"
  /** A stop, remove or newer launch took the preview meanwhile: nothing recorded. */
  | "superseded"
  /** The run failed for good (its failure handler ran). */
  | "failed";

/** How a stop or remove run ended. */
export type ActionOutcome =
  /** Recorded (`stopped` / `removed`) and announced. */
  | "done"
  /** Nothing to record: no preview, already stopped or removed (container and files still handled). */
  | "noop"
  /** A launch, stop or remove took the preview meanwhile: nothing recorded. */
  | "superseded"
  /** The run failed for good (its failure handler ran). */
  | "failed";

/** What one sweep run decided, per pass and action (a dry run is counted as a run only). */
export interface SweepRunCounts {
  dryRun: boolean;
  /** e.g. { pass: "expired", action: "remove", count: 3 }; zero counts may be left out. */
  decisions: readonly { pass: string; action: string; count: number }[];
  /** Passes skipped as a whole by a guard. */
  guards: readonly string[];
}

export interface Metrics {
  /** `seconds`: from the claim (container ensured) to the dev server answering; null when not measured (not `ready`). */
  launchFinished(outcome: LaunchOutcome, seconds: number | null): void;
  stopFinished(outcome: ActionOutcome): void;
  removeFinished(outcome: ActionOutcome): void;
  sweepFinished(counts: SweepRunCounts): void;
  /** One `sweep-item` run: its action (expire, orphan, correct, adopt) and outcome (removed, corrected, adopted, skip, failed). */
  sweepItemFinished(action: string, outcome: string): void;
}

/** Previews per status, read when metrics are scraped. */
export interface PreviewCounts {
  /** Statuses without a row may be left out. Throws when the database cannot answer. */
  countByStatus(): Promise<Partial<Record<PreviewStatus, number>>>;
}

// Object storage (issue 9): the project's files in an S3-compatible store (MinIO). Optional:
// without MINIO_* the local site folder is the only copy and none of this is wired in.

/** What `ProjectObjects.hydrate` did to the local site folder. */
export type Hydration =
  /** The store holds no site for the project: the local folder (if any) is used as it is. */
  | { outcome: "no-objects" }
  /** The local folder is what the store holds (its manifest of ETags matches): nothing downloaded. */
  | { outcome: "unchanged"; objects: number }
  /** Downloaded into a new folder and renamed into place; `replaced`: an older folder was there. */
  | { outcome: "downloaded"; objects: number; bytes: number; replaced: boolean };

export interface ProjectObjects {
  /** For messages and logs: where the objects are (no credentials). */
  readonly location: string;
  /**
   * Makes the local site folder what the store holds under `projects/{id}/site/`: when the folder
   * is missing, or its manifest of ETags differs from the listing, the site is downloaded into a
   * temporary folder beside it and renamed into place, so a half-downloaded site is never at the
   * site folder's path. Idempotent; an unchanged site downloads nothing. A key that would land
   * outside the site folder is a `PermanentError` (nothing is written); an unreachable store is
   * retryable (the site folder is left as it was).
   */
  hydrate(projectId: ProjectId): Promise<Hydration>;
  /** Deletes every object under `projects/{id}/`, however many; none left is success. */
  removeAll(projectId: ProjectId): Promise<{ removed: number }>;
  /**
   * Stores a removed container's last log as `projects/{id}/logs/{containerId}.log` (the same
   * key on a retry: idempotent). Returns the key.
   */
  archiveLog(projectId: ProjectId, containerId: string, log: string): Promise<{ key: string }>;
}

// ---------------------------------------------------------------------------------------------
// Strangers on the preview network (security review F2; README "Trusted peers: what is
// guaranteed"). Reported at start-up and in every sweep plan; never stopped, disconnected or
// removed: they are not this service's.

/** A container attached to the preview network that is neither a preview of this instance nor at a trusted peer's address. */
export interface NetworkStranger {
  containerId: string;
  /** Its name, without the leading "/". */
  name: string;
  /** Its IPv4 address on the preview network ("" when the engine reports none). */
  address: string;
}

export interface PreviewNetworkAudit {
  /** The network's name, for messages. */
  readonly network: string;
  /**
   * The strangers attached now; empty when the network does not exist (yet). Reads only.
   * `ours`: this instance's previews as the caller already listed them (the sweep plan has the
   * inventory's list); absent, the audit lists them itself.
   */
  strangers(ours?: readonly Pick<ManagedContainer, "containerId">[]): Promise<NetworkStranger[]>;
}

/** The warning about one stranger, as logs and the sweep's audit log put it. */
export const strangerWarning = (network: string, s: NetworkStranger): string =>
  `container ${s.name} (${s.containerId.slice(0, 12)}) at ${s.address || "no address"} is attached to the preview network ${network} ` +
  `but is neither a preview of this instance nor a trusted peer: with NET_RAW it can forge addresses on that bridge ` +
  `(ARP poisoning) and tamper with traffic between the router and previews; left alone (not ours): detach it or drop its NET_RAW`;
