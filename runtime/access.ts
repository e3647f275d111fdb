/**
 * Who may open a preview: the preview host -> project mapping, and the signed, expiring links of
 * `PREVIEW_ACCESS=token` (and the cookie a link leaves behind).
 *
 * Token: `<expiry, unix seconds>.<base64url HMAC-SHA256(PREVIEW_LINK_SECRET, "preview-link:v1:" +
 * projectId + ":" + expiry)>`. The project id is not in the token: it is the host the token is
 * presented on, so a token minted for one project never verifies on another's host. Signatures
 * are compared with `crypto.timingSafeEqual` over fixed-length digests.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { isProjectId, type ProjectId } from "../functions/project-id.js";

/** Query parameter a link carries its token in. */
export const TOKEN_PARAM = "preview_token";
/** Cookie a valid link leaves on the preview's host (host-only: no Domain attribute). */
export const ACCESS_COOKIE = "preview_access";

const PORT_SUFFIX = /:\d{1,5}$/;

/**
 * The project a preview host names: exactly `{id}.{domain}` (any `:port` and a trailing dot
 * ignored, case-insensitive), `id` a valid project id. Never a substring or suffix match:
 * `a.b.{domain}`, `x{domain}` and `{domain}` itself name no project. `domain` is lower case
 * (the config lower-cases it).
 */
export function projectOfHost(host: string | undefined | null, domain: string): ProjectId | null {
  const h = normalizeHost(host);
  const suffix = `.${domain}`;
  if (h.length <= suffix.length || !h.endsWith(suffix)) return null;
  const label = h.slice(0, h.length - suffix.length);
  return isProjectId(label) ? label : null;
}

/** Whether `host` is under the preview domain at all (a wake request), valid id or not. */
export function isPreviewHost(host: string | undefined | null, domain: string): boolean {
  return normalizeHost(host).endsWith(`.${domain}`);
}

/** A `Host` as compared: trimmed, lower case, without `:port` or a trailing dot ("" for none). */
function normalizeHost(host: string | undefined | null): string {
  if (!host) return "";
  return host.trim().toLowerCase().replace(PORT_SUFFIX, "").replace(/\.$/, "");
}

const TOKEN = /^([1-9]\d{0,11})\.([A-Za-z0-9_-]{43})$/;
/** Verified tokens remembered (the hot path skips the HMAC for them); cleared when full. */
const VERIFIED_MEMORY = 10_000;

export interface SignedLink {
  token: string;
  expiresAt: Date;
}

/** Mints and checks link tokens; holds the secret (never logged, never returned). */
export class LinkSigner {
  readonly #secret: Buffer;
  /** Verified tokens -> expiry (ms), bounded by VERIFIED_MEMORY. */
  readonly #verified = new Map<string, number>();

  constructor(
    secret: string,
    /** PREVIEW_LINK_TTL. */
    readonly ttlMs: number,
  ) {
    if (secret.length < 32) throw new RangeError("PREVIEW_LINK_SECRET must be at least 32 characters");
    this.#secret = Buffer.from(secret, "utf8");
  }

  sign(projectId: ProjectId, now = Date.now()): SignedLink {
    const expiry = Math.floor((now + this.ttlMs) / 1000);
    return { token: `${expiry}.${this.#mac(projectId, expiry).toString("base64url")}`, expiresAt: new Date(expiry * 1000) };
  }

  /** The token's expiry when it is a valid, unexpired token for `projectId`; null otherwise. */
  verify(projectId: ProjectId, token: string | null | undefined, now = Date.now()): Date | null {
    if (!token) return null;
    // Tokens that verified before (a cookie comes with every request of a page): no HMAC again.
    // Keyed by the whole token and project; only verified tokens are kept, so an unknown or
    // forged token always takes the constant-time comparison below.
    const known = this.#verified.get(`${projectId} ${token}`);
    if (known !== undefined) return known > now ? new Date(known) : null;
    const m = TOKEN.exec(token);
    if (!m) return null;
    const expiry = Number(m[1]);
    const given = Buffer.from(m[2]!, "base64url");
    const expected = this.#mac(projectId, expiry);
    // Both 32 bytes (43 base64url characters decode to 32), compared in constant time; the
    // expiry is checked after, so a forged and an expired token take the same path.
    // The last base64url character carries 2 spare bits: only the canonical spelling counts,
    // so one link has exactly one token (and one entry in the cache above).
    const ok = given.length === expected.length && timingSafeEqual(given, expected) && given.toString("base64url") === m[2];
    if (!ok || expiry * 1000 <= now) return null;
    if (this.#verified.size >= VERIFIED_MEMORY) this.#verified.clear();
    this.#verified.set(`${projectId} ${token}`, expiry * 1000);
    return new Date(expiry * 1000);
  }

  #mac(projectId: ProjectId, expiry: number): Buffer {
    return createHmac("sha256", this.#secret).update(`preview-link:v1:${projectId}:${expiry}`).digest();
  }
}

/** The value of cookie `name` in a `Cookie` header, or null (the first, when there are several). */
export function readCookie(header: string | undefined | null, name: string): string | null {
  return readCookies(header, name)[0] ?? null;
}

/**
 * Every value of cookie `name` in a `Cookie` header, in order. Several can come: one set by a
 * sibling host for the whole domain shadows the host's own in the first place, so a caller that
 * checks access tries them all.
 */
export function readCookies(header: string | undefined | null, name: string): string[] {
  if (!header) return [];
  const values: string[] = [];
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) values.push(part.slice(eq + 1).trim());
  }
  return values;
}

/**
 * The access cookie: HttpOnly, SameSite=Lax, Path=/, host-only (scoped to the preview's own
 * host: no Domain attribute, so it is never sent to another preview), Secure when the request
 * came in over https; it lives as long as the link's token.
 */
export function accessCookie(token: string, expiresAt: Date, secure: boolean, now = Date.now()): string {
  const maxAge = Math.max(0, Math.floor((expiresAt.getTime() - now) / 1000));
  return `${ACCESS_COOKIE}=${token}; Path=/; Max-Age=${maxAge}; HttpOnly; SameSite=Lax${secure ? "; Secure" : ""}`;
}

/**
 * Splits a request URI into its token (the `preview_token` query parameter) and the same URI
 * without it (for the redirect). `hasToken` false: no such parameter.
 */
export function takeToken(uri: string): { hasToken: boolean; token: string | null; rest: string } {
  const q = uri.indexOf("?");
  if (q < 0) return { hasToken: false, token: null, rest: uri };
  const hashAt = uri.indexOf("#", q);
  const query = uri.slice(q + 1, hashAt < 0 ? undefined : hashAt);
  const params = new URLSearchParams(query);
  if (!params.has(TOKEN_PARAM)) return { hasToken: false, token: null, rest: uri };
  const token = params.get(TOKEN_PARAM);
  params.delete(TOKEN_PARAM);
  const left = params.toString();
  const rest = uri.slice(0, q) + (left ? `?${left}` : "");
  return { hasToken: true, token, rest: rest.startsWith("/") ? rest : `/${rest}` };
}
