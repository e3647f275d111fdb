/**
 * launch-preview: `pipeline.step7` / `preview.requested` -> a running preview and `preview.ready`.
 *
 * Steps (each idempotent; a replay after a crash between any two converges):
 *   ensure-container   check the site folder, claim the preview (`launch`: row -> starting), find
 *                      or create the container. One step, so nothing of this project runs between
 *                      the check and the create. A late launch of a deleted project (row removed,
 *                      files gone) ends as superseded without recording anything.
 *                      With object storage (MINIO_*), the claimed launch first hydrates the site
 *                      folder from `projects/{id}/site/` (downloaded only when missing or changed,
 *                      into a temporary folder renamed into place), then checks what that left.
 *                      In this step, after the claim: a failure to download (store unreachable:
 *                      retried; a hostile key: for good) is the run's failure to record, and the
 *                      check, prepare and create run on exactly what hydration left, whichever
 *                      attempt of the step it was (a retried step hydrates again: a no-op when
 *                      nothing changed). A preview recorded running keeps its files.
 *   admit-N            with MAX_RUNNING_PREVIEWS only (see capacity.ts): take a capacity slot,
 *                      or evict the least recently active running preview (`evict`, reason
 *                      `evicted: ...`; `emit-evicted-N` sends its `preview.stopped`) and try
 *                      again; a slot held in the database under a unique constraint is what
 *                      keeps concurrent launches from overshooting the cap
 *   start-container    when it is not running yet, while this run holds the preview; the site
 *                      folder is verified again right before the start that mounts it, and what
 *                      the container mounted is compared with it right after. A container gone
 *                      since ensure-container (removed by hand, or expired by a sweep, which
 *                      does not take this project's concurrency key) is created again (the same
 *                      find-or-create) and started, once per attempt: gone again, the step
 *                      fails retryably; a foreign container under the name is still refused.
 *                      record-running then records the id that actually runs (the probe's)
 *   wait-ready-N       probe HTTP for a bounded slice (at most 30 s) ...
 *   pause-N            ... then sleep and probe again, until READY_TIMEOUT: no call request is held
 *                      open for minutes, every probe shows in the dashboard, and a shutdown ends a
 *                      probe in flight at once (the next slice runs on a live instance)
 *   record-running     `ready`: row -> running, with URL and container id
 *   emit-ready         `preview.ready`
 *
 * Launching a preview recorded running whose container runs claims nothing: it probes, records
 * nothing new (the `ready` replay changes nothing) and emits `preview.ready` again with its URL.
 *
 * Failures: anything that fails for good (no site folder, the process exits, no answer within
 * READY_TIMEOUT, a step out of retries or refused for good) fails the run; the failure handler
 * (`launch-preview-failure`) then records `fail` (row -> failed, with the reason and log tail),
 * stops the container and emits `preview.failed`. `fail` applies only while this run still
 * holds the preview (its claim), so a launch overtaken by a stop, a remove or a newer launch
 * records nothing and leaves the newer run's container alone. A launch that found its preview
 * running claimed nothing, so it has nothing to record if it fails (the row still says running).
 *
 * Concurrency: a later stop or remove of the project cancels the run; duplicates are skipped
 * while a launch is in flight. Should an opposite action still slip in between two steps, its
 * write wins: the table refuses `ready` over it, this run stops the container it started, and
 * ends as `superseded` without emitting anything.
 */
import { NonRetriableError, type Inngest } from "inngest";
import { pipelineStep7, previewClosed, previewIdle, previewReady, previewRequested, previewStopped, projectDeleted } from "../inngest.config.js";
import { admitOrEvict } from "./capacity.js";
import {
  DEFAULT_READY_SLICE_MS,
  ONE_RUN_PER_PROJECT,
  PER_PROJECT,
  RETRIES,
  formatDuration,
  parseProjectEvent,
  permanent,
  sameProject,
  type PreviewDeps,
} from "./deps.js";
import { recordFailure, stopBestEffort, type FailureContext } from "./failure.js";
import { countOnce } from "./metrics.js";
import { ContainerGoneError, PermanentError, type FolderIdentity, type Hydration, type ProjectId, type StartResult } from "./ports.js";

/** Pause between two readiness slices. */
const PAUSE = "1s";

type Claim =
  | { outcome: "superseded"; status: string | null }
  | { outcome: "site-missing"; reason: string }
  /** `claimed` false: the preview was recorded running and its container runs (a no-op launch). */
  | { outcome: "claimed"; claimed: boolean; containerId: string; running: boolean; at: number; hydration: HydrationLog | null };

/** What hydration did (object storage only), with how long it took. */
type HydrationLog = Hydration & { ms: number };

export function createLaunchPreview(inngest: Inngest, deps: PreviewDeps) {
  const sliceMs = Math.min(deps.readySliceMs ?? DEFAULT_READY_SLICE_MS, 30_000);
  return inngest.createFunction(
    {
      id: "launch-preview",
      name: "Launch preview",
      triggers: [pipelineStep7, previewRequested],
      concurrency: PER_PROJECT,
      singleton: ONE_RUN_PER_PROJECT,
      cancelOn: [sameProject(previewIdle), sameProject(previewClosed), sameProject(projectDeleted)],
      retries: RETRIES,
      onFailure: (ctx: FailureContext) => recordFailure(deps, ctx, "launch"),
    },
    async ({ event, step, logger, runId }) => {
      const { projectId } = parseProjectEvent(event);
      const reason = `${event.name}: starting container`;
      const take = () => deps.store.apply(projectId, "launch", { reason, logTail: null, claim: runId });

      const claim = await step.run("ensure-container", () =>
        permanent(async (): Promise<Claim> => {
          const row = await deps.store.get(projectId);
          // A late launch of a deleted project (its files gone with it) is not a failure: its
          // site is checked before anything is claimed. Any other launch claims first, so that
          // whatever fails from here on (a check that throws included) is its failure to record.
          const deleted = row?.status === "removed" || row?.status === "removing" ? row.status : null;
          const early = deleted ? await deps.site.check(projectId) : null;
          if (deleted && early && !early.ok) return { outcome: "superseded", status: deleted };
          // A preview recorded running is claimed only once its container turns out not to run.
          const noop = row?.status === "running";
          if (!noop) {
            const claimed = await take();
            if (!claimed.applied) return { outcome: "superseded", status: claimed.row?.status ?? null };
          }
          // Object storage: the site folder is made what the store holds before it is checked.
          let hydration: HydrationLog | null = null;
          if (deps.objects && !noop) {
            const began = Date.now();
            hydration = { ...(await deps.objects.hydrate(projectId)), ms: Date.now() - began };
          }
          const site = early && !hydration ? early : await deps.site.check(projectId);
          if (!site.ok) {
            const claimed = noop ? await take() : null;
            if (claimed && !claimed.applied) return { outcome: "superseded", status: claimed.row?.status ?? null };
            return { outcome: "site-missing", reason: site.reason };
          }
          // The preview runs unprivileged: the folder it installs and builds in must be its own.
          if (!noop) await deps.site.prepare(projectId, site.folder);
          const ensured = await deps.runtime.ensureContainer(projectId);
          if (noop && !ensured.running) {
            const claimed = await take();
            if (!claimed.applied) return { outcome: "superseded", status: claimed.row?.status ?? null };
            await deps.site.prepare(projectId, site.folder);
          }
          return { outcome: "claimed", claimed: !(noop && ensured.running), containerId: ensured.containerId, running: ensured.running, at: Date.now(), hydration };
        }),
      );
      if (claim.outcome === "claimed" && claim.hydration) logger.info({ projectId, ...claim.hydration }, "site folder hydrated from object storage");
      if (claim.outcome === "superseded") return superseded(projectId, claim.status);
      if (claim.outcome === "site-missing") throw new NonRetriableError(claim.reason);

      if (deps.capacity && claim.claimed) {
        // MAX_RUNNING_PREVIEWS (functions/capacity.ts): a slot before the container may run,
        // evicting the least recently active running preview when every slot is held.
        const max = deps.capacity.max;
        for (let round = 1; ; round++) {
          const admitted = await step.run(`admit-${round}`, () =>
            permanent(async () => ({ ...(await admitOrEvict(deps, projectId, runId)), late: Date.now() - claim.at >= deps.readyTimeoutMs })),
          );
          if (admitted.outcome === "admitted") break;
          if (admitted.outcome === "superseded") return superseded(projectId, admitted.status);
          if (admitted.outcome === "evicted") {
            await step.sendEvent(`emit-evicted-${round}`, previewStopped.create({ projectId: admitted.victim }));
            logger.info({ projectId, victim: admitted.victim, max }, "least recently active preview evicted to make room");
          }
          if (admitted.late) {
            throw new NonRetriableError(`no capacity for preview ${projectId}: all ${max} slots (MAX_RUNNING_PREVIEWS) stayed held by previews still starting for ${formatDuration(deps.readyTimeoutMs)}`);
          }
        }
      }

      if (!claim.running) {
        const started = await step.run("start-container", () =>
          permanent(async () => {
            // Only while this run still holds the preview: a stop or remove that ran to its end
            // since the claim must not find the container started behind its back.
            const row = await deps.store.get(projectId);
            if (row?.status !== "starting" || row.claim !== runId) return { started: false, status: row?.status ?? null };
            // Mount what was checked: the folder is verified right before the start that mounts
            // it (a step boundary separates this from ensure-container), and the runtime then
            // compares what the container mounted with the folder checked here (killing it on a
            // mismatch). Where it cannot see that, the path is checked again right after.
            const before = await deps.site.check(projectId);
            if (!before.ok) throw new PermanentError(before.reason);
            const start = await startOrCreateAgain(before.folder);
            if (start.mount === "unverified") {
              logger.warn({ projectId, reason: start.reason }, "the mounted site folder could not be compared with the checked one; checking its path again");
              const after = await deps.site.check(projectId);
              if (!after.ok || after.folder !== before.folder) {
                await deps.runtime.stop(projectId);
                throw new PermanentError(`${after.ok ? `site folder of ${projectId} was replaced by another directory` : after.reason} (changed while the container started; stopped)`);
              }
            }
            return { started: true, status: row.status };
          }),
        );
        if (!started.started) return superseded(projectId, started.status);
      }

      let ready;
      for (let slice = 1; ; slice++) {
        const probe = await step.run(`wait-ready-${slice}`, () =>
          permanent(async () => {
            const left = deps.readyTimeoutMs - (Date.now() - claim.at);
            const result = await deps.runtime.probeReady(projectId, Math.max(0, Math.min(sliceMs, left)), deps.shutdown);
            const timedOut = result.state === "waiting" && Date.now() - claim.at >= deps.readyTimeoutMs;
            // A preview recorded running that does not answer (hung, or its process died) is
            // claimed before the run fails, so that its failure is recorded and the next launch
            // restarts it instead of finding it "running" again.
            if (!claim.claimed && (result.state === "down" || timedOut)) await take();
            return { ...result, timedOut };
          }),
        );
        if (probe.state === "ready") {
          ready = probe;
          break;
        }
        if (probe.state === "down") throw new NonRetriableError(probe.reason);
        if (probe.timedOut) {
          throw new NonRetriableError(`preview ${projectId} did not answer HTTP within ${formatDuration(deps.readyTimeoutMs)}`);
        }
        await step.sleep(`pause-${slice}`, PAUSE);
      }

      const { url, containerId } = ready;
      const recorded = await step.run("record-running", () =>
        permanent(async () => {
          // A no-op launch writes nothing: the row keeps its reason and time (`ready` would replay
          // on `running` but with this event's reason).
          const current = claim.claimed ? null : await deps.store.get(projectId);
          if (current?.status === "running" && current.url === url && current.containerId === containerId) {
            return { applied: true, status: current.status, at: Date.now() };
          }
          // Running, but at another URL or container than recorded (the routing changed, a resume
          // after an engine restart moved its port): the truth is written under the claim of the
          // launch that holds the row (a CAS on it: refused if anything took the row since), not
          // this run's, which holds nothing.
          const holder = current?.status === "running" && current.claim ? current.claim : runId;
          const result = await deps.store.apply(projectId, "ready", { reason: `${event.name}: answering HTTP`, url, containerId, logTail: null, claim: holder });
          // Overtaken by a stop or remove: whatever came later wins, and it did not ask for a
          // running container. Overtaken by a newer launch: that launch owns the container.
          const owner = result.row?.status;
          if (!result.applied && owner !== "starting" && owner !== "running") await stopBestEffort(deps, projectId);
          // When it answered, memoized with the step: a replay measures the same duration.
          return { applied: result.applied, status: result.row?.status ?? null, at: Date.now() };
        }),
      );
      if (!recorded.applied) return superseded(projectId, recorded.status);
      await step.sendEvent("emit-ready", previewReady.create({ projectId, url, containerId }));
      logger.info({ projectId, containerId, url }, "preview ready");
      // Counted where the run ends (functions/metrics.ts): once, not once per step.
      countOnce(deps.metrics, `launch:${runId}`, (m) =>
        claim.claimed ? m.launchFinished("ready", (recorded.at - claim.at) / 1000) : m.launchFinished("already_running", null),
      );
      return { projectId, url, containerId };

      /**
       * `runtime.start`, and when the container is gone under its name (removed since
       * ensure-container: by hand, or expired by a sweep, whose expiry does not wait for this
       * project's concurrency key), the same find-or-create as ensure-container, then the start
       * again. Only called while this run holds the preview (start-container checks first), so a
       * stop or remove that ran meanwhile is never undone. At most once per attempt: a container
       * gone again is a retryable failure of the step (its next attempt starts over), never a
       * loop. A foreign container under the name stays a refusal (`ensureContainer` and `start`
       * both refuse it for good), never replaced.
       */
      async function startOrCreateAgain(folder: FolderIdentity): Promise<StartResult> {
        try {
          return await deps.runtime.start(projectId, folder);
        } catch (err) {
          if (!(err instanceof ContainerGoneError)) throw err;
        }
        const again = await deps.runtime.ensureContainer(projectId);
        logger.warn(
          { projectId, oldContainerId: claim.outcome === "claimed" ? claim.containerId : null, containerId: again.containerId },
          "container vanished since ensure-container (removed by hand or expired by a sweep); created again",
        );
        try {
          return await deps.runtime.start(projectId, folder);
        } catch (err) {
          if (!(err instanceof ContainerGoneError)) throw err;
          // Not a PermanentError: the step is retried (and creates it again, once, per attempt).
          throw new Error(`${err.message} (vanished again right after it was created again, ${again.containerId}); the step will be retried`, { cause: err });
        }
      }

      function superseded(id: ProjectId, status: string | null) {
        logger.info({ projectId: id, status }, "launch overtaken by a stop or remove");
        countOnce(deps.metrics, `launch:${runId}`, (m) => m.launchFinished("superseded", null));
        return { projectId: id, superseded: true as const, status };
      }
    },
  );
}
