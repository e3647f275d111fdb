/**
 * Secret redaction for text that leaves this service (diagnose-preview's prompt to Claude): the
 * container's own environment values, and anything shaped like a key, a token or a connection
 * string. Pure; no I/O.
 *
 * Contract:
 *   - first the text is normalised (`normalize`: what hides a secret from a pattern while a reader
 *     still sees it): terminal escape codes, control and invisible format characters removed,
 *     printable `%xx`, `\u00xx` and `\xhh` escapes decoded, string literals that Node's inspector
 *     wraps (`'abc' +\n  'def'`) joined, and letters spaced out one by one joined;
 *   - every exact occurrence of a given secret value of at least `MIN_SECRET_LENGTH` characters is
 *     replaced (shorter values, e.g. `PORT=3000` or `HOSTNAME=0.0.0.0`, would blank out ordinary
 *     words, addresses and numbers, and are too short to be a secret worth the name);
 *   - and every piece of `PIECE_LENGTH` (12) characters or more of an opaque value (one token
 *     of 16+ characters, not a path or URL: a generated secret, a key), in any letter case:
 *     a secret printed in parts (split over lines, cut by a log tail) goes too;
 *   - then the generic patterns below, each replaced by `[REDACTED:<kind>]` (the kind helps the
 *     reader; the value never survives, not even in part);
 *   - idempotent: redacting redacted text changes nothing more (but for text escaped twice,
 *     `%2541`, which each pass decodes one level).
 * Linear time in the text (and the total length of the values): see SECRET_NAME.
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
/** Words that name a secret only as a whole segment: `DB_PASS`, `SMTP_PW`, `PRIVATE`, not `compass`. */
const SECRET_SEGMENT = "pass|pw|private";
const SECRET_NAME = String.raw`(?<![${NAME_CHAR}])(?=[${NAME_CHAR}]{0,${NAME_MAX}}?(?:(?:${SECRET_WORD})|(?<![A-Za-z0-9])(?:${SECRET_SEGMENT}))(?:[_.-]|(?![${NAME_CHAR}])))[${NAME_CHAR}]{1,${NAME_MAX}}(?![${NAME_CHAR}])`;
/** A quote around a name or value, also escaped once or more (JSON inside a JSON string: `\"`). */
const QUOTE = String.raw`(?:\\{1,4}"|["'])?`;

/** A value that is no secret: `auth: true`, `token: null`, `password: required`, `key: 3000`. */
const PLAIN_WORD = /^(true|false|null|none|undefined|required|optional|missing|bearer|basic|digest|negotiate|\d{1,5})$/i;

/**
 * The generic patterns, in order (earlier ones see the text first). Each replaces the secret
 * part only, so the line stays readable (`password=[REDACTED:secret]`).
 */
type Replacer = (match: string, ...groups: string[]) => string;

const PATTERNS: ReadonlyArray<{ kind: string; re: RegExp; replace?: Replacer }> = [
  // PEM blocks: private keys and certificates.
  { kind: "private-key", re: /-----BEGIN [A-Z0-9 ]{0,40}(?:PRIVATE KEY|CERTIFICATE)[A-Z ]{0,40}-----[\s\S]*?(?:-----END [A-Z0-9 ]{0,60}-----|$)/gi },
  // Credentials in a URL: scheme://user:password@host (postgres, mysql, mongodb, redis, amqp, https ...).
  // User and password are bounded (256 characters each): unbounded, every `x://` start would scan to the
  // end of a run without `@` (quadratic: 83 s on 1 MB of `ab://:`).
  {
    kind: "credentials",
    // (the password runs to the last `@` of the run: a decoded `%40` may be part of it)
    re: /\b([a-z][a-z0-9+.-]{1,30}:\/\/)([^\s/@:'"<>]{0,256}):([^\s'"<>]{0,256})@/gi,
    replace: (_m, scheme) => `${scheme}${mark("credentials")}@`,
  },
  // Authorization headers: keep the scheme, hide the credentials.
  { kind: "token", re: /\b(Bearer|Basic|Token|Bot)(\s+)([A-Za-z0-9._~+/=-]{8,})/g, replace: (_m, scheme, space) => `${scheme}${space}${mark("token")}` },
  // `bearer` in any case (unlike `basic` or `token`, it is no ordinary word), and whatever follows
  // an `authorization:` header's scheme, in any case.
  { kind: "token", re: /\b(bearer)(\s+)([A-Za-z0-9._~+/=-]{8,})/gi, replace: (_m, scheme, space) => `${scheme}${space}${mark("token")}` },
  {
    kind: "token",
    re: /\b((?:proxy-)?authorization["']?[ \t]*[:=][ \t]*["']?(?:[A-Za-z]{1,20}[ \t]+)?)([A-Za-z0-9._~+/=-]{8,})/gi,
    replace: (m, head, token) => (PLAIN_WORD.test(token ?? "") ? m : `${head}${mark("token")}`),
  },
  // JWTs (three base64url parts, the first a JSON header).
  // (starts only where a base64url run starts: `\b` would also match after every `-` of a run)
  { kind: "jwt", re: /(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}/g },
  // Provider-shaped keys: Anthropic / OpenAI (sk-...), AWS access key ids, GitHub, GitLab, Slack,
  // npm, Stripe, Google API keys, Inngest signing/event keys.
  { kind: "api-key", re: /\b(?:sk|rk|pk)-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_-]{16,}/g },
  { kind: "aws-key", re: /\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b/g },
  { kind: "api-key", re: /\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,}|xox[abposr]-[A-Za-z0-9-]{10,}|npm_[A-Za-z0-9]{30,}|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}|AIza[A-Za-z0-9_-]{30,}|signkey-[a-z]+-[A-Za-z0-9]{16,})/g },
  // key=value, key: value, key => value, "key": "value", KEY='value' (also with escaped quotes,
  // JSON inside a JSON string) where the key names a secret. A quoted value runs to its closing
  // quote (escaped quotes inside it included) or, unterminated (a cut line), to the end of the
  // line: the match never fails after its name, so no start rescans the line (linear).
  {
    kind: "secret",
    re: new RegExp(
      String.raw`(${QUOTE}${SECRET_NAME}${QUOTE}\s*(?:=>|=|:)\s*)(?:\\{1,4}"((?:[^"\\\r\n]|\\+(?![\\"]))*)(?:\\{1,4}")?|"((?:[^"\\\r\n]|\\.)*)"?|'((?:[^'\\\r\n]|\\.)*)'?|([^\s,;&"'}\]]+))`,
      "gi",
    ),
    replace: (m: string, prefix: string, esc: string | undefined, dq: string | undefined, sq: string | undefined, bare: string | undefined) => {
      const value = esc ?? dq ?? sq ?? bare ?? "";
      // Nothing to hide (empty, already redacted, or a plain word such as `auth: true`).
      if (value === "" || value.startsWith("[REDACTED") || PLAIN_WORD.test(value)) return m;
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

/** Pieces of an opaque environment value this long or longer are redacted wherever they appear. */
export const PIECE_LENGTH = 12;

/**
 * Whether pieces of `value` are redacted too: one token of 16+ characters that is not a path,
 * a list of paths or a URL (`PATH`, `NEXT_PUBLIC_SITE_URL`: their pieces are ordinary text).
 */
const opaque = (value: string) => value.length >= 16 && !/\s/.test(value) && !value.startsWith("/") && !value.includes("://") && !value.includes(":/");

/** ASCII letters lower-cased (length kept, unlike `toLowerCase` on some non-ASCII letters). */
const asciiLower = (s: string) => s.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));

/**
 * Every stretch of `text` covered by a `PIECE_LENGTH`-character piece of one of `values`
 * (ASCII case ignored), replaced by one marker. Linear: a set of the values' pieces, and one
 * look-up per position of the text.
 */
function redactPieces(text: string, values: readonly string[]): string {
  const pieces = new Set<string>();
  for (const v of values) {
    const lower = asciiLower(v);
    for (let i = 0; i + PIECE_LENGTH <= lower.length; i++) pieces.add(lower.slice(i, i + PIECE_LENGTH));
  }
  if (pieces.size === 0 || text.length < PIECE_LENGTH) return text;
  const lower = asciiLower(text);
  let out = "";
  let copied = 0; // text before this is in `out`
  let coveredTo = -1; // end of the stretch being covered
  let stretchStart = 0;
  for (let i = 0; i + PIECE_LENGTH <= lower.length; i++) {
    if (!pieces.has(lower.slice(i, i + PIECE_LENGTH))) continue;
    if (i > coveredTo) {
      if (coveredTo >= 0) {
        out += text.slice(copied, stretchStart) + mark("env");
        copied = coveredTo;
      }
      stretchStart = i;
    }
    coveredTo = i + PIECE_LENGTH;
  }
  if (coveredTo < 0) return text;
  return out + text.slice(copied, stretchStart) + mark("env") + text.slice(coveredTo);
}

/** Printable ASCII (not `%`, not `\`) from its escape: decoded, a secret is seen as what it is. */
const printable = (code: number) => (code >= 0x20 && code < 0x7f && code !== 0x25 && code !== 0x5c ? String.fromCharCode(code) : null);
const decodeHex = (m: string, hex: string) => printable(parseInt(hex, 16)) ?? m;

/**
 * What hides a secret from the patterns while a reader (or a model) still sees it, removed.
 * Every expression here is linear (no two quantifiers compete for the same characters).
 */
export function normalize(text: string): string {
  return (
    text
      // Escapes of printable ASCII: URL (`%41`), JSON / JS (`\u0041`, `\x41`).
      .replace(/%([0-9A-Fa-f]{2})/g, decodeHex)
      .replace(/\\u00([0-9A-Fa-f]{2})|\\x([0-9A-Fa-f]{2})/g, (m: string, u: string | undefined, x: string | undefined) => decodeHex(m, (u ?? x)!))
      // Terminal escape codes: CSI (colours, cursor), OSC (titles, hyperlinks; to BEL or ST, or the
      // end of the line), and two-character escapes.
      .replace(/\u001b\[[0-?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b\n]*(?:\u0007|\u001b\\)?|\u001b[@-Z\\-_]/g, "")
      // Other control characters (but tab and line ends), and invisible format characters
      // (zero-width spaces and joiners, bidi marks, soft hyphens: Unicode category Cf).
      // eslint-disable-next-line no-control-regex
      .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]|\p{Cf}/gu, "")
      // Line and paragraph separators are line ends.
      .replace(/[\u2028\u2029]/g, "\n")
      // String literals wrapped by Node's inspector: `'abc' +\n  'def'` is `'abcdef'`.
      .replace(/(['"`])[ \t]*\+[ \t]*\r?\n[ \t]*\1/g, "")
      // Letters spaced out one by one (12 or more: `s e c r e t ...`) joined.
      .replace(/(?<!\S)(?:\S[ \t]){11,}\S(?!\S)/g, (m: string) => m.replace(/[ \t]/g, ""))
  );
}

/** `text` with `secrets` (exact values and pieces) and every generic pattern replaced; see the contract above. */
export function redact(text: string, secrets: readonly string[] = []): string {
  let out = normalize(text);
  const values = [...new Set(secrets.map((s) => s.trim()).filter((s) => s.length >= MIN_SECRET_LENGTH))]
    // Longest first, so a value containing another is replaced whole.
    .sort((a, b) => b.length - a.length);
  if (values.length > 0) out = out.replace(new RegExp(values.map(escapeRegExp).join("|"), "g"), mark("env"));
  out = redactPieces(out, values.filter(opaque));
  for (const p of PATTERNS) out = p.replace ? out.replace(p.re, p.replace) : out.replace(p.re, mark(p.kind));
  return out;
}
