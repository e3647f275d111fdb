/**
 * The object store (MinIO, or any S3-compatible server) as the site side needs it: list a prefix
 * page by page, stream an object, delete keys, put a small object. `MinioObjectStore` implements
 * it with the `minio` client; tests of the hydration logic use an in-memory one.
 *
 * Errors are classified once, here (`objectStoreError`): bad configuration (no such bucket, keys
 * refused, a client-side refusal) is a `PermanentError`; a transport failure, a timeout, a 5xx or
 * a `SlowDown` may go away and is retryable. Every message reads
 * `object store: <action> <object> failed: <detail>`.
 */
import http, { type IncomingMessage } from "node:http";
import https from "node:https";
import type { Readable } from "node:stream";
import { Client, S3Error } from "minio";
import { PermanentError } from "../functions/ports.js";

/** The adapter's settings (runtime/config.ts maps MINIO_* onto them). */
export interface ObjectStoreSettings {
  /** Host name or address, without scheme or port. */
  endPoint: string;
  port: number;
  useSSL: boolean;
  /** Secret: never logged. */
  accessKey: string;
  /** Secret: never logged. */
  secretKey: string;
  bucket: string;
  /** How long one request may take before it counts as failed (retryable). */
  timeoutMs: number;
}

export interface StoredObject {
  key: string;
  /** Without quotes. */
  etag: string;
  size: number;
}

export interface ObjectPage {
  objects: StoredObject[];
  /** Pass it to get the next page; null: this was the last one. */
  next: string | null;
}

export interface ObjectStore {
  /** For messages and logs: where the objects are (no credentials). */
  readonly location: string;
  /** One page of the keys below `prefix` (at most 1,000, the S3 maximum), in key order. */
  listPage(prefix: string, next: string | null): Promise<ObjectPage>;
  /** The object's bytes; the stream errors if the transfer breaks or stalls. */
  read(key: string): Promise<Readable>;
  /** Deletes the keys (at most 1,000 per call); a missing key is success. */
  remove(keys: readonly string[]): Promise<void>;
  /** Stores a small object (a log), replacing any object of that key. */
  put(key: string, body: Buffer, contentType: string): Promise<void>;
}

/** Every key below `prefix`, paging past 1,000. */
export async function listAll(store: ObjectStore, prefix: string): Promise<StoredObject[]> {
  const all: StoredObject[] = [];
  let next: string | null = null;
  do {
    const page: ObjectPage = await store.listPage(prefix, next);
    all.push(...page.objects);
    next = page.next;
  } while (next !== null);
  return all;
}

/** A store failure that retrying may fix (unreachable, timeout, 5xx, a listing gone stale). */
export class ObjectStoreRetryableError extends Error {
  override name = "ObjectStoreRetryableError";
}

/** S3 error codes that say the configuration is wrong: the same on every retry. */
const PERMANENT_CODES = new Set([
  "NoSuchBucket",
  "AccessDenied",
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "InvalidBucketName",
  "AllAccessDisabled",
  "AccountProblem",
  "InvalidArgument",
  "MethodNotAllowed",
  "MovedPermanently",
  "TemporaryRedirect",
  "PermanentRedirect",
  "AuthorizationHeaderMalformed",
]);

/** `object store: <action> failed: <detail>`, classified. */
export function objectStoreError(action: string, err: unknown): Error {
  if (err instanceof PermanentError || err instanceof ObjectStoreRetryableError) return err;
  const code = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  const message = err instanceof Error ? err.message : String(err);
  const detail = typeof code === "string" && code !== "" && !message.includes(code) ? `${code}: ${message}` : message;
  const text = `object store: ${action} failed: ${detail}`;
  if (err instanceof S3Error) {
    return typeof code === "string" && PERMANENT_CODES.has(code) ? new PermanentError(text, { cause: err }) : new ObjectStoreRetryableError(text, { cause: err });
  }
  // The client refusing its own arguments (invalid bucket name, endpoint...): configuration.
  const name = err instanceof Error ? err.name : "";
  if (/^Invalid\w*Error$/.test(name) && name !== "InvalidXMLError") return new PermanentError(text, { cause: err });
  // Transport (ECONNREFUSED, ECONNRESET, socket hang up), timeouts, 5xx after the client's retry.
  return new ObjectStoreRetryableError(text, { cause: err });
}

/** Rejects after `ms` (retryable); the operation itself is left to finish or fail on its own. */
async function within<T>(ms: number, what: string, op: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ObjectStoreRetryableError(`object store: ${what} failed: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([op, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const unquote = (etag: string): string => etag.replace(/^"|"$/g, "");

export class MinioObjectStore implements ObjectStore {
  readonly location: string;
  readonly client: Client;
  private readonly bucket: string;
  private readonly timeoutMs: number;

  constructor(settings: ObjectStoreSettings) {
    const { endPoint, port, useSSL, accessKey, secretKey, bucket, timeoutMs } = settings;
    // Keep-alive, and as many sockets as downloads run at once: a new connection per small file
    // would cost more than the file.
    const transportAgent = new (useSSL ? https.Agent : http.Agent)({ keepAlive: true, maxSockets: 32 });
    // `region` fixed: no bucket-location request before the first call (MinIO answers us-east-1).
    // Large objects go up in one request (`partSize` 5 GiB): logs are small, and S3-compatible
    // test servers lack multipart uploads.
    this.client = new Client({ endPoint, port, useSSL, accessKey, secretKey, region: "us-east-1", transportAgent, partSize: 5 * 1024 ** 3 });
    this.bucket = bucket;
    this.timeoutMs = timeoutMs;
    this.location = `${useSSL ? "https" : "http"}://${endPoint.includes(":") ? `[${endPoint}]` : endPoint}:${port}/${bucket}`;
  }

  /** At start-up: throws (classified) when the bucket is missing or the store refuses the keys. */
  async verify(): Promise<void> {
    let exists: boolean;
    try {
      exists = await within(this.timeoutMs, `find bucket ${this.bucket}`, this.client.bucketExists(this.bucket));
    } catch (err) {
      throw objectStoreError(`find bucket ${this.location}`, err);
    }
    if (!exists) throw new PermanentError(`object store: bucket ${this.bucket} does not exist at ${this.location}: create it, or set MINIO_BUCKET`);
  }

  async listPage(prefix: string, next: string | null): Promise<ObjectPage> {
    try {
      const page = await within(this.timeoutMs, `list ${prefix}`, this.client.listObjectsV2Query(this.bucket, prefix, next ?? "", "", 1000, ""));
      const objects: StoredObject[] = [];
      for (const o of page.objects) if (o.name !== undefined) objects.push({ key: o.name, etag: unquote(o.etag), size: o.size });
      const token = page.isTruncated ? page.nextContinuationToken : "";
      if (page.isTruncated && !token) throw new ObjectStoreRetryableError(`object store: list ${prefix} failed: a truncated page without a continuation token`);
      return { objects, next: token ? String(token) : null };
    } catch (err) {
      throw objectStoreError(`list ${this.location}/${prefix}`, err);
    }
  }

  async read(key: string): Promise<Readable> {
    try {
      const stream = await within(this.timeoutMs, `read ${key}`, this.client.getObject(this.bucket, key));
      // A transfer that stalls (the store hangs mid-body) errors the stream instead of holding the step.
      (stream as Readable & { setTimeout?: IncomingMessage["setTimeout"] }).setTimeout?.(this.timeoutMs, () => stream.destroy(new ObjectStoreRetryableError(`object store: read ${key} failed: stalled for ${this.timeoutMs} ms`)));
      return stream;
    } catch (err) {
      throw objectStoreError(`read ${this.location}/${key}`, err);
    }
  }

  async remove(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    try {
      const results = await within(this.timeoutMs, `delete ${keys.length} objects`, this.client.removeObjects(this.bucket, [...keys]));
      const failed = results.filter((r) => r?.Error && r.Error.Code !== "NoSuchKey");
      if (failed.length > 0) {
        const first = failed[0]!.Error!;
        throw new Error(`${failed.length} of ${keys.length} keys not deleted (first: ${first.Key ?? "?"}: ${first.Code ?? ""} ${first.Message ?? ""})`);
      }
    } catch (err) {
      throw objectStoreError(`delete ${keys.length} objects in ${this.location} (first ${keys[0]})`, err);
    }
  }

  async put(key: string, body: Buffer, contentType: string): Promise<void> {
    try {
      await within(this.timeoutMs, `put ${key}`, this.client.putObject(this.bucket, key, body, body.length, { "Content-Type": contentType }));
    } catch (err) {
      throw objectStoreError(`put ${this.location}/${key}`, err);
    }
  }
}
