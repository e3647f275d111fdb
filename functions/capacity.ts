/**
 * Capacity (MAX_RUNNING_PREVIEWS): the admission of a launch, and the eviction that makes room.
 * Used by launch-preview between claiming the preview and starting its container.
 *
 * Mechanism (why concurrent launches never overshoot): a preview may start its container only
 * while it holds one of MAX_RUNNING_PREVIEWS numbered slots, and the slots live in the database
 * under a UNIQUE constraint (`previews.slot`, migration 004). `CapacityStore.admit` takes the
 * lowest free slot in ONE statement; two launches that pick the same slot from their snapshots
 * cannot both commit it (the loser retries from a fresh snapshot). A slot is held while the
 * preview is starting, running, stopping or removing, and is given back lazily by the next
 * admission once the preview is stopped, failed or removed. The cap is thus enforced by the
 * database, for every instance of this service and every interleaving of Inngest steps (an
 * Inngest concurrency key limits steps, not runs, so it could not bound running containers).
 *
 * Steps of one admission round (`admit-N` in launch-preview, each idempotent):
 *   1. take a slot: admitted -> start the container;
 *   2. every slot held and a running preview holds one: evict the least recently active running
 *      preview (its last use, or when it became ready): `evict` (running -> stopping, reason
 *      `evicted: ...`, claimed by this launch), stop its container (only while the eviction
 *      still holds it), `stopped`; then the next round takes the freed slot (another launch
 *      may take it first: the round repeats);
 *   3. every slot held by previews still starting: wait (polling, within the step) and report,
 *      so the next round tries again; a launch gives up after READY_TIMEOUT.
 * The launch that was overtaken (its row is no longer its `starting`) takes nothing.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { PreviewDeps } from "./deps.js";
import type { ProjectId } from "./ports.js";

export type Admitted =
  | { outcome: "admitted"; slot: number }
  /** A preview was evicted for this launch: emit its `preview.stopped`, then try again. */
  | { outcome: "evicted"; victim: ProjectId }
  /** Every slot is held (by previews still starting, or an eviction was overtaken): try again. */
  | { outcome: "full"; holders: number }
  | { outcome: "superseded"; status: string | null };

/** How long one admission round waits for a slot or a running victim before reporting. */
const ROUND_WAIT_MS = 5_000;
const POLL_MS = 200;

/** The reason recorded on an evicted preview. */
const evictionReason = (projectId: ProjectId, max: number) => `evicted: MAX_RUNNING_PREVIEWS=${max} reached, making room for ${projectId}`;

/** One admission round (the body of an `admit-N` step). */
export async function admitOrEvict(deps: PreviewDeps, projectId: ProjectId, runId: string): Promise<Admitted> {
  const capacity = deps.capacity;
  if (!capacity) return { outcome: "admitted", slot: 0 };
  const deadline = Date.now() + ROUND_WAIT_MS;
  for (;;) {
    const admission = await capacity.store.admit(projectId, runId, capacity.max);
    if (admission.admitted) return { outcome: "admitted", slot: admission.slot };
    if (!admission.full) return { outcome: "superseded", status: admission.status };
    if (admission.victim !== null) {
      const evicted = await evict(deps, admission.victim, projectId, runId, capacity.max);
      return evicted ? { outcome: "evicted", victim: admission.victim } : { outcome: "full", holders: admission.holders };
    }
    if (Date.now() >= deadline || deps.shutdown?.aborted) return { outcome: "full", holders: admission.holders };
    await sleep(POLL_MS);
  }
}

/**
 * Stops `victim` for the launch of `projectId`, through the table: `evict` takes the victim (a
 * claim of this launch's own), its container is stopped only while that claim holds, and
 * `stopped` records it. False when the victim was taken over meanwhile (relaunched, removed,
 * evicted by another launch): nothing more is done to it.
 */
async function evict(deps: PreviewDeps, victim: ProjectId, projectId: ProjectId, runId: string, max: number): Promise<boolean> {
  const claim = `evict:${runId}`;
  const reason = evictionReason(projectId, max);
  const taken = await deps.store.apply(victim, "evict", { reason, claim });
  if (!taken.applied) return false;
  const row = await deps.store.get(victim);
  if (row?.status !== "stopping" || row.claim !== claim) return false;
  const outcome = await deps.runtime.stop(victim);
  const stopped = await deps.store.apply(victim, "stopped", { reason: `${reason} (container ${outcome})`, claim });
  return stopped.applied;
}
