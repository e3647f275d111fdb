/**
 * The create options of a preview container, as a pure function of the project and settings,
 * so hardening and routing can be unit-tested without an engine.
 */
import path from "node:path";
import type { ContainerCreateOptions, ContainerInspectInfo } from "dockerode";
import { assertProjectId, type ProjectId } from "../functions/project-id.js";
import { DEFAULT_TMP_BYTES, IsolationSettingError, TMP_DIR, previewUser } from "./isolation.js";
import { LABELS, containerName, traefikLabels } from "./labels.js";
import type { PreviewSettings } from "./settings.js";

/** The port the dev server listens on inside the container. */
export const PREVIEW_PORT = 3000;
/** Where the project's site folder is mounted. */
export const APP_DIR = "/app";

/** Folder of a project's site, relative to the storage root. */
export const siteRelativePath = (projectId: ProjectId): string => path.posix.join("projects", projectId, "site");

/**
 * The URL users open. In port mode it is only known once the container runs (random loopback
 * port), so `hostPort` is required there.
 */
export function publicUrl(projectId: ProjectId, settings: Pick<PreviewSettings, "routing" | "domain">, hostPort?: string): string {
  if (settings.routing === "port") {
    if (!hostPort) throw new Error(`no published port for preview ${projectId}`);
    return `http://127.0.0.1:${hostPort}`;
  }
  return `http://${projectId}.${settings.domain}`;
}

/**
 * `payloadSecret` is generated per container by the caller and never returned by the adapter
 * (step outputs are stored by Inngest). Identity labels are set after `extraLabels`, so extra
 * labels can never make a container look like another project's or instance's.
 */
export function containerSpec(projectId: ProjectId, settings: PreviewSettings, payloadSecret: string): ContainerCreateOptions {
  assertProjectId(projectId);
  const port = `${PREVIEW_PORT}/tcp`;
  const labels: Record<string, string> = {
    ...settings.extraLabels,
    [LABELS.MANAGED]: "true",
    [LABELS.PROJECT_ID]: projectId,
    [LABELS.OWNER]: settings.instanceId,
    ...(settings.routing === "traefik" ? traefikLabels(projectId, settings.domain, settings.network, PREVIEW_PORT, settings.authMiddleware) : {}),
  };
  // In port mode the site URL is only known after start (random host port); the app should not
  // need an absolute URL for a dev preview, so it gets the loopback base without a port.
  const siteUrl = settings.routing === "traefik" ? publicUrl(projectId, settings) : "http://127.0.0.1";
  const tmpBytes = settings.tmpBytes ?? DEFAULT_TMP_BYTES;
  if (!Number.isSafeInteger(tmpBytes) || tmpBytes <= 0) throw new IsolationSettingError(`tmpBytes must be a positive integer, not ${tmpBytes}`);
  return {
    name: containerName(projectId),
    Image: settings.image,
    Labels: labels,
    // Numeric, never root: the image's USER is overridden so a root image cannot undo it.
    User: previewUser(settings).user,
    // HOME on the tmpfs: with a read-only root and a uid without a passwd entry, npm and Next
    // would otherwise write under "/".
    Env: [`PAYLOAD_SECRET=${payloadSecret}`, `NEXT_PUBLIC_SITE_URL=${siteUrl}`, `PORT=${PREVIEW_PORT}`, "HOSTNAME=0.0.0.0", `HOME=${TMP_DIR}`],
    ExposedPorts: { [port]: {} },
    HostConfig: {
      ReadonlyRootfs: settings.readOnlyRootFs ?? true,
      // Bounded scratch space (its pages count against Memory); nosuid/nodev on top of no-new-privileges.
      Tmpfs: { [TMP_DIR]: `rw,nosuid,nodev,size=${tmpBytes},mode=1777` },
      // Only the project's own site folder, read from the daemon's view of storage.
      Mounts: [
        {
          Type: "bind",
          Source: path.posix.join(settings.storageHostPath, siteRelativePath(projectId)),
          Target: APP_DIR,
          ReadOnly: false,
        },
      ],
      NetworkMode: settings.network,
      // Forwards SIGTERM to the dev server so a stop takes ~0.1 s instead of the full timeout.
      Init: true,
      Privileged: false,
      CapDrop: ["ALL"],
      SecurityOpt: ["no-new-privileges:true"],
      Memory: settings.memoryBytes,
      MemorySwap: settings.memoryBytes,
      NanoCpus: settings.nanoCpus,
      PidsLimit: settings.pidsLimit,
      RestartPolicy: { Name: "no" },
      LogConfig: { Type: "json-file", Config: { "max-size": "10m", "max-file": "2" } },
      ...(settings.routing === "port" ? { PortBindings: { [port]: [{ HostIp: "127.0.0.1", HostPort: "" }] } } : {}),
    },
  };
}

/**
 * Why an existing container no longer matches the spec this service would create now, or null.
 * Only what isolation and routing depend on is compared (user, read-only root, privileges,
 * network, image, the mounted folder): a container created by an earlier version, or with other
 * settings, is recreated rather than started with a weaker spec.
 */
export function outdatedBy(info: ContainerInspectInfo, spec: ContainerCreateOptions): string | null {
  const want = spec.HostConfig ?? {};
  const have = info.HostConfig as typeof info.HostConfig & { ReadonlyRootfs?: boolean; SecurityOpt?: string[]; CapDrop?: string[] };
  const mount = (info.Mounts ?? []).find((m) => m.Destination === APP_DIR);
  const checks: Array<[string, unknown, unknown]> = [
    ["user", info.Config.User || "", spec.User ?? ""],
    ["read-only root", Boolean(have.ReadonlyRootfs), Boolean(want.ReadonlyRootfs)],
    ["privileged", Boolean(have.Privileged), false],
    ["dropped capabilities", (have.CapDrop ?? []).includes("ALL"), true],
    ["no-new-privileges", (have.SecurityOpt ?? []).some((o: string) => o.startsWith("no-new-privileges")), true],
    ["network", have.NetworkMode, want.NetworkMode],
    ["image", info.Config.Image, spec.Image],
    ["site folder", mount?.Source, want.Mounts?.[0]?.Source],
  ];
  const differs = checks.filter(([, a, b]) => a !== b).map(([what, a, b]) => `${what} ${JSON.stringify(a)} instead of ${JSON.stringify(b)}`);
  return differs.length ? differs.join(", ") : null;
}
