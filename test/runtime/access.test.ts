/**
 * The preview host -> project mapping, link tokens and the access cookie (pure). Over real HTTP
 * with Traefik's headers: test/runtime/forward-auth.int.test.ts.
 */
import { describe, expect, it } from "vitest";
import { ACCESS_COOKIE, LinkSigner, accessCookie, isPreviewHost, projectOfHost, readCookie, takeToken } from "../../runtime/access.js";

const DOMAIN = "preview.localhost";
const SECRET = "s".repeat(32);

describe("projectOfHost: exact {id}.{PREVIEW_DOMAIN}", () => {
  it.each([
    ["p1.preview.localhost", "p1"],
    ["11.preview.localhost", "11"],
    ["P1.Preview.LocalHost", "p1"],
    ["p1.preview.localhost:8080", "p1"],
    ["p1.preview.localhost.", "p1"],
    ["a-b-c.preview.localhost", "a-b-c"],
  ])("%s -> %s", (host, id) => expect(projectOfHost(host, DOMAIN)).toBe(id));

  it.each([
    undefined,
    "",
    "preview.localhost",
    ".preview.localhost",
    "x.p1.preview.localhost", // a subdomain of a preview is not the preview
    "p1preview.localhost", // suffix without the dot
    "p1.preview.localhost.evil.com",
    "p1.preview.localhost.evil",
    "p1.other.localhost",
    "-p1.preview.localhost",
    "p_1.preview.localhost",
    `${"a".repeat(64)}.preview.localhost`,
    "p1.preview.localhost:abc",
  ])("%s names no project", (host) => expect(projectOfHost(host, DOMAIN)).toBeNull());

  it("1. is not 11.: each host maps to its own id only", () => {
    expect(projectOfHost("1.preview.localhost", DOMAIN)).toBe("1");
    expect(projectOfHost("11.preview.localhost", DOMAIN)).toBe("11");
    expect(projectOfHost("11.preview.localhost", DOMAIN)).not.toBe("1");
  });

  it("isPreviewHost: anything under the domain (the wake router's catch-all), valid or not", () => {
    expect(isPreviewHost("x.p1.preview.localhost", DOMAIN)).toBe(true);
    expect(isPreviewHost("p1.preview.localhost:80", DOMAIN)).toBe(true);
    expect(isPreviewHost("preview.localhost", DOMAIN)).toBe(false);
    expect(isPreviewHost("127.0.0.1:3000", DOMAIN)).toBe(false);
  });
});

describe("LinkSigner", () => {
  const signer = new LinkSigner(SECRET, 3_600_000);
  const now = Date.UTC(2026, 10, 26, 12);

  it("refuses a short secret", () => {
    expect(() => new LinkSigner("short", 1000)).toThrow(/at least 32 characters/);
  });

  it("a token opens its own project until it expires", () => {
    const { token, expiresAt } = signer.sign("p1", now);
    expect(expiresAt.getTime()).toBe(now + 3_600_000);
    expect(token).toMatch(/^\d+\.[A-Za-z0-9_-]{43}$/);
    expect(signer.verify("p1", token, now)?.getTime()).toBe(expiresAt.getTime());
    expect(signer.verify("p1", token, expiresAt.getTime() - 1)).not.toBeNull();
    expect(signer.verify("p1", token, expiresAt.getTime())).toBeNull();
  });

  it("never opens another project, and refuses forged, tampered and malformed tokens", () => {
    const { token } = signer.sign("p1", now);
    expect(signer.verify("p1", token, now)).not.toBeNull(); // remembered as verified for p1 only
    expect(signer.verify("p11", token, now)).toBeNull();
    expect(signer.verify("p2", token, now)).toBeNull();
    const [exp, sig] = token.split(".") as [string, string];
    // A later expiry with the same signature
    expect(signer.verify("p1", `${Number(exp) + 3600}.${sig}`, now)).toBeNull();
    // One signature character changed
    const flipped = sig.slice(0, 10) + (sig[10] === "A" ? "B" : "A") + sig.slice(11);
    expect(signer.verify("p1", `${exp}.${flipped}`, now)).toBeNull();
    // Another secret
    expect(new LinkSigner("t".repeat(32), 3_600_000).verify("p1", token, now)).toBeNull();
    for (const bad of ["", "x", `${exp}`, `${exp}.`, `${exp}.${sig}x`, `-1.${sig}`, `${exp}.${sig.slice(1)}`]) expect(signer.verify("p1", bad, now), bad).toBeNull();
    expect(signer.verify("p1", null, now)).toBeNull();
  });

  it("one spelling per token: a leading zero in the expiry, or spare bits set in the last character, do not verify", () => {
    const { token } = signer.sign("p1", now);
    const [exp, sig] = token.split(".") as [string, string];
    expect(signer.verify("p1", `0${exp}.${sig}`, now)).toBeNull();
    // The 43rd character carries 4 signature bits and 2 spare ones: flip a spare bit.
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const last = alphabet[alphabet.indexOf(sig[42]!) ^ 1]!;
    const variant = `${exp}.${sig.slice(0, 42)}${last}`;
    expect(Buffer.from(variant.split(".")[1]!, "base64url")).toEqual(Buffer.from(sig, "base64url"));
    expect(signer.verify("p1", variant, now)).toBeNull();
    expect(signer.verify("p1", token, now)).not.toBeNull();
  });
});

describe("cookie and token helpers", () => {
  it("the access cookie is HttpOnly, SameSite=Lax, host-only, Secure only over https", () => {
    const at = Date.UTC(2026, 0, 1);
    const plain = accessCookie("tok", new Date(at + 90_000), false, at);
    expect(plain).toBe(`${ACCESS_COOKIE}=tok; Path=/; Max-Age=90; HttpOnly; SameSite=Lax`);
    expect(plain).not.toMatch(/Domain=/i);
    expect(accessCookie("tok", new Date(at + 90_000), true, at)).toMatch(/; Secure$/);
  });

  it("reads one cookie among others", () => {
    expect(readCookie(`a=1; ${ACCESS_COOKIE}=v.x; b=2`, ACCESS_COOKIE)).toBe("v.x");
    expect(readCookie(`x${ACCESS_COOKIE}=v`, ACCESS_COOKIE)).toBeNull();
    expect(readCookie(undefined, ACCESS_COOKIE)).toBeNull();
  });

  it("takes the token out of a URI, keeping the rest of the query", () => {
    expect(takeToken("/a/b?x=1&preview_token=T.1&y=2")).toEqual({ hasToken: true, token: "T.1", rest: "/a/b?x=1&y=2" });
    expect(takeToken("/?preview_token=T")).toEqual({ hasToken: true, token: "T", rest: "/" });
    expect(takeToken("/page?q=preview_token")).toEqual({ hasToken: false, token: null, rest: "/page?q=preview_token" });
    expect(takeToken("/")).toEqual({ hasToken: false, token: null, rest: "/" });
  });
});
