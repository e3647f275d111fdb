/**
 * The activity, access and capacity settings of issue 7 (`runtime/config.ts`): defaults, the
 * access mode that follows API_TOKEN, the secret it requires (never printed), and bad values
 * named.
 */
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../runtime/config.js";
import { previewSettings } from "../../runtime/service.js";

const CWD = "/srv/previews";
const DEV = { INNGEST_DEV: "1" } as const;
const TOKEN = "api-token-0123456789";
const SECRET = "link-secret-0123456789abcdef0123456789";

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env, CWD);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error("expected a ConfigError");
}

describe("activity, access and capacity settings", () => {
  it("defaults: 60s events, 5s flush, 1h idle, public without API_TOKEN, 24h links, unlimited", () => {
    const c = loadConfig({ ...DEV }, CWD);
    expect(c.activity).toEqual({ eventIntervalMs: 60_000, flushIntervalMs: 5_000, idleTimeoutMs: 3_600_000 });
    expect(c.access).toEqual({ mode: "public", linkTtlMs: 86_400_000, linkSecret: null, middleware: "preview-auth@docker" });
    expect(c.maxRunningPreviews).toBeNull();
  });

  it("PREVIEW_ACCESS defaults to token when API_TOKEN is set, which requires PREVIEW_LINK_SECRET", () => {
    expect(problems({ ...DEV, API_TOKEN: TOKEN })).toEqual([expect.stringMatching(/^PREVIEW_LINK_SECRET: PREVIEW_LINK_SECRET \(32\+ characters\) is required when PREVIEW_ACCESS is token/)]);
    expect(loadConfig({ ...DEV, API_TOKEN: TOKEN, PREVIEW_LINK_SECRET: SECRET }, CWD).access).toMatchObject({ mode: "token", linkSecret: SECRET });
    expect(loadConfig({ ...DEV, API_TOKEN: TOKEN, PREVIEW_ACCESS: "public" }, CWD).access.mode).toBe("public");
    expect(problems({ ...DEV, PREVIEW_ACCESS: "token" })).toEqual([expect.stringMatching(/^PREVIEW_LINK_SECRET: /)]);
  });

  it("parses explicit values", () => {
    const c = loadConfig(
      { ...DEV, ACTIVITY_EVENT_INTERVAL: "30s", ACTIVITY_FLUSH_INTERVAL: "500ms", IDLE_TIMEOUT: "15m", PREVIEW_LINK_TTL: "2h", PREVIEW_ACCESS: "token", PREVIEW_LINK_SECRET: SECRET, MAX_RUNNING_PREVIEWS: "12", PREVIEW_AUTH_MIDDLEWARE: "auth@file" },
      CWD,
    );
    expect(c.activity).toEqual({ eventIntervalMs: 30_000, flushIntervalMs: 500, idleTimeoutMs: 900_000 });
    expect(c.access).toEqual({ mode: "token", linkTtlMs: 7_200_000, linkSecret: SECRET, middleware: "auth@file" });
    expect(c.maxRunningPreviews).toBe(12);
    expect(loadConfig({ ...DEV, MAX_RUNNING_PREVIEWS: "0" }, CWD).maxRunningPreviews).toBeNull();
    expect(loadConfig({ ...DEV, MAX_RUNNING_PREVIEWS: "Unlimited" }, CWD).maxRunningPreviews).toBeNull();
  });

  it.each([
    ["IDLE_TIMEOUT", "soon", /IDLE_TIMEOUT must be a duration/],
    ["IDLE_TIMEOUT", "10s", /IDLE_TIMEOUT must be at least 1m/],
    ["ACTIVITY_EVENT_INTERVAL", "10ms", /ACTIVITY_EVENT_INTERVAL must be at least/],
    ["ACTIVITY_FLUSH_INTERVAL", "1h", /ACTIVITY_FLUSH_INTERVAL must be at most 5m/],
    ["PREVIEW_ACCESS", "private", /PREVIEW_ACCESS must be public or token/],
    ["PREVIEW_LINK_TTL", "forever", /PREVIEW_LINK_TTL must be a duration/],
    ["MAX_RUNNING_PREVIEWS", "-1", /MAX_RUNNING_PREVIEWS must be a whole number/],
    ["MAX_RUNNING_PREVIEWS", "three", /MAX_RUNNING_PREVIEWS must be a whole number/],
    ["PREVIEW_AUTH_MIDDLEWARE", "a`b", /Traefik middleware name/],
  ])("refuses %s=%s, naming it", (key, value, message) => {
    expect(problems({ ...DEV, [key]: value })).toEqual([expect.stringMatching(new RegExp(`^${key}: .*${message.source}`))]);
  });

  it("never prints the link secret", () => {
    const list = problems({ ...DEV, PREVIEW_LINK_SECRET: "short-hunter2" });
    expect(list).toEqual([expect.stringMatching(/^PREVIEW_LINK_SECRET: PREVIEW_LINK_SECRET must be at least 32 characters$/)]);
    expect(list.join("\n")).not.toContain("hunter2");
  });

  it("hands the middleware to the Docker adapter's settings", () => {
    const c = loadConfig({ ...DEV, PREVIEW_AUTH_MIDDLEWARE: "gate@docker" }, CWD);
    expect(previewSettings(c, () => false).authMiddleware).toBe("gate@docker");
  });
});
