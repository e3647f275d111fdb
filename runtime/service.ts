/**
 * The composition root: builds every client from the parsed config, wires the implementations
 * into the functions and the HTTP app, and serves it. Nothing here runs at import time.
 */
import { mkdir } from "node:fs/promises";
import { serve, type ServerType } from "@hono/node-server";
import type { Inngest } from "inngest";
import { pino, type Logger } from "pino";
import { createDockerClient } from "../docker/client.js";
import { DockerPreviewRuntime } from "../docker/docker-runtime.js";
import { createFunctions } from "../functions/index.js";
import { createInngest } from "../inngest.config.js";
import { openDatabase, type Database } from "../sql/database.js";
import { SqlPreviewStore } from "../sql/preview-store.js";
import { LocalSiteFiles } from "../storage/site-files.js";
import { createApp } from "./app.js";
import type { Config } from "./config.js";

export interface RunningService {
  config: Config;
  inngest: Inngest;
  db: Database;
  log: Logger;
  /** The port actually bound (differs from config.port when that is 0). */
  port: number;
  close(): Promise<void>;
}

export async function startService(config: Config, log: Logger = pino({ level: config.logLevel })): Promise<RunningService> {
  await mkdir(config.storage.path, { recursive: true });
  const db = await openDatabase(config.database);
  log.info({ driver: db.driver }, "database ready");
  try {
    return await serveWith(config, log, db);
  } catch (err) {
    // e.g. the port is taken: release the database (PGlite holds its folder) before failing.
    await db.close().catch(() => undefined);
    throw err;
  }
}

async function serveWith(config: Config, log: Logger, db: Database): Promise<RunningService> {

  const docker = createDockerClient(config.docker);
  const runtime = new DockerPreviewRuntime(docker, { ...config.preview, storageHostPath: config.storage.hostPath }, log);
  const store = new SqlPreviewStore(db);
  const site = new LocalSiteFiles(config.storage.path);
  const inngest = createInngest(config.inngest, log);
  const functions = createFunctions(inngest, { runtime, store, site, readyTimeoutMs: config.preview.readyTimeoutMs });
  const app = createApp({ inngest, functions, store, runtime, apiToken: config.apiToken, serveOrigin: config.inngest.serveOrigin, log });

  const server = await new Promise<ServerType>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, () => resolve(s));
    s.once("error", reject);
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  log.info({ port, inngestPath: "/api/inngest", dev: config.inngest.dev !== false, routing: config.preview.routing }, "previews service listening");

  return {
    config,
    inngest,
    db,
    log,
    port,
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await db.close();
    },
  };
}
