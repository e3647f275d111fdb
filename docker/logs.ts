/**
 * Container logs as text. Docker multiplexes stdout and stderr of a non-TTY container into frames
 * (8-byte header: stream type, 3 zero bytes, big-endian length); docker-modem's `demuxStream`
 * reads them. A TTY container's logs are raw text and are taken as they are: the container's
 * `Config.Tty` says which, no guessing from the bytes.
 */
import { Readable, Writable } from "node:stream";
import type Docker from "dockerode";

const PIECE_BYTES = 4096;

/** What is needed of `docker.modem`. */
export type Demuxer = Pick<Docker["modem"], "demuxStream">;

/**
 * The text of a non-follow `logs()` answer (dockerode gives a Buffer). Both streams go to one
 * sink so their lines stay in the order the engine sent them; bytes are joined before decoding,
 * so a UTF-8 character split across two frames survives. A truncated last frame is dropped.
 */
export function logText(raw: Buffer, tty: boolean, modem: Demuxer): Promise<string> {
  if (tty) return Promise.resolve(raw.toString("utf8"));
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk);
      done();
    },
  });
  // Fed in small pieces: demuxStream recurses once per frame within one "data" event, so a
  // whole buffer of tiny frames in one event could exhaust the stack.
  const pieces: Buffer[] = [];
  for (let at = 0; at < raw.length; at += PIECE_BYTES) pieces.push(raw.subarray(at, at + PIECE_BYTES));
  const source = Readable.from(pieces);
  return new Promise((resolve, reject) => {
    // demuxStream writes synchronously from the source's "data" events, so every frame has been
    // written by the time the source ends.
    source.once("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    source.once("error", reject);
    modem.demuxStream(source, sink, sink);
  });
}

/** How far into one huge line a cut looks for the end of its partial first word. */
const PARTIAL_WORD_MAX = 256;

/**
 * Keeps the last `maxChars` characters, cut at a line start when possible. Without one (one huge
 * line), its partial first word is dropped (up to its first whitespace, at most the first
 * PARTIAL_WORD_MAX characters): it may be the end of a secret cut in half, which no redaction
 * would recognise (review finding F3).
 */
export function lastChars(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  const cut = text.slice(text.length - maxChars);
  if (text[text.length - maxChars - 1] === "\n") return cut; // already starts a line
  const nl = cut.indexOf("\n");
  if (nl >= 0 && nl < cut.length - 1) return cut.slice(nl + 1);
  const space = cut.slice(0, PARTIAL_WORD_MAX).search(/\s/);
  return cut.slice(space >= 0 ? space + 1 : Math.min(PARTIAL_WORD_MAX, cut.length));
}
