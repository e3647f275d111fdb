/**
 * Serve origin pinned: in cloud mode an unsigned `PUT /api/inngest` with a forged `Host` must not
 * register the app at an attacker-chosen URL. The service refuses to start in cloud mode without
 * INNGEST_SERVE_ORIGIN (config tests), and with it every sync names the pinned origin.
 */
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadConfig } from "../../runtime/config.js";
import { startService, type RunningService } from "../../runtime/service.js";
import { startInngestStandIn, type InngestStandIn } from "../helpers/inngest-server.js";
import { removeServiceNetwork, serviceNetworkEnv } from "../helpers/service-env.js";

let tmp: string;
let standIn: InngestStandIn;
let service: RunningService;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "sbp-origin-"));
  standIn = await startInngestStandIn();
  const config = loadConfig({
    PORT: "0",
    LOG_LEVEL: "silent",
    DATA_PATH: path.join(tmp, "data"),
    STORAGE_PATH: path.join(tmp, "storage"),
    INNGEST_BASE_URL: standIn.url,
    INNGEST_SIGNING_KEY: "signkey-test-0123456789abcdef0123456789abcdef",
    INNGEST_SERVE_ORIGIN: "https://previews.example.com",
    ...serviceNetworkEnv(),
  });
  service = await startService(config, pino({ level: "silent" }));
});
afterAll(async () => {
  await service?.close();
  await removeServiceNetwork();
  await standIn?.close();
  await rm(tmp, { recursive: true, force: true });
});

/** `PUT /api/inngest` with a forged Host header (fetch would not let us set it). */
function put(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port: service.port, path: "/api/inngest", method: "PUT", headers: { host } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end();
  });
}

it("an unsigned sync with a forged Host registers the pinned origin, never the attacker's", async () => {
  const before = standIn.registrations.length;
  await put("attacker.example:666");
  const syncs = standIn.registrations.slice(before) as Array<{ url?: string }>;
  // The SDK does sync on an unsigned PUT in cloud mode: which URL it registers is what matters.
  expect(syncs.length).toBeGreaterThan(0);
  for (const sync of syncs) {
    expect(sync.url).toBe("https://previews.example.com/api/inngest");
    expect(JSON.stringify(sync)).not.toContain("attacker.example");
  }
});
