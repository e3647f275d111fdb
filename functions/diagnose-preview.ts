/**
 * diagnose-preview: `preview.failed` -> a short diagnosis by Claude on the preview, in the audit
 * log, and `preview.diagnosed`. Registered only when an Anthropic API key is configured.
 *
 * The row is the truth: what is diagnosed is the failure the preview records (its failing run's
 * claim, reason and log tail, identified by `failureKey`), the event only says when to look.
 *
 * Steps (round N = 1, 2, 3):
 *   prepare-prompt-N   re-read the preview. Not `failed` (relaunched, removed since): done, no
 *                      call. Its failure already diagnosed (a replayed or duplicated event), or
 *                      (rounds 2+) the failure this run just recorded: done. Then take one of
 *                      the failure's MAX_ASKS_PER_FAILURE attempts (a compare-and-set in the
 *                      store, idempotent per run and round): all taken (replays of a failure
 *                      the model could not answer): done, no call. Otherwise read the
 *                      container's environment values and build the prompt, redacted
 *                      (functions/redact.ts) and cut to LOG_BUDGET_CHARS, in this same step: the
 *                      values and the raw log never leave it (its output is the redacted prompt,
 *                      the failure's key and the reason it was done).
 *   ask-claude-N       `step.ai.wrap`: one Messages API call (the SDK's own retries are off). A
 *                      retryable error (overloaded 529, rate limit, 5xx, timeout, unreachable)
 *                      fails the attempt and Inngest retries the step (RETRIES); bad credentials
 *                      (401), a refused request or an unknown model are `NonRetriableError`: no
 *                      retry. Memoized: a later step's retry never calls the model again.
 *   record-diagnosis-N the answer (plain text, redacted again, also of the container's
 *                      environment values read in this step, at most DIAGNOSIS_MAX_CHARS) or,
 *                      when `ask-claude-N` failed for good (its attempts exhausted, or not
 *                      retryable: the SDK then throws a `StepError` into this handler, caught
 *                      here), "diagnosis unavailable: <why>". Only onto the same failure (key
 *                      compared, then one compare-and-set), never over its stored diagnosis.
 *   emit-diagnosed-N   `preview.diagnosed` `{ projectId, diagnosis }`, only for an answer that is
 *                      recorded (an "unavailable" is recorded, not emitted).
 * Then the next round looks again: a new failure recorded while this run was busy (whose own
 * event was skipped, see below) is diagnosed by this run. At most 3 rounds.
 *
 * The answer is text for a person: it is stored and emitted as it is, never parsed, and nothing
 * here acts on it (whatever the log told the model, this function only writes the diagnosis
 * columns and the audit entry, and sends `preview.diagnosed`).
 *
 * Flow control: `singleton` per project, `skip`: while a run diagnoses a project, another
 * `preview.failed` of it starts no run (a duplicate of the same failure would call the model a
 * second time; a newer failure is picked up by the running run's next round). So one diagnosis
 * per project at a time, and no concurrency key (Inngest advises caution combining the two; this
 * function shares no key with the lifecycle functions, so a slow model never holds them up).
 * Idempotent: a replayed event finds the diagnosis stored and calls nothing.
 *
 * Cost bounds (review finding F4: forged or replayed `preview.failed` events each cost up to 5
 * model calls while the stored outcome was "unavailable"): at most MAX_ASKS_PER_FAILURE asks per
 * failure, whatever the events (counted in the store); at most DIAGNOSES_PER_PROJECT runs started
 * per project and hour (`rateLimit`: the excess is dropped, a later failure is diagnosed again);
 * runs across all projects start at most DIAGNOSIS_THROTTLE fast (`throttle`: queued, not dropped).
 */
import { StepError, type Inngest } from "inngest";
import { previewDiagnosed, previewFailed, PreviewFailedData } from "../inngest.config.js";
import { RETRIES, parseEventData, permanent } from "./deps.js";
import { buildDiagnosisPrompt, cleanDiagnosis, headOf, wellFormed } from "./diagnosis-prompt.js";
import { currentDiagnosis, failureKey, type ContainerSecrets, type Diagnoser, type DiagnosisPrompt, type DiagnosisState, type DiagnosisStore, type PreviewStore } from "./ports.js";
import { redact } from "./redact.js";

/** What diagnose-preview is given; `runtime/` builds it from the config. */
export interface DiagnosisDeps {
  diagnoser: Diagnoser;
  store: PreviewStore & DiagnosisStore;
  secrets: ContainerSecrets;
}

/** One run per project at a time; a duplicate is skipped (see the header). */
export const ONE_DIAGNOSIS_PER_PROJECT = { key: "event.data.projectId", mode: "skip" } as const;

/** Rounds of one run: a new failure recorded meanwhile is diagnosed by the run in flight. */
export const MAX_ROUNDS = 3;

/** Asks (each one `ask-claude` step, up to RETRIES + 1 requests) per failure, across all runs. */
export const MAX_ASKS_PER_FAILURE = 3;

/** Runs started per project and hour; more `preview.failed` events are dropped (`rateLimit`). */
export const DIAGNOSES_PER_PROJECT = { key: "event.data.projectId", limit: 12, period: "1h" } as const;

/** Runs started per minute across projects (`throttle`: the excess waits its turn, FIFO). */
export const DIAGNOSIS_THROTTLE = { limit: 30, period: "1m", burst: 10 } as const;

export const UNAVAILABLE = "diagnosis unavailable";

type Plan =
  | { ask: false; why: string }
  /** Only what is safe to store with Inngest: the failure's key and the redacted request. */
  | { ask: true; key: string; request: DiagnosisPrompt };

type Outcome = { state: DiagnosisState; text: string };

/** A cleaned answer as an outcome: an empty one is no diagnosis. */
const outcomeOf = (text: string): Outcome => (text ? { state: "diagnosed", text } : { state: "unavailable", text: `${UNAVAILABLE}: the model gave an empty answer` });

/** Why a step failed for good, in words safe to store (redacted, bounded). */
const why = (err: unknown): string => wellFormed(headOf(redact(err instanceof Error ? err.message : String(err)), 300)) || "unknown error";

export function createDiagnosePreview(inngest: Inngest, deps: DiagnosisDeps) {
  return inngest.createFunction(
    {
      id: "diagnose-preview",
      name: "Diagnose failed preview",
      triggers: [previewFailed],
      singleton: ONE_DIAGNOSIS_PER_PROJECT,
      rateLimit: DIAGNOSES_PER_PROJECT,
      throttle: DIAGNOSIS_THROTTLE,
      retries: RETRIES,
    },
    async ({ event, step, logger, runId }) => {
      const { projectId } = parseEventData(PreviewFailedData, event.name, event.data);
      const rounds: Array<{ state: DiagnosisState; recorded: boolean }> = [];
      let last: string | null = null;
      let done = "";
      for (let round = 1; round <= MAX_ROUNDS; round++) {
        const previous = last;
        // Fails the run when it cannot be prepared (the database, or Docker to read the
        // environment for redaction, out for good): without the environment nothing is sent.
        const plan = await step.run(`prepare-prompt-${round}`, () =>
          permanent(async (): Promise<Plan> => {
            const row = await deps.store.get(projectId);
            if (row?.status !== "failed") return { ask: false, why: `the preview is ${row?.status ?? "unknown"} now` };
            const key = failureKey(row);
            if (key === previous) return { ask: false, why: "no new failure" };
            if (currentDiagnosis(row)?.state === "diagnosed") return { ask: false, why: "already diagnosed" };
            const attempt = await deps.store.takeDiagnosisAttempt(projectId, { claim: row.claim, reason: row.reason, logTail: row.logTail }, `${runId}:${round}`, MAX_ASKS_PER_FAILURE);
            if (!attempt.granted) {
              return { ask: false, why: attempt.attempts >= MAX_ASKS_PER_FAILURE ? `no attempt left: the model was asked ${attempt.attempts} times about this failure` : "the preview changed" };
            }
            // Secrets: read and used inside this step only; its output is the redacted prompt.
            const secrets = await deps.secrets.environmentValues(projectId);
            return { ask: true, key, request: buildDiagnosisPrompt({ projectId, reason: row.reason ?? "", logTail: row.logTail ?? "" }, secrets) };
          }),
        );
        if (!plan.ask) {
          done = plan.why;
          break;
        }
        last = plan.key;

        // The model's raw answer, or why there is none.
        let answer: string | null = null;
        let failure = "";
        try {
          answer = String((await step.ai.wrap(`ask-claude-${round}`, (request: DiagnosisPrompt) => permanent(() => deps.diagnoser.diagnose(request)), plan.request)) ?? "");
        } catch (err) {
          // Thrown here only once the step failed for good: its attempts are exhausted (the SDK
          // marks the last attempt's error final) or the error was not retryable.
          if (!(err instanceof StepError)) throw err;
          failure = `${UNAVAILABLE}: ${why(err)}`;
        }

        const key = plan.key;
        const saved = await step.run(`record-diagnosis-${round}`, () =>
          permanent(async (): Promise<{ recorded: boolean; written: boolean; outcome: Outcome | null }> => {
            // The failure as the row holds it now; the compare-and-set below guards the rest.
            const row = await deps.store.get(projectId);
            if (row?.status !== "failed" || failureKey(row) !== key) return { recorded: false, written: false, outcome: null };
            // The answer cleaned and redacted again, also of the container's environment values
            // (read here, used in this step only; review finding F3).
            const outcome = answer === null ? { state: "unavailable" as const, text: failure } : outcomeOf(cleanDiagnosis(answer, await deps.secrets.environmentValues(projectId)));
            return { ...(await deps.store.recordDiagnosis(projectId, { claim: row.claim, reason: row.reason, logTail: row.logTail }, outcome)), outcome };
          }),
        );
        const outcome = saved.outcome ?? (answer === null ? { state: "unavailable" as const, text: failure } : outcomeOf(cleanDiagnosis(answer)));
        rounds.push({ state: outcome.state, recorded: saved.recorded });
        if (!saved.recorded) {
          logger.info({ projectId, round }, "diagnosis not recorded: the preview moved on, or another answer was recorded first");
          continue;
        }
        if (outcome.state === "diagnosed") {
          await step.sendEvent(`emit-diagnosed-${round}`, previewDiagnosed.create({ projectId, diagnosis: outcome.text }));
          logger.info({ projectId, round, model: deps.diagnoser.model }, "preview diagnosed");
        } else {
          logger.warn({ projectId, round, model: deps.diagnoser.model, why: outcome.text }, "preview diagnosis unavailable");
        }
      }
      const final = rounds.at(-1);
      if (!final) {
        logger.info({ projectId, why: done }, "no diagnosis needed");
        return { projectId, diagnosed: false, why: done };
      }
      return { projectId, diagnosed: final.recorded && final.state === "diagnosed", state: final.state, rounds: rounds.length };
    },
  );
}
