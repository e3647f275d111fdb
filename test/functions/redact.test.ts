/** The redactor (functions/redact.ts): what leaves the service for Claude carries no secret. */
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { MIN_SECRET_LENGTH, redact } from "../../functions/redact.js";

/** Every secret must be gone, whole and in any 8-character piece. */
function expectGone(out: string, secret: string) {
  expect(out).not.toContain(secret);
  for (let i = 0; i + 8 <= secret.length; i += 4) expect(out, `piece ${secret.slice(i, i + 8)}`).not.toContain(secret.slice(i, i + 8));
}

describe("redact: the container's environment values", () => {
  it("replaces every occurrence of each value, whatever it looks like", () => {
    const values = ["correct horse battery staple", "p@$$w0rd.(with)[regex]*chars+?", "Ünïcødé-sécret-vàlue"];
    const log = values.map((v) => `start ${v} middle ${v}end\n`).join("");
    const out = redact(log, values);
    for (const v of values) expectGone(out, v);
    expect(out.match(/\[REDACTED:env\]/g)).toHaveLength(6);
    expect(out).toContain("start [REDACTED:env] middle [REDACTED:env]end");
  });

  it("replaces a value containing another value whole (longest first)", () => {
    expect(redact("x=abcdefgh-ijklmnop y", ["abcdefgh", "abcdefgh-ijklmnop"])).toBe("x=[REDACTED:env] y");
  });

  it(`leaves values shorter than ${MIN_SECRET_LENGTH} characters (PORT=3000, HOSTNAME=0.0.0.0, HOME=/tmp) and blank ones alone`, () => {
    const log = "listening on 0.0.0.0:3000, HOME is /tmp";
    expect(redact(log, ["3000", "0.0.0.0", "/tmp", "", "   "])).toBe(log);
  });

  it("a value of random bytes in base64, hex or base64url", () => {
    const raw = randomBytes(24);
    for (const value of [raw.toString("base64"), raw.toString("hex"), raw.toString("base64url")]) {
      expectGone(redact(`PAYLOAD_SECRET is ${value}.`, [value]), value);
    }
  });
});

describe("redact: secrets by shape", () => {
  const cases: Array<[string, string, string]> = [
    ["an Anthropic key", "sk-ant-api03-AbCdEf0123456789_-XyZabcdefghijklmnop", "[REDACTED:api-key]"],
    ["an OpenAI project key", "sk-proj-AbCdEf0123456789abcdefghij", "[REDACTED:api-key]"],
    ["an AWS access key id", "AKIAIOSFODNN7EXAMPLE", "[REDACTED:aws-key]"],
    ["an AWS session key id", "ASIAY34FZKBOKMUTVV7A", "[REDACTED:aws-key]"],
    ["a GitHub token", "ghp_16C7e42F292c6912E7710c838347Ae178B4a", "[REDACTED:api-key]"],
    ["a GitHub fine-grained token", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "[REDACTED:api-key]"],
    ["a GitLab token", "glpat-abcdefghij0123456789", "[REDACTED:api-key]"],
    ["a Slack token", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp", "[REDACTED:api-key]"],
    ["an npm token", "npm_abcdefghijklmnopqrstuvwxyz0123456789", "[REDACTED:api-key]"],
    ["a Stripe key", "sk_live_abcdefghijklmnop0123", "[REDACTED:api-key]"],
    ["a Google API key", "AIzaSyA-abcdefghijklmnopqrstuvwxyz012345", "[REDACTED:api-key]"],
    ["an Inngest signing key", "signkey-prod-0123456789abcdef0123", "[REDACTED:api-key]"],
    [
      "a JWT",
      "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
      "[REDACTED:jwt]",
    ],
    ["a long hex run", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "[REDACTED:hex]"],
    ["a long base64 run", "dGhpcyBpcyBhIHNlY3JldCB2YWx1ZSB0aGF0IGlzIGxvbmcgZW5vdWdoMTIz", "[REDACTED:base64]"],
  ];
  it.each(cases)("%s", (_what, secret, marker) => {
    const out = redact(`error while starting: ${secret} (see above)`);
    expectGone(out, secret);
    expect(out).toBe(`error while starting: ${marker} (see above)`);
  });

  it.each([
    ["postgres://app:s3cr3t-pa55@db.internal:5432/site", "postgres://[REDACTED:credentials]@db.internal:5432/site", "s3cr3t-pa55"],
    ["postgresql://payload:hunter2hunter2@10.0.0.5/payload?sslmode=require", "postgresql://[REDACTED:credentials]@10.0.0.5/payload?sslmode=require", "hunter2hunter2"],
    ["mongodb+srv://root:Pa%40ssw0rd@cluster0.mongodb.net/db", "mongodb+srv://[REDACTED:credentials]@cluster0.mongodb.net/db", "Pa%40ssw0rd"],
    ["redis://:only-a-password@cache:6379", "redis://[REDACTED:credentials]@cache:6379", "only-a-password"],
    ["https://deploy:ghtoken123456@git.example.com/repo.git", "https://[REDACTED:credentials]@git.example.com/repo.git", "ghtoken123456"],
  ])("credentials in a connection string: %s", (input, expected, secret) => {
    const out = redact(`connecting to ${input}`);
    expect(out).toBe(`connecting to ${expected}`);
    expectGone(out, secret);
  });

  it.each([
    ["Authorization: Bearer abcdefghijklmnop.qrstuvwxyz", "Authorization: Bearer [REDACTED:token]"],
    ["authorization: Basic dXNlcjpwYXNzd29yZA==", "authorization: Basic [REDACTED:token]"],
    ["x-api-key: my-private-api-key-value", "x-api-key: [REDACTED:secret]"],
  ])("authorization headers: %s", (input, expected) => {
    expect(redact(input)).toBe(expected);
  });

  it.each([
    ["PAYLOAD_SECRET=short-but-secret", "PAYLOAD_SECRET=[REDACTED:secret]"],
    ["DATABASE_PASSWORD='it is a secret'", "DATABASE_PASSWORD='[REDACTED:secret]'"],
    ['{"apiKey": "abc123xyz", "name": "site"}', '{"apiKey": "[REDACTED:secret]", "name": "site"}'],
    ["token: tok_42_x, next", "token: [REDACTED:secret], next"],
    ["GET /callback?code=1&access_token=zzzyyyxxx&state=2", "GET /callback?code=1&access_token=[REDACTED:secret]&state=2"],
    ["  client_secret = hush-hush", "  client_secret = [REDACTED:secret]"],
    ["MY_SERVICE_AUTH=Zm9vYmFy", "MY_SERVICE_AUTH=[REDACTED:secret]"],
    ["passwd=letmein;", "passwd=[REDACTED:secret];"],
  ])("key=value forms whose key names a secret: %s", (input, expected) => {
    expect(redact(input)).toBe(expected);
  });

  it("keeps plain words after a secret-looking key (auth: true, token: null, password: required)", () => {
    for (const line of ["auth: true", "token: null", "password: required", "secure cookie: false", "key: 3000"]) expect(redact(line)).toBe(line);
  });

  it("a key that only contains a secret word is no secret key (authentication_error: ..., tokenizer: ...)", () => {
    for (const line of ["401 authentication_error: invalid x-api-key", "tokenizer: gpt2", "keyboard: us", "sessionStorage: unavailable"]) expect(redact(line)).toBe(line);
  });

  it("a private key block", () => {
    const pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234\nabcdEFGH5678\n-----END RSA PRIVATE KEY-----";
    const out = redact(`loaded key:\n${pem}\nnext line`);
    expect(out).toBe("loaded key:\n[REDACTED:private-key]\nnext line");
  });

  it("a private key block cut off by the log tail", () => {
    expect(redact("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC")).toBe("[REDACTED:private-key]");
  });
});

describe("redact: what it leaves alone", () => {
  it("an ordinary Next.js / npm failure stays readable", () => {
    const log = [
      "> site@0.1.0 dev",
      "> next dev -p 3000",
      "  ▲ Next.js 15.1.0",
      "  - Local:        http://localhost:3000",
      "Module not found: Can't resolve '@payloadcms/next/layouts'",
      "npm ERR! code ERESOLVE",
      "npm ERR! ERESOLVE unable to resolve dependency tree",
      "Error: listen EADDRINUSE: address already in use :::3000",
      "    at Server.setupListenHandle [as _listen2] (node:net:1817:16)",
      "TypeError: Cannot read properties of undefined (reading 'map')",
      "    at Page (/app/src/app/(frontend)/page.tsx:12:23)",
      "Compiled /app/node_modules/.cache/webpack/client-development/index.pack in 2.3s",
      "    at /app/.next/server/chunks/ssr/node_modules_next_dist_esm_build_templates_app-page_4f3a2b1c.js:12:7",
      "    at Object.<anonymous> (/app/src/components/sections/hero2/variants/layout3/index.tsx:4:1)",
      "warn  - NEXT_PUBLIC_PAYLOAD_SERVER_URL_FOR_PRODUCTION_BUILD2 is not set",
    ].join("\n");
    expect(redact(log)).toBe(log);
  });

  it("is idempotent: redacting redacted text changes nothing more", () => {
    const log = [
      "postgres://app:pw123456@db/x",
      "Authorization: Bearer abcdefghijklmnop",
      "PAYLOAD_SECRET=0123456789abcdef0123456789abcdef0123456789abcdef",
      "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
      "secret env value here",
    ].join("\n");
    const once = redact(log, ["secret env value here"]);
    expect(redact(once, ["secret env value here"])).toBe(once);
    expect(once).not.toMatch(/pw123456|abcdefghijklmnop|0123456789abcdef|sk-ant|secret env value/);
  });

  it("a hex secret glued to other text", () => {
    expect(redact("sessionid_9f86d081884c7d659a2feaa0c55ad015a3bf4f1b!")).toBe("sessionid_[REDACTED:hex]!");
  });

  it("many secrets on one line, mixed kinds", () => {
    const out = redact("a=AKIAIOSFODNN7EXAMPLE b=sk-abcdefghijklmnopqrstu c=ghp_abcdefghijklmnopqrstuvwxyz0123 d", []);
    expect(out).toBe("a=[REDACTED:aws-key] b=[REDACTED:api-key] c=[REDACTED:api-key] d");
  });

  it("is fast on a long log (no catastrophic backtracking)", () => {
    const nasty = `${"a".repeat(50_000)} ${"password=".repeat(2_000)} ${"-".repeat(50_000)} ${"eyJ".repeat(10_000)}`;
    const t = performance.now();
    redact(nasty, ["some secret value"]);
    expect(performance.now() - t).toBeLessThan(2_000);
  });
});

/**
 * A hostile log must not stall the service's only event loop (review finding F1: `" " +
 * "key.".repeat(1999)` took 24.5 s, cubic; `ab://:` repeated was quadratic). Each input here is
 * 16,000 characters (twice Docker's log tail); the budget is generous on purpose (a DoS guard,
 * not a benchmark: a linear pass takes about 1 ms).
 */
describe("redact: linear time on hostile input", () => {
  const N = 100_000;
  const fill = (unit: string, prefix = "") => prefix + unit.repeat(Math.ceil((N - prefix.length) / unit.length));
  const inputs: Array<[string, string]> = [
    ["' key.' repeated (secret name, dots)", fill("key.", " ")],
    ["'-auth.' repeated", fill("auth.", "-")],
    ["'-key-' repeated", fill("key-", "-")],
    ["'.key.' repeated", fill("key.", ".")],
    ["'a-key.' repeated, then a quote", `${fill("key.", "a-")}"`],
    ["'-key.key-' repeated", fill("key.key-", "-")],
    ["'x-key' repeated", fill("x-key")],
    ["'token=\"' repeated (unterminated quoted values)", fill('token="')],
    ["'key' and spaces repeated", fill(`key${" ".repeat(20)}`)],
    ["'ab://:' repeated (URL credentials without @)", fill("ab://:")],
    ["'ab://x:' repeated", fill("ab://x:")],
    ["one scheme, then a long user name", `ab://${"u".repeat(N)}:`],
    ["'eyJ-' repeated (JWT starts)", fill("eyJ-")],
    ["'Bearer ' repeated", fill("Bearer ")],
    ["PEM headers without an end", fill("-----BEGIN PRIVATE KEY ")],
    ["'sk-a-' repeated", fill("sk-a-")],
    ["'signkey-' repeated", fill("signkey-")],
  ];
  it.each(inputs)("%s", (_what, input) => {
    expect(input.length).toBeGreaterThanOrEqual(N);
    const t = performance.now();
    redact(input, ["0123456789abcdef0123456789abcdef"]);
    expect(performance.now() - t).toBeLessThan(200);
  });

  it("still finds the secret after a hostile run on the same line", () => {
    expect(redact(`${fill("key.", " ")} PASSWORD=hunter2hunter2`)).toMatch(/ PASSWORD=\[REDACTED:secret\]$/);
  });
});

/** Review finding F3: secrets a reader still sees that the patterns missed. */
describe("redact: secrets hidden in plain sight", () => {
  const secret = "669d8c381066fe225587cf11c92e05df88207296d92799615982aa00fd0677e7"; // as PAYLOAD_SECRET
  const env = [secret, "http://p1.preview.localhost", "3000", "0.0.0.0", "/tmp", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"];
  /** No piece of 12 characters of `value` is left, in any letter case. */
  const noPiece = (out: string, value: string) => {
    for (let i = 0; i + 12 <= value.length; i++) expect(out.toLowerCase(), `piece at ${i}`).not.toContain(value.slice(i, i + 12).toLowerCase());
  };
  const chunk = (s: string, n: number) => s.match(new RegExp(`.{1,${n}}`, "g"))!;

  it.each<[string, string]>([
    ["split over two lines (pieces under 32 characters)", `part one ${secret.slice(0, 31)}\npart two ${secret.slice(31)}`],
    ["in lines of 16", chunk(secret, 16).map((c, i) => `line ${i}: ${c}`).join("\n")],
    ["only its first half", `first half ${secret.slice(0, 31)}`],
    ["upper case", `secret ${secret.toUpperCase()}`],
    ["a colour code in the middle", `value \u001b[32m${secret.slice(0, 30)}\u001b[0m${secret.slice(30)}`],
    ["zero-width spaces between its characters", `value ${[...secret].join("\u200b")}`],
    ["spaced out", `value ${[...secret].join(" ")}`],
    ["percent-encoded", `u ${[...secret].map((c) => `%${c.charCodeAt(0).toString(16)}`).join("")}`],
    ["JSON \\u00xx escapes", `{"msg": "${[...secret].map((c) => `\\u00${c.charCodeAt(0).toString(16)}`).join("")}"}`],
    ["wrapped by Node's inspector", `'${secret.slice(0, 20)}' +\n  '${secret.slice(20, 40)}' +\n  '${secret.slice(40)}'`],
  ])("an environment value %s", (_what, log) => {
    const out = redact(log, env);
    noPiece(out, secret);
    expect(out).toContain("[REDACTED:env]");
  });

  it("pieces of a path or URL value are not redacted (PATH, the site URL): only the whole value", () => {
    const log = "at /usr/local/bin/node (http://p1.preview.local:3000/api)\nlistening on 0.0.0.0:3000";
    expect(redact(log, env)).toBe(log);
  });

  it.each<[string, string, string]>([
    ["authorization: bearer <token>, lower case", "authorization: bearer lowercaseTokenValue123456", "lowercaseTokenValue123456"],
    ["Authorization with another scheme", "Authorization: TOKEN abcdefgh12345678", "abcdefgh12345678"],
    ["Authorization without a scheme", "authorization=abcdefgh12345678", "abcdefgh12345678"],
    ["DB_PASS=", "DB_PASS=Sup3rS3cretPw", "Sup3rS3cretPw"],
    ["SMTP_PASS=", "SMTP_PASS=Sup3rS3cretPw", "Sup3rS3cretPw"],
    ["DB_PW=", "DB_PW=Sup3rS3cretPw", "Sup3rS3cretPw"],
    ["PRIVATE=", "PRIVATE=Sup3rS3cretPw", "Sup3rS3cretPw"],
    ["KEY => value", "PAYLOAD_SECRET => Sup3rS3cretPw", "Sup3rS3cretPw"],
    ["JSON inside a JSON string", '"{\\"password\\":\\"Sup3rS3cretPw\\"}"', "Sup3rS3cretPw"],
    ["a JSON value with an escaped quote", '{"password": "Sup3r\\"S3cretPw"}', "S3cretPw"],
    ["JSON inside a JSON string, an escaped backslash in the value", String.raw`{\"token\": \"abcd\\efghijk\"}`, "efghijk"],
    ["a percent-encoded connection string", "DATABASE_URL=postgres%3A%2F%2Fadmin%3Ahunter2hunter2%40db%3A5432%2Fx", "hunter2"],
    ["a password holding an encoded @", "mongodb+srv://root:Pa%40ssw0rd@cluster0.mongodb.net/db", "ssw0rd"],
    ["a lower-case PEM block", "-----begin ec private key-----\nMHcCAQEEIAbc123\n-----end ec private key-----", "MHcCAQEEIAbc123"],
  ])("%s", (_what, log, leaked) => {
    expect(redact(log)).not.toContain(leaked);
  });

  it("whole segments only: compass, bypass, private: true stay", () => {
    for (const line of ["compass: north", "bypass=cache-layer", '"private": true', "pass: 12", "authorization: required"]) expect(redact(line)).toBe(line);
  });

  it("is idempotent on normalised text too", () => {
    const log = `a \u001b[31mred\u001b[0m DB_PW=x1234567 %41%42 authorization: bearer abcdefghijklmnop\n${secret.slice(0, 20)}`;
    const once = redact(log, env);
    expect(redact(once, env)).toBe(once);
  });
});

describe("redact: normalisation stays linear on hostile input", () => {
  const N = 100_000;
  const fill = (unit: string) => unit.repeat(Math.ceil(N / unit.length));
  it.each<[string, string]>([
    ["unterminated OSC escapes", fill("\u001b]8;;")],
    ["CSI parameters without an end", `\u001b[${fill("0;")}`],
    ["percent signs", fill("%4")],
    ["letters spaced out, then a word", `${fill("a ")}bb`],
    ["quotes and pluses", fill("' +\n")],
    ["escaped quotes and backslashes after a secret name", fill(String.raw`\"token\":\"\\`)],
    ["many opaque environment values", fill("abcdef0123456789")],
  ])("%s", (_what, input) => {
    const values = Array.from({ length: 50 }, (_, i) => `${"0123456789abcdef".repeat(4)}${i}`);
    const t = performance.now();
    redact(input, values);
    expect(performance.now() - t).toBeLessThan(200);
  });
});
