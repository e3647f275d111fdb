/**
 * Docker multiplexes stdout and stderr of a non-TTY container into frames:
 * 1 byte stream type, 3 zero bytes, 4 bytes big-endian payload length, then the payload.
 * A TTY container's logs are raw text; we detect that by the header shape.
 */
export function demuxLogs(buf: Buffer): string {
  const out: Buffer[] = [];
  let offset = 0;
  while (offset + 8 <= buf.length) {
    const type = buf[offset]!;
    if (type > 2 || buf[offset + 1] !== 0 || buf[offset + 2] !== 0 || buf[offset + 3] !== 0) {
      return buf.toString("utf8"); // not multiplexed
    }
    const size = buf.readUInt32BE(offset + 4);
    out.push(buf.subarray(offset + 8, offset + 8 + size));
    offset += 8 + size;
  }
  if (offset < buf.length && out.length === 0) return buf.toString("utf8");
  return Buffer.concat(out).toString("utf8");
}

/** Keeps the last `maxChars` characters, cut at a line start when possible. */
export function lastChars(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  const cut = text.slice(text.length - maxChars);
  if (text[text.length - maxChars - 1] === "\n") return cut; // already starts a line
  const nl = cut.indexOf("\n");
  return nl >= 0 && nl < cut.length - 1 ? cut.slice(nl + 1) : cut;
}
