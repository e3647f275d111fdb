/**
 * `Diagnoser` over Claude: one Messages API call through `@anthropic-ai/sdk`, whose client is
 * passed in (built by runtime/ from the config: key, base URL, timeout, and `maxRetries: 0`, since
 * the Inngest step is what retries). The answer's text blocks, joined; nothing in it is
 * interpreted here or anywhere else.
 */
import type Anthropic from "@anthropic-ai/sdk";
import type { Diagnoser, DiagnosisPrompt } from "../functions/ports.js";
import { ClaudePermanentError, claudeError } from "./errors.js";
import type { ClaudeSettings } from "./settings.js";

export class ClaudeDiagnoser implements Diagnoser {
  readonly model: string;
  constructor(
    private readonly client: Anthropic,
    private readonly settings: Pick<ClaudeSettings, "model" | "maxTokens" | "timeoutMs">,
  ) {
    this.model = settings.model;
  }

  async diagnose(request: DiagnosisPrompt): Promise<string> {
    const action = `ask ${this.model} for a diagnosis`;
    let message: Anthropic.Message;
    try {
      message = await this.client.messages.create(
        {
          model: this.settings.model,
          max_tokens: this.settings.maxTokens,
          system: request.system,
          messages: [{ role: "user", content: request.prompt }],
        },
        { timeout: this.settings.timeoutMs, maxRetries: 0 },
      );
    } catch (err) {
      throw claudeError(action, err, this.settings.timeoutMs);
    }
    const text = message.content
      .filter((block): block is Anthropic.TextBlock => block.type === "text")
      .map((block) => block.text)
      .join("\n")
      .trim();
    if (!text && message.stop_reason === "refusal") throw new ClaudePermanentError(`anthropic: ${action} failed: the model declined to answer`, null);
    return text;
  }
}

/** The client for `ClaudeDiagnoser`: explicit key, base URL and timeout; no SDK-level retries. */
export function claudeClientOptions(settings: ClaudeSettings): ConstructorParameters<typeof Anthropic>[0] {
  return {
    apiKey: settings.apiKey,
    ...(settings.baseUrl ? { baseURL: settings.baseUrl } : {}),
    timeout: settings.timeoutMs,
    maxRetries: 0,
  };
}
