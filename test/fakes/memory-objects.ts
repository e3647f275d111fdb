/**
 * An in-memory `ObjectStore` for the unit tier: a sorted key space with S3's paging (1,000 keys
 * a page), MD5 ETags like S3's for single-part objects, counters of what was asked, and faults to
 * inject (a read that breaks after some bytes, a store that refuses). The same behaviour against
 * a real S3-compatible server is in test/storage/site-objects.int.test.ts.
 */
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import type { Hydration, ProjectId, ProjectObjects } from "../../functions/ports.js";
import type { ObjectPage, ObjectStore } from "../../storage/object-store.js";
import type { FakeSiteFiles } from "./fake-runtime.js";

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

/**
 * A `ProjectObjects` fake for the functions' unit tests: a hydration "downloads" by creating the
 * fake site folder, and every call is logged with how many site-file calls had happened by then
 * (so a test can tell hydration came before the check).
 */
export class FakeProjectObjects implements ProjectObjects {
  readonly location = "memory://bucket";
  /** Projects whose site the store holds. */
  readonly stored = new Set<string>();
  readonly calls: Array<{ method: "hydrate" | "removeAll" | "archiveLog"; projectId: string; siteCallsBefore: number; args?: unknown[] }> = [];
  /** Thrown by the next calls of a method. */
  readonly failures = new Map<string, Error>();

  constructor(private readonly site: FakeSiteFiles) {}

  async hydrate(projectId: ProjectId): Promise<Hydration> {
    this.calls.push({ method: "hydrate", projectId, siteCallsBefore: this.site.calls.length });
    const failure = this.failures.get("hydrate");
    if (failure) throw failure;
    if (!this.stored.has(projectId)) return { outcome: "no-objects" };
    if (this.site.sites.has(projectId)) return { outcome: "unchanged", objects: 3 };
    this.site.sites.add(projectId);
    return { outcome: "downloaded", objects: 3, bytes: 42, replaced: false };
  }

  async removeAll(projectId: ProjectId): Promise<{ removed: number }> {
    this.calls.push({ method: "removeAll", projectId, siteCallsBefore: this.site.calls.length });
    const failure = this.failures.get("removeAll");
    if (failure) throw failure;
    const had = this.stored.delete(projectId);
    return { removed: had ? 3 : 0 };
  }

  async archiveLog(projectId: ProjectId, containerId: string, log: string): Promise<{ key: string }> {
    this.calls.push({ method: "archiveLog", projectId, siteCallsBefore: this.site.calls.length, args: [containerId, log] });
    const failure = this.failures.get("archiveLog");
    if (failure) throw failure;
    return { key: `projects/${projectId}/logs/${containerId}.log` };
  }

  count(method: string, projectId?: string): number {
    return this.calls.filter((c) => c.method === method && (projectId === undefined || c.projectId === projectId)).length;
  }
}
