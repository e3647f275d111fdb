/**
 * Object storage end to end, through the public contract: the whole service (`startService` from
 * `loadConfig` with MINIO_* pointing at a real S3-compatible server, s3rver as a child process),
 * the real Docker engine with the stub preview image, `/api/inngest` driven over HTTP as the
 * Inngest server does. A project whose site exists only in the bucket is launched (the site is
 * downloaded, mounted and served), then `project.deleted` removes its container, its folder and
 * every object under `projects/{id}/`.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../runtime/config.js";
import { startService, type RunningService } from "../../runtime/service.js";
import { listAll } from "../../storage/object-store.js";
import { SITE_SCRIPTS, testDocker } from "../helpers/docker.js";
import { serviceEnv } from "../helpers/service-env.js";
import { runFunction, startInngestStandIn, type InngestStandIn } from "../helpers/inngest-server.js";
import { startS3rver, type S3rver } from "../helpers/s3rver.js";

let tmp: string;
let s3: S3rver;
let standIn: InngestStandIn;
let service: RunningService | null = null;
const network = `sbp-test-objects-${randomBytes(3).toString("hex")}`;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "sbp-objects-svc-"));
  s3 = await startS3rver();
  standIn = await startInngestStandIn();
});

afterAll(async () => {
  await service?.close().catch(() => undefined);
  await testDocker().getNetwork(network).remove().catch(() => undefined);
  await standIn?.close();
  await s3?.close();
  await rm(tmp, { recursive: true, force: true });
});

describe("the service with MINIO_* set", () => {
  it("launches a project whose site is only in the bucket, then project.deleted removes its objects", async () => {
    const docker = testDocker();
    const id = `objects-${randomBytes(3).toString("hex")}`;
    const html = `<h1>from the bucket ${id}</h1>\n`;
    for (const [name, body] of [
      ["start.sh", SITE_SCRIPTS.http],
      ["index.html", html],
    ] as const) {
      await s3.store.client.putObject(s3.bucket, `projects/${id}/site/${name}`, Buffer.from(body), Buffer.byteLength(body));
    }
    service = await startService(
      loadConfig(
        serviceEnv(tmp, standIn.url, {
          PREVIEW_NETWORK: network,
          PREVIEW_ROUTING: "port",
          READY_TIMEOUT: "60s",
          MINIO_ENDPOINT: `http://127.0.0.1:${s3.port}`,
          MINIO_ACCESS_KEY: s3.settings.accessKey,
          MINIO_SECRET_KEY: s3.settings.secretKey,
          MINIO_BUCKET: s3.bucket,
        }),
      ),
      pino({ level: "silent" }),
    );
    const serveUrl = `http://127.0.0.1:${service.port}/api/inngest`;
    try {
      const site = path.join(tmp, "storage", "projects", id, "site");
      expect(existsSync(site)).toBe(false);

      const launch = await runFunction({ serveUrl, fnId: "previews-launch-preview", event: { name: "pipeline.step7", data: { projectId: id } } });
      expect(launch.outcome).toBe("completed");
      const { url } = launch.result as { url: string };
      expect(await readFile(path.join(site, "index.html"), "utf8")).toBe(html);
      // What the preview serves is what the bucket holds.
      expect(await (await fetch(url)).text()).toBe(html);

      const remove = await runFunction({ serveUrl, fnId: "previews-remove-preview", event: { name: "project.deleted", data: { projectId: id } } });
      expect(remove.outcome).toBe("completed");
      expect(remove.steps.map((s) => s.name)).toContain("delete-objects");
      expect(await listAll(s3.store, `projects/${id}/`)).toEqual([]);
      expect(existsSync(path.join(tmp, "storage", "projects", id))).toBe(false);
      expect(await docker.getContainer(`preview-${id}`).inspect().catch(() => null)).toBeNull();
    } finally {
      await docker.getContainer(`preview-${id}`).remove({ force: true }).catch(() => undefined);
    }
  });
});
