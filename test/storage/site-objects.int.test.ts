/**
 * Integration tier: object storage against a real S3-compatible server (s3rver, started by the
 * test as a child process, see test/helpers/s3rver.ts) through the real `minio` adapter, on real
 * folders: more than 1,000 objects (paging, both ways), a 20 MB file, hostile keys through a
 * constructed ListObjectsV2 answer at the HTTP level (s3rver itself resolves `..` on the way in),
 * and the store going away mid-download, through launch-preview's step: the launch fails
 * retryably and the site folder is neither replaced nor half-written.
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { lstat, mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { PermanentError, isPermanent } from "../../functions/ports.js";
import type { ProjectId } from "../../functions/project-id.js";
import { MinioObjectStore, listAll } from "../../storage/object-store.js";
import { LocalSiteFiles } from "../../storage/site-files.js";
import { ObjectSites } from "../../storage/site-objects.js";
import { startS3rver, type S3rver } from "../helpers/s3rver.js";
import { createUnitEnv, newProjectId } from "../helpers/unit-env.js";

let tmp: string;
let root: string;
beforeEach(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "sbp-objects-int-"));
  root = path.join(tmp, "storage");
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** Puts objects, a few at a time (sizes always given: s3rver has no multipart). */
async function putAll(s3: S3rver, objects: Array<[string, Buffer]>, atOnce = 16): Promise<void> {
  for (let i = 0; i < objects.length; i += atOnce) {
    await Promise.all(objects.slice(i, i + atOnce).map(([key, body]) => s3.store.client.putObject(s3.bucket, key, body, body.length)));
  }
}

async function identity(p: string): Promise<string> {
  const s = await lstat(p, { bigint: true });
  return `${s.dev}:${s.ino}`;
}

describe("ObjectSites against s3rver", () => {
  let s3: S3rver;
  beforeAll(async () => {
    s3 = await startS3rver();
  });
  afterAll(async () => {
    await s3?.close();
  });

  it("hydrates 1,200 objects (two listing pages), downloads nothing when unchanged, deletes them all paging past 1,000", async () => {
    const id = newProjectId("many") as ProjectId;
    const objects: Array<[string, Buffer]> = Array.from({ length: 1_200 }, (_, i) => [`projects/${id}/site/dir${i % 10}/file-${i}.txt`, Buffer.from(`file ${i}\n`)]);
    objects.push([`projects/${id}/logs/0123456789ab.log`, Buffer.from("an archived log")]);
    await putAll(s3, objects);
    const sites = new ObjectSites(root, s3.store);

    const first = await sites.hydrate(id);
    expect(first).toMatchObject({ outcome: "downloaded", objects: 1_200, replaced: false });
    const site = path.join(root, "projects", id, "site");
    expect((await readdir(site)).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `dir${i}`));
    expect(await readFile(path.join(site, "dir7/file-1197.txt"), "utf8")).toBe("file 1197\n");
    let files = 0;
    for (const d of await readdir(site)) files += (await readdir(path.join(site, d))).length;
    expect(files).toBe(1_200);

    const before = await identity(site);
    expect(await sites.hydrate(id)).toEqual({ outcome: "unchanged", objects: 1_200 });
    expect(await identity(site)).toBe(before);

    // Paging both ways: 1,201 keys under projects/{id}/ (the log too), and none afterwards.
    expect(await sites.removeAll(id)).toEqual({ removed: 1_201 });
    expect(await listAll(s3.store, `projects/${id}/`)).toEqual([]);
    expect(await sites.removeAll(id)).toEqual({ removed: 0 });
  });

  it("hydrates a 20 MB file intact", async () => {
    const id = newProjectId("big") as ProjectId;
    const big = randomBytes(20 * 1024 * 1024);
    await putAll(s3, [
      [`projects/${id}/site/public/video.bin`, big],
      [`projects/${id}/site/index.html`, Buffer.from("<video>")],
    ]);
    const result = await new ObjectSites(root, s3.store).hydrate(id);
    expect(result).toMatchObject({ outcome: "downloaded", objects: 2, bytes: big.length + 7 });
    const written = await readFile(path.join(root, "projects", id, "site", "public", "video.bin"));
    expect(written.length).toBe(big.length);
    expect(createHash("sha256").update(written).digest("hex")).toBe(createHash("sha256").update(big).digest("hex"));
  });

  it("archives a log as projects/{id}/logs/{containerId}.log", async () => {
    const id = newProjectId("log") as ProjectId;
    const cid = "ab".repeat(32);
    expect(await new ObjectSites(root, s3.store).archiveLog(id, cid, "the last lines\n")).toEqual({ key: `projects/${id}/logs/${cid}.log` });
    const body = await s3.store.client.getObject(s3.bucket, `projects/${id}/logs/${cid}.log`);
    let text = "";
    for await (const chunk of body) text += String(chunk);
    expect(text).toBe("the last lines\n");
  });

  it("a missing bucket is a configuration error (permanent), named", async () => {
    const store = new MinioObjectStore({ ...s3.settings, bucket: `missing-${randomBytes(3).toString("hex")}` });
    const err = await new ObjectSites(root, store).hydrate("p1" as ProjectId).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toMatch(/^object store: list .* failed: NoSuchBucket/);
    await expect(store.verify()).rejects.toThrow(/bucket missing-\w+ does not exist/);
  });
});

describe("hostile keys in a listing at the HTTP level", () => {
  /** Answers every ListObjectsV2 with the given keys (URL-encoded, as with encoding-type=url); counts other requests. */
  async function fakeS3(keys: string[]) {
    const requests: string[] = [];
    const server = http.createServer((req, res) => {
      requests.push(`${req.method} ${req.url}`);
      if (req.method === "GET" && req.url?.includes("list-type=2")) {
        const contents = keys
          .map((k) => `<Contents><Key>${encodeURIComponent(k)}</Key><LastModified>2026-11-26T00:00:00.000Z</LastModified><ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag><Size>4</Size><StorageClass>STANDARD</StorageClass></Contents>`)
          .join("");
        res.writeHead(200, { "content-type": "application/xml" });
        res.end(
          `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix><KeyCount>${keys.length}</KeyCount><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>${contents}</ListBucketResult>`,
        );
        return;
      }
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": "4" });
      res.end("evil");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const store = new MinioObjectStore({ endPoint: "127.0.0.1", port, useSSL: false, accessKey: "k", secretKey: "s", bucket: "bucket", timeoutMs: 5_000 });
    return { store, requests, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
  }

  it.each([
    ["a `..` traversal", "../../../../tmp/evil"],
    ["an absolute path", "/etc/cron.d/evil"],
    ["backslashes", "..\\..\\evil"],
    ["a NUL", "evil\u0000.txt"],
    ["an over-long name", "x".repeat(300)],
  ])("%s is refused and reported; nothing is downloaded or written", async (_what, rel) => {
    const id = newProjectId("hostile") as ProjectId;
    const s3 = await fakeS3([`projects/${id}/site/index.html`, `projects/${id}/site/${rel}`]);
    try {
      const err = await new ObjectSites(root, s3.store).hydrate(id).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PermanentError);
      expect((err as Error).message).toMatch(/1 key\(s\) would not land inside the site folder, nothing was written/);
      // Only the listing was asked for: no object was read.
      expect(s3.requests.every((r) => r.includes("list-type=2"))).toBe(true);
      expect(existsSync(path.join(root, "projects"))).toBe(false);
      expect(existsSync(path.join(tmp, "evil"))).toBe(false);
    } finally {
      await s3.close();
    }
  });
});

describe("the store going away mid-download (s3rver killed)", () => {
  it("fails the launch step retryably; the site folder is not replaced, nothing half-written is mounted", async () => {
    const s3 = await startS3rver({ timeoutMs: 3_000 });
    try {
      const id = newProjectId("gone");
      const prefix = `projects/${id}/site/`;
      // v1, hydrated and launched.
      await putAll(s3, [[`${prefix}index.html`, Buffer.from("v1")]]);
      const site = new LocalSiteFiles(root);
      const objects = new ObjectSites(root, s3.store, { concurrency: 4 });
      const env = await createUnitEnv({ site, objects });
      try {
        expect((await env.launch(id)).error).toBeUndefined();
        const siteDir = path.join(root, "projects", id, "site");
        const v1 = await identity(siteDir);
        await env.stop(id);

        // v2: large enough that the download is still running when the store dies.
        const v2: Array<[string, Buffer]> = Array.from({ length: 400 }, (_, i) => [`${prefix}chunk-${i}.bin`, randomBytes(128 * 1024)]);
        v2.push([`${prefix}index.html`, Buffer.from("v2")]);
        await putAll(s3, v2);

        const projectDir = path.join(root, "projects", id);
        let killedWith = -1;
        const watch = setInterval(() => {
          void readdir(projectDir).then(async (names) => {
            const incoming = names.find((n) => n.startsWith(".site-incoming-"));
            if (!incoming || killedWith >= 0) return;
            const done = (await readdir(path.join(projectDir, incoming)).catch(() => [])).length;
            if (done >= 20) {
              killedWith = done;
              s3.kill();
            }
          });
        }, 2);
        const run = await env.launch(id).finally(() => clearInterval(watch));

        expect(killedWith).toBeGreaterThanOrEqual(20);
        expect(run.error).toBeDefined();
        const error = run.error as Error;
        // Retryable: Inngest retries the step (not a NonRetriableError).
        expect(error.name).not.toBe("NonRetriableError");
        expect(isPermanent(error)).toBe(false);
        expect(error.message).toMatch(/^object store: (read|list) /);
        // The site folder is v1, untouched; no temporary folder is left.
        expect(await identity(siteDir)).toBe(v1);
        expect(await readdir(siteDir)).toEqual(["index.html"]);
        expect(await readFile(path.join(siteDir, "index.html"), "utf8")).toBe("v1");
        expect((await readdir(projectDir)).sort()).toEqual([".site-manifest.json", "site"]);
        // Nothing was (re)started on a half-written folder.
        expect(env.runtime.containers.get(id)?.running).toBe(false);
      } finally {
        await env.close();
      }
    } finally {
      await s3.close();
    }
  });
});
