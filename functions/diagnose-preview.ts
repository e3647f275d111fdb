/**
 * diagnose-preview: `preview.failed` -> a short diagnosis by Claude on the preview, in the audit
 * log, and `preview.diagnosed`. Registered only when an Anthropic API key is configured.
 *
 * Steps:
 *   prepare-prompt   re-read the preview: only a preview still `failed` with this event's reason
 *                    and log tail is diagnosed (the failure is then identified by `failureKey`:
 *                    the failing run's claim, the reason and the log tail). Already diagnosed
 *                    (a replayed or duplicated event): nothing more, no model call. Otherwise
 *                    read the container's environment values and build the prompt, redacted
 *                    (functions/redact.ts) and cut to LOG_BUDGET_CHARS, in this same step: the
 *                    values never leave it (only the redacted prompt is its output).
 *   ask-claude       `step.ai.wrap`: one Messages API call (the SDK's own retries are off). A
 *                    retryable error (overloaded 529, rate limit, 5xx, timeout, unreachable) fails
 *                    the attempt and Inngest retries the step (RETRIES); bad credentials (401),
 *                    a refused request or unknown model are `NonRetriableError`: no retry. Its
 *                    result is memoized: a later step's retry never calls the model again.
 *   record-diagnosis the answer (plain text, redacted again, at most DIAGNOSIS_MAX_CHARS) or,
 *                    when `ask-claude` failed for good (attempts exhausted, or not retryable: the
 *                    SDK then throws a `StepError` into this handler, caught here), "diagnosis
 *                    unavailable: <why>". One compare-and-set: written only while the preview is
 *                    still in that failure, never over its stored diagnosis.
 *   emit-diagnosed   `preview.diagnosed` `{ projectId, diagnosis }`, only for an answer that is
 *                    recorded (an "unavailable" is recorded but not emitted).
 *
 * The answer is text for a person: it is stored and emitted as it is, never parsed, and nothing
 * here acts on it (whatever the log told the model, this function only writes the diagnosis
 * columns and the audit entry, and sends `preview.diagnosed`).
 *
 * Flow control: one concurrency slot per project (its own key, so a slow model never holds up
 * launches, stops or removes): no two model calls for one project at once. Idempotent: a
 * replayed event finds the diagnosis stored and calls nothing. Limit: two deliveries of one
 * failure that both pass `prepare-prompt` before either records (possible only while the first
 * is between `ask-claude` and `record-diagnosis`) both call the model; one answer is recorded.
 */
import { StepError, type Inngest } from "inngest";
import { previewDiagnosed, previewFailed, PreviewFailedData } from "../inngest.config.js";
import { RETRIES, parseEventData, permanent } from "./deps.js";
import { buildDiagnosisPrompt, cleanDiagnosis } from "./diagnosis-prompt.js";
import { currentDiagnosis, type ContainerSecrets, type Diagnoser, type DiagnosisPrompt, type DiagnosisState, type DiagnosisStore, type FailureOf, type PreviewStore } from "./ports.js";
import { redact } from "./redact.js";

/** What diagnose-preview is given; `runtime/` builds it from the config. */
export interface DiagnosisDeps {
  diagnoser: Diagnoser;
  store: PreviewStore & DiagnosisStore;
  secrets: ContainerSecrets;
}

/** One model call per project at a time (steps, see deps.ts PER_PROJECT on why steps). */
export const ONE_DIAGNOSIS_PER_PROJECT = {
  scope: "env",
  key: '"diagnose-preview:" + event.data.projectId',
  limit: 1,
} as const;

export const UNAVAILABLE = "diagnosis unavailable";

type Plan =
  | { ask: false; why: string }
  /**
   * Only what is safe to store with Inngest: the redacted request, and the failing run's claim
   * (reason and log tail are the event's, checked equal to the row's; `noLog`: the row has none).
   */
  | { ask: true; claim: string | null; noLog: boolean; request: DiagnosisPrompt };

/** Why a step failed for good, in words safe to store (redacted, bounded). */
const why = (err: unknown): string => redact(err instanceof Error ? err.message : String(err)).slice(0, 300) || "unknown error";

export function createDiagnosePreview(inngest: Inngest, deps: DiagnosisDeps) {
  return inngest.createFunction(
    {
      id: "diagnose-preview",
      name: "Diagnose failed preview",
      triggers: [previewFailed],
      concurrency: ONE_DIAGNOSIS_PER_PROJECT,
      retries: RETRIES,
    },
    async ({ event, step, logger }) => {
      const failed = parseEventData(PreviewFailedData, event.name, event.data);
      const { projectId } = failed;

      // Fails the run when it cannot be prepared (database, or Docker to read the environment
      // for redaction, out for good): without the environment nothing is sent anywhere.
      const plan = await step.run("prepare-prompt", () =>
        permanent(async (): Promise<Plan> => {
          const row = await deps.store.get(projectId);
          if (row?.status !== "failed") return { ask: false, why: `the preview is ${row?.status ?? "unknown"} now` };
          if (row.reason !== failed.reason || (row.logTail ?? "") !== failed.logTail) return { ask: false, why: "the preview failed again since (another reason or log)" };
          if (currentDiagnosis(row)?.state === "diagnosed") return { ask: false, why: "already diagnosed" };
          // Secrets: read and used inside this step only; its output is the redacted prompt.
          const secrets = await deps.secrets.environmentValues(projectId);
          return { ask: true, claim: row.claim, noLog: row.logTail === null, request: buildDiagnosisPrompt(failed, secrets) };
        }),
      );
      if (!plan.ask) {
        logger.info({ projectId, why: plan.why }, "no diagnosis needed");
        return { projectId, diagnosed: false, why: plan.why };
      }

      let outcome: { state: DiagnosisState; text: string };
      try {
        const answer = await step.ai.wrap("ask-claude", (request: DiagnosisPrompt) => permanent(() => deps.diagnoser.diagnose(request)), plan.request);
        const text = cleanDiagnosis(String(answer ?? ""));
        outcome = text ? { state: "diagnosed", text } : { state: "unavailable", text: `${UNAVAILABLE}: the model gave an empty answer` };
      } catch (err) {
        // Thrown here only once the step failed for good: its attempts are exhausted (the SDK
        // marks the last attempt's error final) or the error was not retryable.
        if (!(err instanceof StepError)) throw err;
        outcome = { state: "unavailable", text: `${UNAVAILABLE}: ${why(err)}` };
      }

      const failure: FailureOf = { claim: plan.claim, reason: failed.reason, logTail: plan.noLog ? null : failed.logTail };
      const saved = await step.run("record-diagnosis", () => permanent(() => deps.store.recordDiagnosis(projectId, failure, outcome)));
      if (!saved.recorded) {
        logger.info({ projectId }, "diagnosis not recorded: the preview moved on, or another answer was recorded first");
        return { projectId, diagnosed: false, why: "superseded" };
      }
      if (outcome.state === "diagnosed") {
        await step.sendEvent("emit-diagnosed", previewDiagnosed.create({ projectId, diagnosis: outcome.text }));
        logger.info({ projectId, model: deps.diagnoser.model }, "preview diagnosed");
      } else {
        logger.warn({ projectId, model: deps.diagnoser.model, why: outcome.text }, "preview diagnosis unavailable");
      }
      return { projectId, diagnosed: outcome.state === "diagnosed", state: outcome.state };
    },
  );
}
