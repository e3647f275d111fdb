/** The Claude adapter's own settings (runtime/config.ts maps the environment onto them). */

/**
 * ANTHROPIC_MODEL's default: a current Sonnet (the newest Sonnet id in the SDK's `Model` list of
 * @anthropic-ai/sdk 1.14.0). A short diagnosis of a build log needs no larger model.
 */
export const DEFAULT_ANTHROPIC_MODEL = "claude-sonnet-5-5";

export interface ClaudeSettings {
  /** Secret: never logged. */
  apiKey: string;
  /** ANTHROPIC_BASE_URL; null: the SDK's default (https://api.anthropic.com). */
  baseUrl: string | null;
  model: string;
  /** The answer's token limit (`max_tokens`). */
  maxTokens: number;
  /** One request's time limit; the SDK's own retries are off (the Inngest step retries). */
  timeoutMs: number;
}
