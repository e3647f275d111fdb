/**
 * Pure unit tests (no engine) of log decoding: frames demultiplexed by docker-modem's
 * `demuxStream` (a dockerode client needs no engine until it makes a call), raw TTY text, and
 * the "last N characters from a line start" cut.
 */
import Docker from "dockerode";
import { describe, expect, it } from "vitest";
import { lastChars, logText } from "../../docker/logs.js";

const modem = new Docker({ socketPath: "/nonexistent.sock" }).modem;
const demux = (buf: Buffer) => logText(buf, false, modem);

/** One multiplexed frame: [stream, 0, 0, 0, uint32 BE size] then the payload. */
function frame(stream: 0 | 1 | 2, payload: string | Buffer): Buffer {
  const body = typeof payload === "string" ? Buffer.from(payload, "utf8") : payload;
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(body.length, 4);
  return Buffer.concat([header, body]);
}

describe("logText (multiplexed, non-TTY container)", () => {
  it("joins stdout and stderr frames in the order sent, without headers", async () => {
    const buf = Buffer.concat([frame(1, "booting preview\n"), frame(2, "Error: Cannot find module next\n"), frame(1, "bye\n")]);
    expect(await demux(buf)).toBe("booting preview\nError: Cannot find module next\nbye\n");
  });

  it("reads empty frames", async () => {
    expect(await demux(Buffer.concat([frame(1, "out\n"), frame(1, ""), frame(2, "err\n")]))).toBe("out\nerr\n");
  });

  it("decodes a UTF-8 character split across two frames", async () => {
    const bytes = Buffer.from("café ✓\n", "utf8");
    const buf = Buffer.concat([frame(1, bytes.subarray(0, 4)), frame(1, bytes.subarray(4))]);
    expect(await demux(buf)).toBe("café ✓\n");
  });

  it("drops a truncated last frame and a trailing partial header", async () => {
    const full = frame(1, "hello world\n");
    expect(await demux(Buffer.concat([frame(1, "first\n"), full.subarray(0, 8 + 5)]))).toBe("first\n");
    expect(await demux(Buffer.concat([frame(1, "ok\n"), Buffer.from([1, 0, 0])]))).toBe("ok\n");
  });

  it("returns an empty string for no logs", async () => {
    expect(await demux(Buffer.alloc(0))).toBe("");
  });

  it("handles a frame larger than the pieces it is fed in", async () => {
    const big = "x".repeat(70_000);
    expect(await demux(frame(2, big))).toBe(big);
  });

  it("handles many tiny frames without exhausting the stack", async () => {
    const lines = Array.from({ length: 30_000 }, (_, i) => `${i % 10}\n`);
    expect(await demux(Buffer.concat(lines.map((l, i) => frame(i % 2 ? 2 : 1, l))))).toBe(lines.join(""));
  });
});

describe("logText (TTY container)", () => {
  it("returns raw text as it is, however short, even when it starts with a frame-like byte", async () => {
    expect(await logText(Buffer.from("plain tty output\nline 2\n"), true, modem)).toBe("plain tty output\nline 2\n");
    expect(await logText(Buffer.from("hi\n"), true, modem)).toBe("hi\n");
    const frameLike = Buffer.concat([Buffer.from([1, 0, 0, 0, 0, 0, 0, 3]), Buffer.from("abc")]);
    expect(await logText(frameLike, true, modem)).toBe(frameLike.toString("utf8"));
  });
});

describe("lastChars", () => {
  it("returns short text unchanged", () => {
    expect(lastChars("abc\n", 10)).toBe("abc\n");
    expect(lastChars("abcd", 4)).toBe("abcd");
  });

  it("cuts at the first line start inside the kept window", () => {
    const text = "line1\nline2\nline3\n";
    expect(lastChars(text, 8)).toBe("line3\n");
    expect(lastChars(text, 14)).toBe("line2\nline3\n");
  });

  it("keeps a whole first line when the window already starts at a line start", () => {
    // The last 12 characters are exactly "line2\nline3\n": nothing needs cutting.
    expect(lastChars("line1\nline2\nline3\n", 12)).toBe("line2\nline3\n");
  });

  it("in one huge line, drops its partial first word: it may be the end of a secret cut in half", () => {
    const secret = "9f86d081884c7d659a2feaa0c55ad015";
    expect(lastChars(`PAYLOAD_SECRET=${secret} and the rest of the line`, 40)).toBe("and the rest of the line");
    expect(lastChars(`x ${secret} tail\n`, 14)).toBe("tail\n");
    // No whitespace near the start: its first 256 characters go.
    const long = "a".repeat(300) + "b".repeat(700);
    expect(lastChars(long, 900)).toBe("b".repeat(644));
    expect(lastChars("abcdefghij", 4)).toBe("");
  });

  it("never returns more than maxChars", () => {
    const text = Array.from({ length: 500 }, (_, i) => `log line number ${i}`).join("\n");
    const tail = lastChars(text, 1000);
    expect(tail.length).toBeLessThanOrEqual(1000);
    expect(text.endsWith(tail)).toBe(true);
    expect(tail.startsWith("log line number")).toBe(true);
  });
});
