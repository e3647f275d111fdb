/**
 * An in-memory `ObjectStore` for the unit tier: a sorted key space with S3's paging (1,000 keys
 * a page), MD5 ETags like S3's for single-part objects, counters of what was asked, and faults to
 * inject (a read that breaks after some bytes, a store that refuses). The same behaviour against
 * a real S3-compatible server is in test/storage/site-objects.int.test.ts.
 */
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import type { ObjectPage, ObjectStore } from "../../storage/object-store.js";

export class MemoryObjectStore implements ObjectStore {
  readonly location = "memory://bucket";
  readonly objects = new Map<string, Buffer>();
  readonly calls = { list: 0, read: 0, remove: 0, put: 0 };
  /** Keys a listing returns although nothing is stored under them (a constructed, hostile listing). */
  readonly phantom: string[] = [];
  /** When set, every call throws it (the store is down / refuses). */
  failWith: Error | null = null;
  /** When set, the n-th read (1-based) and later ones break mid-body with this error. */
  breakReadsFrom: { n: number; error: Error } | null = null;

  constructor(private readonly pageSize = 1000) {}

  set(key: string, body: string | Buffer): void {
    this.objects.set(key, Buffer.from(body));
  }

  static etag(body: Buffer): string {
    return createHash("md5").update(body).digest("hex");
  }

  async listPage(prefix: string, next: string | null): Promise<ObjectPage> {
    this.calls.list++;
    if (this.failWith) throw this.failWith;
    const keys = [...new Set([...this.objects.keys(), ...this.phantom])].filter((k) => k.startsWith(prefix)).sort();
    const start = next === null ? 0 : Number(next);
    const page = keys.slice(start, start + this.pageSize);
    const end = start + page.length;
    return {
      objects: page.map((key) => {
        const body = this.objects.get(key) ?? Buffer.alloc(0);
        return { key, etag: MemoryObjectStore.etag(body), size: body.length };
      }),
      next: end < keys.length ? String(end) : null,
    };
  }

  async read(key: string): Promise<Readable> {
    this.calls.read++;
    if (this.failWith) throw this.failWith;
    const body = this.objects.get(key);
    if (!body) throw new Error(`NoSuchKey: ${key}`);
    const broken = this.breakReadsFrom && this.calls.read >= this.breakReadsFrom.n ? this.breakReadsFrom.error : null;
    if (!broken) return Readable.from([body]);
    // Half the body, then the connection "drops".
    return Readable.from(
      (async function* () {
        yield body.subarray(0, Math.floor(body.length / 2));
        throw broken;
      })(),
    );
  }

  async remove(keys: readonly string[]): Promise<void> {
    this.calls.remove++;
    if (this.failWith) throw this.failWith;
    if (keys.length > 1000) throw new Error(`remove of ${keys.length} keys: S3 takes at most 1,000 a request`);
    for (const k of keys) this.objects.delete(k);
  }

  async put(key: string, body: Buffer): Promise<void> {
    this.calls.put++;
    if (this.failWith) throw this.failWith;
    this.objects.set(key, Buffer.from(body));
  }
}
