/**
 * The project id is a DNS label; it ends up in a container name, a folder name and a Traefik
 * rule, so the pattern is the only thing standing between an event and path traversal or rule
 * injection.
 */
import * as v from "valibot";
import { describe, expect, it } from "vitest";
import { InvalidProjectIdError, ProjectIdSchema, assertProjectId } from "../../functions/project-id.js";

const VALID = [
  "a",
  "7",
  "abc",
  "site-42",
  "0123456789",
  "a-b-c",
  "a--b",
  "p-3f9a1c-1",
  "a".repeat(63),
  `a${"-".repeat(61)}z`,
];

const INVALID_STRINGS = [
  "",
  "../x",
  "..",
  "a/b",
  "A",
  "Site",
  "a_b",
  "a.b",
  "a".repeat(64),
  "a`b",
  "a`) || Host(`evil.com",
  "-a",
  "a-",
  "-",
  " a",
  "a b",
  "a ",
  "abc\n",
  "\nabc",
  "é",
  "a\u0000",
];

describe("assertProjectId", () => {
  it.each(VALID)("accepts %j", (id) => {
    expect(assertProjectId(id)).toBe(id);
  });

  it.each(INVALID_STRINGS)("refuses %j and names it", (id) => {
    expect(() => assertProjectId(id)).toThrow(InvalidProjectIdError);
    try {
      assertProjectId(id);
    } catch (err) {
      const e = err as InvalidProjectIdError;
      expect(e.name).toBe("InvalidProjectIdError");
      expect(e.value).toBe(id);
      expect(e.message).toContain(JSON.stringify(id));
      expect(e.message).toContain("DNS label");
    }
  });

  it.each([
    ["a number", 42, "42"],
    ["null", null, "null"],
    ["undefined", undefined, "undefined"],
    ["an object", { projectId: "abc" }, '{"projectId":"abc"}'],
    ["an array", ["abc"], '["abc"]'],
    ["a boolean", true, "true"],
  ])("refuses %s and names it", (_what, value, shown) => {
    expect(() => assertProjectId(value)).toThrow(InvalidProjectIdError);
    expect(() => assertProjectId(value)).toThrow(`invalid projectId ${shown}`);
  });

  it("refuses values JSON cannot show with its own error, not a TypeError", () => {
    // `unknown` in, so any value may come: the refusal must still be an InvalidProjectIdError.
    expect(() => assertProjectId(10n)).toThrow(InvalidProjectIdError);
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    expect(() => assertProjectId(circular)).toThrow(InvalidProjectIdError);
  });
});

describe("ProjectIdSchema", () => {
  it.each(VALID)("accepts %j", (id) => {
    expect(v.parse(ProjectIdSchema, id)).toBe(id);
  });

  it.each(INVALID_STRINGS)("refuses %j with the DNS-label message", (id) => {
    const result = v.safeParse(ProjectIdSchema, id);
    expect(result.success).toBe(false);
    expect(result.issues?.[0]?.message).toContain("projectId must be a DNS label");
    expect(result.issues?.[0]?.input).toBe(id);
  });

  it.each([42, null, undefined, {}, ["a"]])("refuses the non-string %j", (value) => {
    const result = v.safeParse(ProjectIdSchema, value);
    expect(result.success).toBe(false);
    expect(result.issues?.[0]?.message).toBe("projectId must be a string");
  });

  it("assertProjectId agrees with the schema on every sample (it is derived from it)", () => {
    for (const id of [...VALID, ...INVALID_STRINGS, 42, null]) {
      const schemaOk = v.safeParse(ProjectIdSchema, id).success;
      let assertOk = true;
      try {
        assertProjectId(id);
      } catch {
        assertOk = false;
      }
      expect(assertOk).toBe(schemaOk);
    }
  });
});
