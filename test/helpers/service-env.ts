/**
 * Environment for tests that start the whole service (`startService`, `runtime/main.ts`): its own
 * preview network (the service creates it at start-up) and no host firewall rules, so a test never
 * creates the machine's default `sitebuilder-previews` network or touches the host firewall.
 * `removeServiceNetwork` removes that network at the end (only it, by its unique name).
 * `serviceBaseEnv` and `removeServiceNetwork` need no Vitest: the benches use them too.
 */
import { randomBytes } from "node:crypto";
import path from "node:path";
import Docker from "dockerode";
import { inject } from "vitest";
import { stubImage } from "./docker.js";

const NETWORK = `sbp-test-svc-${randomBytes(4).toString("hex")}`;
const NETWORK_ENV = { PREVIEW_NETWORK: NETWORK, PREVIEW_HOST_FIREWALL: "off" };

/**
 * Also the run's stub image as PREVIEW_IMAGE: `/readyz` checks that the preview image exists, and
 * the default `preview-base:latest` cannot be built on a machine without a registry.
 */
export function serviceNetworkEnv(): { PREVIEW_NETWORK: string; PREVIEW_HOST_FIREWALL: string; PREVIEW_IMAGE: string } {
  return { ...NETWORK_ENV, PREVIEW_IMAGE: stubImage(inject("testRunId")) };
}

export async function removeServiceNetwork(): Promise<void> {
  const docker = new Docker();
  const networks = await docker.listNetworks({ filters: { name: [NETWORK] } }).catch(() => []);
  for (const n of networks.filter((x) => x.Name === NETWORK)) await docker.getNetwork(n.Id).remove().catch(() => undefined);
}

/**
 * Any free port on loopback, silent, state and storage under `dir`, Inngest's dev mode at
 * `inngestUrl` (a stand-in), its own network and no firewall; the default preview image (outside
 * Vitest there is no run's stub image).
 */
export function serviceBaseEnv(dir: string, inngestUrl: string): Record<string, string> {
  return {
    PORT: "0",
    HOST: "127.0.0.1",
    LOG_LEVEL: "silent",
    DATA_PATH: path.join(dir, "data"),
    STORAGE_PATH: path.join(dir, "storage"),
    INNGEST_DEV: inngestUrl,
    ...NETWORK_ENV,
  };
}

/** The whole environment of a test's service: `serviceBaseEnv` and the run's stub image; `extra` last, so a test overrides any of it. */
export function serviceEnv(dir: string, inngestUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return { ...serviceBaseEnv(dir, inngestUrl), PREVIEW_IMAGE: stubImage(inject("testRunId")), ...extra };
}
