/** ANTHROPIC_* (README "Failure diagnosis"): parsed once with the rest of the configuration. */
import { readFileSync } from "node:fs";
import { parseEnv } from "node:util";
import { describe, expect, it } from "vitest";
import { DEFAULT_ANTHROPIC_MODEL } from "../../diagnosis/settings.js";
import { ConfigError, loadConfig } from "../../runtime/config.js";

const CWD = "/srv/previews";
const DEV = { INNGEST_DEV: "1" } as const;
const KEY = "sk-ant-api03-this-is-the-key-0123456789";

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig({ ...DEV, ...env }, CWD);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("diagnosis settings", () => {
  it("without ANTHROPIC_API_KEY: off (null), whatever else is set", () => {
    expect(loadConfig(DEV, CWD).diagnosis).toBeNull();
    expect(loadConfig({ ...DEV, ANTHROPIC_MODEL: "claude-haiku-5-5", ANTHROPIC_API_KEY: "" }, CWD).diagnosis).toBeNull();
  });

  it("with a key: a current model, 600 tokens, 60 s, the SDK's base URL", () => {
    expect(DEFAULT_ANTHROPIC_MODEL).toMatch(/^claude-/);
    expect(loadConfig({ ...DEV, ANTHROPIC_API_KEY: KEY }, CWD).diagnosis).toEqual({
      apiKey: KEY,
      baseUrl: null,
      model: DEFAULT_ANTHROPIC_MODEL,
      maxTokens: 600,
      timeoutMs: 60_000,
    });
  });

  it("reads every variable", () => {
    const c = loadConfig(
      { ...DEV, ANTHROPIC_API_KEY: KEY, ANTHROPIC_BASE_URL: "http://127.0.0.1:8080", ANTHROPIC_MODEL: "claude-haiku-5-5", ANTHROPIC_MAX_TOKENS: "256", ANTHROPIC_TIMEOUT: "90s" },
      CWD,
    );
    expect(c.diagnosis).toEqual({ apiKey: KEY, baseUrl: "http://127.0.0.1:8080", model: "claude-haiku-5-5", maxTokens: 256, timeoutMs: 90_000 });
    expect(loadConfig({ ...DEV, ANTHROPIC_API_KEY: KEY, ANTHROPIC_TIMEOUT: "1500ms" }, CWD).diagnosis?.timeoutMs).toBe(1_500);
  });

  it.each([
    ["ANTHROPIC_TIMEOUT", "soon", "ANTHROPIC_TIMEOUT must be a duration such as 60s or 2m"],
    ["ANTHROPIC_TIMEOUT", "500ms", "ANTHROPIC_TIMEOUT must be at least 1s"],
    ["ANTHROPIC_TIMEOUT", "1h", "ANTHROPIC_TIMEOUT must be at most 10m"],
    ["ANTHROPIC_MAX_TOKENS", "lots", "ANTHROPIC_MAX_TOKENS must be a whole number"],
    ["ANTHROPIC_MAX_TOKENS", "8", "ANTHROPIC_MAX_TOKENS must be at least 16"],
    ["ANTHROPIC_MAX_TOKENS", "100000", "ANTHROPIC_MAX_TOKENS must be at most 8192"],
    ["ANTHROPIC_BASE_URL", "api.anthropic.com", "ANTHROPIC_BASE_URL must be a URL such as https://api.anthropic.com"],
    ["ANTHROPIC_BASE_URL", "ftp://api.example.com", "ANTHROPIC_BASE_URL must be an http(s) URL"],
    ["ANTHROPIC_MODEL", "claude sonnet", "ANTHROPIC_MODEL must be a model id such as claude-sonnet-5-5"],
  ])("%s=%j is refused, named", (key, value, message) => {
    // Values of variables whose names look secret (…TOKEN…, …KEY…) are never echoed.
    const got = /TOKEN|KEY/.test(key) ? "" : ` (got ${JSON.stringify(value)})`;
    expect(problems({ ANTHROPIC_API_KEY: KEY, [key]: value })).toEqual([`${key}: ${message}${got}`]);
  });

  it("never prints the key", () => {
    const all = problems({ ANTHROPIC_API_KEY: "   ", ANTHROPIC_TIMEOUT: "soon" }).join("\n");
    expect(all).toMatch(/ANTHROPIC_API_KEY/);
    const withKey = problems({ ANTHROPIC_API_KEY: KEY, ANTHROPIC_TIMEOUT: "soon" }).join("\n");
    expect(withKey).not.toContain(KEY);
  });

  it(".env.example shows the real defaults", () => {
    // The defaults are shown commented out (`# KEY=value`): read them uncommented.
    const example = parseEnv(readFileSync(new URL("../../.env.example", import.meta.url), "utf8").replace(/^# ([A-Z_][A-Z0-9_]*=)/gm, "$1"));
    for (const key of ["ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL", "ANTHROPIC_MAX_TOKENS", "ANTHROPIC_TIMEOUT"]) expect(Object.keys(example), key).toContain(key);
    const withKey = { ANTHROPIC_API_KEY: KEY };
    expect(loadConfig({ ...example, ...DEV, ...withKey }, CWD).diagnosis).toEqual(loadConfig({ ...DEV, ...withKey }, CWD).diagnosis);
  });
});
