/**
 * The lifecycle of a preview, in one table: every status, every action, and which transitions
 * each action may make. This is the only place these rules live. The store applies an action by
 * name as ONE compare-and-set (the row moves to `to` only when its current status is in `from`);
 * the functions emit their event only when their write applied.
 *
 * `null` in `from` stands for "no row yet": only `launch` creates a row.
 *
 * Rules that shape the table:
 *   - replays converge: every action may be applied again on its own target (`ready` on
 *     `running`, `stopped` on `stopped`, ...), so a retried step or a duplicate event changes
 *     nothing and is still *applied*;
 *   - a launch never overwrites a stop or remove that came after it: `ready` and `fail` only
 *     apply while the launch's own status (`starting`) stands, and the failures (`fail`,
 *     `stopFailed`, `removeFailed`) only while the failing run still holds the row's claim (see
 *     `Transition.claim`): a failure handler runs outside the per-project concurrency key, after
 *     a newer run may have taken the preview over;
 *   - no status blocks a project forever: `launch` and `remove` make progress from every status
 *     except while a remove is under way (`removing`), and a stop or remove that fails for good
 *     leaves `stopping`/`removing` through `stopFailed`/`removeFailed` (each only from its own
 *     claim, so the failure of one never overwrites another action under way);
 *   - the sweep (`sweep-previews`, `sweep-item`) writes through the same table: `expire` (a
 *     stopped preview's container removed after STOPPED_RETENTION; the row stays `stopped`),
 *     `reconcile` (a row saying starting/running whose container is gone or exited is corrected
 *     to `stopped`), `adopt` / `adoptStopped` (a managed container without a row whose project
 *     exists gets one), and `remove`/`removed` for orphans, as `remove-preview` does. Each takes
 *     the acting run's claim, so a run it overtook records nothing afterwards.
 */

export const PREVIEW_STATUSES = ["starting", "running", "stopping", "stopped", "removing", "removed", "failed"] as const;
export type PreviewStatus = (typeof PREVIEW_STATUSES)[number];

export interface Transition {
  /** Status after the action. */
  readonly to: PreviewStatus;
  /** Statuses the action applies from; `null`: no row yet. */
  readonly from: readonly (PreviewStatus | null)[];
  /**
   * `take`: the acting run becomes the row's claim (it owns the preview until another run takes
   * it). `match`: the action applies only while the acting run still holds the claim. Every
   * action that ends a run's work (`ready`, `stopped`, `removed`, and the failures) matches, so a
   * run overtaken by a newer launch, stop or remove of the same project (or a duplicate of
   * itself) records and emits nothing, and a failure handler records only the failure of the run
   * that owns the preview.
   */
  readonly claim: "take" | "match";
}

export const LIFECYCLE = {
  /** A launch claims the preview (everything but a remove under way). */
  launch: {
    to: "starting",
    from: [null, "starting", "running", "stopping", "stopped", "failed", "removed"],
    claim: "take",
  },
  /** The launch's container answers HTTP. */
  ready: {
    to: "running",
    from: ["starting", "running"],
    claim: "match",
  },
  /** The launch failed for good (never over a stop, remove or launch that came after it). */
  fail: {
    to: "failed",
    from: ["starting", "running", "failed"],
    claim: "match",
  },
  /** A stop begins (idle or closed); a failed preview keeps its failure (its container is stopped anyway). */
  stop: {
    to: "stopping",
    from: ["starting", "running", "stopping"],
    claim: "take",
  },
  /** The container is stopped; the stop time is kept across replays. */
  stopped: {
    to: "stopped",
    from: ["stopping", "stopped"],
    claim: "match",
  },
  /** A remove begins (project deleted); no row is created for a project without a preview. */
  remove: {
    to: "removing",
    from: ["starting", "running", "stopping", "stopped", "failed", "removing"],
    claim: "take",
  },
  /** Container and site files are gone. */
  removed: {
    to: "removed",
    from: ["removing", "removed"],
    claim: "match",
  },
  /** A stop failed for good: recorded, so later launches and removes make progress. */
  stopFailed: {
    to: "failed",
    from: ["stopping", "failed"],
    claim: "match",
  },
  /** A remove failed for good: recorded, so later launches and removes make progress. */
  removeFailed: {
    to: "failed",
    from: ["removing", "failed"],
    claim: "match",
  },
  /**
   * A launch over the capacity cap (MAX_RUNNING_PREVIEWS) stops the least recently active
   * running preview: a stop taken by the launching run (its reason says `evicted`); it ends with
   * `stopped` like any stop. Only a preview that is running is evicted, never one being launched;
   * it replays on `stopping` (a retried eviction converges; over another stop it is the same stop).
   */
  evict: {
    to: "stopping",
    from: ["running", "stopping"],
    claim: "take",
  },
  /**
   * The sweep removed the container of a preview stopped longer than STOPPED_RETENTION. The
   * project still exists: the row stays `stopped` (its stop time kept; a launch creates a new
   * container) and records why, its container id and URL cleared.
   */
  expire: {
    to: "stopped",
    from: ["stopped"],
    claim: "take",
  },
  /**
   * The sweep found a preview recorded starting or running whose container is gone or exited:
   * the row is corrected to the truth (`stopped`, from now). Taking the claim makes a launch run
   * it overtook record nothing afterwards.
   */
  reconcile: {
    to: "stopped",
    from: ["starting", "running", "stopped"],
    claim: "take",
  },
  /** The sweep adopts a running managed container that has no row (its project exists). */
  adopt: {
    to: "running",
    from: [null, "running"],
    claim: "take",
  },
  /** The sweep adopts a managed container that has no row and does not run (its project exists). */
  adoptStopped: {
    to: "stopped",
    from: [null, "stopped"],
    claim: "take",
  },
} as const satisfies Record<string, Transition>;

export type LifecycleAction = keyof typeof LIFECYCLE;
export const LIFECYCLE_ACTIONS: readonly LifecycleAction[] = Object.freeze(Object.keys(LIFECYCLE) as LifecycleAction[]);

/** True when `action` may move a preview whose status is `status` (`null`: no row). */
export function allows(action: LifecycleAction, status: PreviewStatus | null): boolean {
  return (LIFECYCLE[action].from as readonly (PreviewStatus | null)[]).includes(status);
}

/** The statuses `action` applies from, without `null`, as the SQL statement takes them. */
export function fromStatuses(action: LifecycleAction): PreviewStatus[] {
  return LIFECYCLE[action].from.filter((s): s is PreviewStatus => s !== null);
}

/** Whether `action` makes the acting run the row's claim. */
export const takesClaim = (action: LifecycleAction): boolean => LIFECYCLE[action].claim === "take";
/** Whether `action` applies only while the acting run holds the row's claim. */
export const matchesClaim = (action: LifecycleAction): boolean => LIFECYCLE[action].claim === "match";

/** Whether a row stands for a preview that exists (not removed, nor being removed). */
export function hasPreview<T extends { status: PreviewStatus }>(row: T | null | undefined): row is T {
  return row != null && row.status !== "removed" && row.status !== "removing";
}

/** Whether `action` may create the row (applies when there is none). */
export function createsRow(action: LifecycleAction): boolean {
  return allows(action, null);
}
