/**
 * The Claude adapter against a local HTTP server speaking the Messages API (the SDK's `baseURL`):
 * the request it makes, the answer it keeps, and how each failure is classified (once, here).
 */
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClaudeDiagnoser, claudeClientOptions } from "../../diagnosis/claude.js";
import { ClaudePermanentError, ClaudeRetryableError } from "../../diagnosis/errors.js";
import type { ClaudeSettings } from "../../diagnosis/settings.js";
import { isPermanent } from "../../functions/ports.js";
import { startMessagesApi, type MessagesApi } from "../helpers/messages-api.js";

const KEY = "sk-ant-test-0123456789abcdefghijklmnop";
let api: MessagesApi;
beforeAll(async () => {
  api = await startMessagesApi();
});
afterAll(() => api?.close());

function diagnoser(overrides: Partial<ClaudeSettings> = {}) {
  const settings: ClaudeSettings = { apiKey: KEY, baseUrl: api.url, model: "claude-test-model", maxTokens: 321, timeoutMs: 2_000, ...overrides };
  return new ClaudeDiagnoser(new Anthropic(claudeClientOptions(settings)), settings);
}

const request = { system: "You diagnose.", prompt: "Preview of project p failed.\n<log>\nboom\n</log>" };

describe("ClaudeDiagnoser", () => {
  it("sends one Messages API request (model, max_tokens, system, the prompt as the user turn, the key) and returns the text", async () => {
    api.script = [{ text: "  The build failed because next is missing.  " }];
    const before = api.requests.length;
    await expect(diagnoser().diagnose(request)).resolves.toBe("The build failed because next is missing.");
    expect(api.requests).toHaveLength(before + 1);
    const sent = api.requests.at(-1)!;
    expect(sent.body).toEqual({ model: "claude-test-model", max_tokens: 321, system: request.system, messages: [{ role: "user", content: request.prompt }] });
    // SDK 1.x sends the key as a bearer token (older versions: x-api-key).
    expect(sent.headers.authorization ?? `Bearer ${String(sent.headers["x-api-key"])}`).toBe(`Bearer ${KEY}`);
    expect(sent.headers["anthropic-version"]).toBeDefined();
  });

  it.each([
    [401, "authentication_error"],
    [403, "permission_error"],
    [404, "not_found_error"],
    [400, "invalid_request_error"],
  ])("%d is permanent, tried once, named with the API's own words and never the key", async (status, type) => {
    api.script = [{ status, type, message: `${type} happened` }];
    const before = api.requests.length;
    const err = await diagnoser().diagnose(request).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ClaudePermanentError);
    expect(isPermanent(err)).toBe(true);
    expect((err as Error).message).toBe(`anthropic: ask claude-test-model for a diagnosis failed: ${status} ${type}: ${type} happened`);
    expect((err as Error).message).not.toContain(KEY);
    expect(api.requests.length - before).toBe(1);
  });

  it.each([
    [529, "overloaded_error"],
    [429, "rate_limit_error"],
    [500, "api_error"],
    [503, "api_error"],
  ])("%d is retryable and not retried by the SDK (the Inngest step retries)", async (status, type) => {
    api.script = [{ status, type }];
    const before = api.requests.length;
    const err = await diagnoser().diagnose(request).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ClaudeRetryableError);
    expect(isPermanent(err)).toBe(false);
    expect((err as Error).message).toMatch(new RegExp(`failed: ${status} ${type}`));
    expect(api.requests.length - before).toBe(1);
  });

  it("a server that does not answer within ANTHROPIC_TIMEOUT: retryable, once, named with the limit", async () => {
    api.script = ["hang"];
    const before = api.requests.length;
    const started = Date.now();
    const err = await diagnoser({ timeoutMs: 300 }).diagnose(request).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(err).toBeInstanceOf(ClaudeRetryableError);
    expect((err as Error).message).toBe("anthropic: ask claude-test-model for a diagnosis failed: no answer within 300ms (ANTHROPIC_TIMEOUT)");
    expect(api.requests.length - before).toBe(1);
  });

  it("an unreachable server is retryable", async () => {
    const gone = await startMessagesApi();
    const url = gone.url;
    await gone.close();
    const err = await diagnoser({ baseUrl: url }).diagnose(request).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ClaudeRetryableError);
  });
});
