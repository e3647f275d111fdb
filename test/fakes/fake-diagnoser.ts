/**
 * In-memory `Diagnoser` and `ContainerSecrets` for the unit tier: the diagnoser keeps every
 * request it was given and answers from a script (text, a retryable error, or a permanent one).
 * The Claude adapter is proven against a local Messages API server in the integration tier.
 */
import { PermanentError, type ContainerSecrets, type Diagnoser, type DiagnosisPrompt, type ProjectId } from "../../functions/ports.js";

export type Answer = string | { retryable: string } | { permanent: string };

export class FakeDiagnoser implements Diagnoser {
  readonly model = "fake-model";
  readonly requests: DiagnosisPrompt[] = [];
  /** Answers in order; the last one repeats. */
  answers: Answer[] = ["The dev server could not find the module next: run npm install."];

  async diagnose(request: DiagnosisPrompt): Promise<string> {
    this.requests.push(request);
    const answer = this.answers.length > 1 ? this.answers.shift()! : this.answers[0]!;
    if (typeof answer === "string") return answer;
    if ("permanent" in answer) throw new PermanentError(answer.permanent);
    throw new Error(answer.retryable);
  }
}

export class FakeSecrets implements ContainerSecrets {
  readonly values = new Map<string, string[]>();
  failWith: Error | null = null;
  async environmentValues(projectId: ProjectId): Promise<string[]> {
    if (this.failWith) throw this.failWith;
    return this.values.get(projectId) ?? [];
  }
}
