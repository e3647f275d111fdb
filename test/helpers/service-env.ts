/**
 * Environment for tests that start the whole service (`startService`, `runtime/main.ts`): its own
 * preview network (the service creates it at start-up) and no host firewall rules, so a test never
 * creates the machine's default `sitebuilder-previews` network or touches the host firewall.
 * `removeServiceNetwork` removes that network at the end (only it, by its unique name).
 */
import { randomBytes } from "node:crypto";
import path from "node:path";
import Docker from "dockerode";
import { inject } from "vitest";
import { stubImage } from "./docker.js";

/**
 * Also the run's stub image as PREVIEW_IMAGE: `/readyz` checks that the preview image exists, and
 * the default `preview-base:latest` cannot be built on a machine without a registry.
 */
export function serviceNetworkEnv(): { PREVIEW_NETWORK: string; PREVIEW_HOST_FIREWALL: string; PREVIEW_IMAGE: string } {
  return { PREVIEW_NETWORK: NETWORK, PREVIEW_HOST_FIREWALL: "off", PREVIEW_IMAGE: stubImage(inject("testRunId")) };
}

const NETWORK = `sbp-test-svc-${randomBytes(4).toString("hex")}`;

export async function removeServiceNetwork(): Promise<void> {
  const docker = new Docker();
  const networks = await docker.listNetworks({ filters: { name: [NETWORK] } }).catch(() => []);
  for (const n of networks.filter((x) => x.Name === NETWORK)) await docker.getNetwork(n.Id).remove().catch(() => undefined);
}

/**
 * The whole environment of a test's service: any free port on loopback, silent, its state and
 * storage under `dir`, Inngest's dev mode at `inngestUrl` (a stand-in), its own network; `extra`
 * last, so a test overrides any of it.
 */
export function serviceEnv(dir: string, inngestUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PORT: "0",
    HOST: "127.0.0.1",
    LOG_LEVEL: "silent",
    DATA_PATH: path.join(dir, "data"),
    STORAGE_PATH: path.join(dir, "storage"),
    INNGEST_DEV: inngestUrl,
    ...serviceNetworkEnv(),
    ...extra,
  };
}
