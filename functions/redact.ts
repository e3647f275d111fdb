/**
 * Secret redaction for text that leaves this service (diagnose-preview's prompt to Claude): the
 * container's own environment values, and anything shaped like a key, a token or a connection
 * string. Pure; no I/O.
 *
 * Contract:
 *   - every exact occurrence of a given secret value of at least `MIN_SECRET_LENGTH` characters is
 *     replaced (shorter values, e.g. `PORT=3000` or `HOSTNAME=0.0.0.0`, would blank out ordinary
 *     words, addresses and numbers, and are too short to be a secret worth the name);
 *   - then the generic patterns below, each replaced by `[REDACTED:<kind>]` (the kind helps the
 *     reader; the value never survives, not even in part);
 *   - idempotent: redacting redacted text changes nothing more.
 * It errs on the side of hiding: long hexadecimal and base64 runs (also container ids and
 * commit hashes) go too, since a diagnosis does not need them.
 */

export const MIN_SECRET_LENGTH = 8;

const mark = (kind: string) => `[REDACTED:${kind}]`;

/**
 * Names of keys whose value is a secret, in `key=value`, `key: value` and JSON forms. The secret
 * word ends the name or one of its `_ . -` segments: `SECRET_KEY_BASE`, `apiKey`, not
 * `authentication_error`.
 *
 * Linear time (a hostile log must not stall the event loop: issue F1 of the diagnosis review):
 * the name starts only where a name starts (a lookbehind, not `\b`, which matches inside
 * `key.key.key...` at every dot), it is at most NAME_MAX characters, and the secret word is found
 * by a lookahead (atomic) inside it, so no two unbounded quantifiers ever compete for the same
 * characters. A name longer than NAME_MAX is not recognised (the hex and base64 rules still see
 * its value).
 */
const NAME_MAX = 128;
const NAME_CHAR = "A-Za-z0-9_.-";
const SECRET_WORD = "secret|token|passw(?:or)?d|pwd|passphrase|api[_-]?key|access[_-]?key|private[_-]?key|client[_-]?secret|credentials?|auth|key|signature|session|cookie|dsn";
const SECRET_NAME = String.raw`(?<![${NAME_CHAR}])(?=[${NAME_CHAR}]{0,${NAME_MAX}}?(?:${SECRET_WORD})(?:[_.-]|(?![${NAME_CHAR}])))[${NAME_CHAR}]{1,${NAME_MAX}}(?![${NAME_CHAR}])`;

/**
 * The generic patterns, in order (earlier ones see the text first). Each replaces the secret
 * part only, so the line stays readable (`password=[REDACTED:secret]`).
 */
type Replacer = (match: string, ...groups: string[]) => string;

const PATTERNS: ReadonlyArray<{ kind: string; re: RegExp; replace?: Replacer }> = [
  // PEM blocks: private keys and certificates.
  { kind: "private-key", re: /-----BEGIN [A-Z0-9 ]{0,40}(?:PRIVATE KEY|CERTIFICATE)[A-Z ]{0,40}-----[\s\S]*?(?:-----END [A-Z0-9 ]{0,60}-----|$)/g },
  // Credentials in a URL: scheme://user:password@host (postgres, mysql, mongodb, redis, amqp, https ...).
  // User and password are bounded (256 characters each): unbounded, every `x://` start would scan to the
  // end of a run without `@` (quadratic: 83 s on 1 MB of `ab://:`).
  {
    kind: "credentials",
    re: /\b([a-z][a-z0-9+.-]{1,30}:\/\/)([^\s/@:'"<>]{0,256}):([^\s@'"<>]{0,256})@/gi,
    replace: (_m, scheme) => `${scheme}${mark("credentials")}@`,
  },
  // Authorization headers: keep the scheme, hide the credentials.
  { kind: "token", re: /\b(Bearer|Basic|Token|Bot)(\s+)([A-Za-z0-9._~+/=-]{8,})/g, replace: (_m, scheme, space) => `${scheme}${space}${mark("token")}` },
  // JWTs (three base64url parts, the first a JSON header).
  // (starts only where a base64url run starts: `\b` would also match after every `-` of a run)
  { kind: "jwt", re: /(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}/g },
  // Provider-shaped keys: Anthropic / OpenAI (sk-...), AWS access key ids, GitHub, GitLab, Slack,
  // npm, Stripe, Google API keys, Inngest signing/event keys.
  { kind: "api-key", re: /\b(?:sk|rk|pk)-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_-]{16,}/g },
  { kind: "aws-key", re: /\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b/g },
  { kind: "api-key", re: /\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,}|xox[abposr]-[A-Za-z0-9-]{10,}|npm_[A-Za-z0-9]{30,}|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}|AIza[A-Za-z0-9_-]{30,}|signkey-[a-z]+-[A-Za-z0-9]{16,})/g },
  // key=value, key: value, "key": "value", KEY='value' where the key names a secret. A quoted
  // value runs to its closing quote or, unterminated (a cut line), to the end of the line: the
  // match never fails after its name, so no start rescans the line (linear).
  {
    kind: "secret",
    re: new RegExp(String.raw`(["']?${SECRET_NAME}["']?\s*(?:=|:)\s*)(?:"([^"\r\n]*)"?|'([^'\r\n]*)'?|([^\s,;&"'}\]]+))`, "gi"),
    replace: (m: string, prefix: string, dq: string | undefined, sq: string | undefined, bare: string | undefined) => {
      const value = dq ?? sq ?? bare ?? "";
      // Nothing to hide (empty, already redacted, or a plain word such as `auth: true`).
      if (value === "" || value.startsWith("[REDACTED") || /^(true|false|null|none|undefined|required|optional|bearer|basic|digest|negotiate|\d{1,5})$/i.test(value)) return m;
      // Only the value goes; its quotes (or their absence) stay as they were.
      return prefix + m.slice(prefix.length).replace(value, mark("secret"));
    },
  },
  // Long runs that look random: hexadecimal (32+), base64 / base64url (40+ with letters and digits).
  // (hex: not only between word boundaries: `id_9f86d08...` or `x9f86d08...` hide it too)
  { kind: "hex", re: /(?<![0-9a-fA-F])[0-9a-fA-F]{32,}(?![0-9a-fA-F])/g },
  {
    kind: "base64",
    re: /[A-Za-z0-9+/_-]{40,}={0,2}/g,
    // Random bytes in base64 mix upper case, lower case and digits within 40 characters; paths
    // (`/app/.next/server/chunks/...`) and identifiers rarely do, and are what a diagnosis needs.
    replace: (m: string) => (/[0-9]/.test(m) && /[a-z]/.test(m) && /[A-Z]/.test(m) && !m.startsWith("/") ? mark("base64") : m),
  },
];

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** `text` with `secrets` (exact values) and every generic pattern replaced; see the contract above. */
export function redact(text: string, secrets: readonly string[] = []): string {
  let out = text;
  const values = [...new Set(secrets.map((s) => s.trim()).filter((s) => s.length >= MIN_SECRET_LENGTH))]
    // Longest first, so a value containing another is replaced whole.
    .sort((a, b) => b.length - a.length);
  if (values.length > 0) out = out.replace(new RegExp(values.map(escapeRegExp).join("|"), "g"), mark("env"));
  for (const p of PATTERNS) out = p.replace ? out.replace(p.re, p.replace) : out.replace(p.re, mark(p.kind));
  return out;
}
