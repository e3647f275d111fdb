/**
 * Which object keys may become files of a site folder (the zip-slip of object stores), checked on
 * listings built here: a real S3-compatible test server resolves `..` in keys on the way in, so
 * hostile keys cannot be planted through it (the HTTP-level version of this is in
 * site-objects.int.test.ts, with a constructed ListObjectsV2 answer).
 */
import { describe, expect, it } from "vitest";
import { MAX_RELATIVE_PATH, MAX_SEGMENTS, describeRefused, refuseKey, siteEntries } from "../../storage/object-keys.js";

const P = "projects/p1/site/";

describe("refuseKey", () => {
  it.each([
    ["index.html"],
    ["app/page.tsx"],
    ["public/images/logo.png"],
    ["a b/ü/日本.txt"],
    ["..hidden"],
    ["a/...b"],
    ["a/.env"],
    ["folder/"],
    [""],
  ])("accepts %j", (rel) => {
    expect(refuseKey(P, P + rel)).toBeNull();
  });

  it.each([
    ["../escape", /`\.\.` segment/],
    ["a/../../escape", /`\.\.` segment/],
    ["a/..", /`\.\.` segment/],
    ["..", /`\.\.` segment/],
    ["/etc/passwd", /absolute path/],
    ["a\\..\\..\\escape", /backslash/],
    ["a\\b", /backslash/],
    ["a\u0000b", /NUL/],
    ["a\nb", /control character/],
    ["a/./b", /`\.` segment/],
    ["a//b", /empty segment/],
    [`${"x".repeat(256)}`, /longer than 255 bytes/],
    [`${"é".repeat(128)}`, /longer than 255 bytes/],
    [Array.from({ length: 20 }, () => "y".repeat(200)).join("/"), new RegExp(`longer than ${MAX_RELATIVE_PATH} bytes`)],
    [Array.from({ length: MAX_SEGMENTS + 1 }, () => "d").join("/"), /nested more than/],
    ["bad\uD800name", /not valid Unicode/],
  ])("refuses %j", (rel, why) => {
    expect(refuseKey(P, P + rel)).toMatch(why);
  });

  it("refuses keys of another project or outside the site prefix", () => {
    expect(refuseKey(P, "projects/p2/site/index.html")).toMatch(/not below/);
    expect(refuseKey(P, "projects/p1/logs/x.log")).toMatch(/not below/);
    expect(refuseKey(P, "projects/p1/site")).toMatch(/not below/);
  });
});

describe("siteEntries", () => {
  it("turns keys into relative paths, folder markers into folders", () => {
    const { entries, refused } = siteEntries(P, [P, `${P}a/`, `${P}a/b.txt`, `${P}index.html`]);
    expect(refused).toEqual([]);
    expect(entries).toEqual([
      { key: `${P}a/`, path: "a", segments: ["a"], folder: true },
      { key: `${P}a/b.txt`, path: "a/b.txt", segments: ["a", "b.txt"], folder: false },
      { key: `${P}index.html`, path: "index.html", segments: ["index.html"], folder: false },
    ]);
  });

  it("refuses the whole listing when one key is hostile, naming every bad key", () => {
    const { entries, refused } = siteEntries(P, [`${P}ok.txt`, `${P}../../etc/cron.d/x`, `${P}/abs`, `${P}fine/too.txt`]);
    expect(entries).toEqual([]);
    expect(refused.map((r) => r.key)).toEqual([`${P}../../etc/cron.d/x`, `${P}/abs`]);
    expect(describeRefused(refused)).toContain("would land outside the site folder");
  });

  it("refuses a name that is a file and a folder at once", () => {
    const { entries, refused } = siteEntries(P, [`${P}a`, `${P}a/b`]);
    expect(entries).toEqual([]);
    expect(refused).toEqual([{ key: `${P}a`, why: expect.stringMatching(/file and a folder/) }]);
    expect(siteEntries(P, [`${P}a`, `${P}a/`]).refused).toHaveLength(1);
  });

  it("refuses the same file listed twice", () => {
    expect(siteEntries(P, [`${P}a`, `${P}a`]).refused).toEqual([{ key: `${P}a`, why: expect.stringMatching(/same file/) }]);
  });

  it("describes at most five refusals, then how many more", () => {
    const refused = Array.from({ length: 8 }, (_, i) => ({ key: `k${i}`, why: "bad" }));
    expect(describeRefused(refused)).toMatch(/"k4" bad; and 3 more$/);
  });
});
