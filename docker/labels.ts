/**
 * Every Docker label name this service reads or writes. A container is ours only when it carries
 * `MANAGED=true` and our `OWNER`: nothing else is ever stopped or removed.
 */
import type { ProjectId } from "../functions/project-id.js";

export const LABELS = {
  /** "true" on every preview container and on the preview network. */
  MANAGED: "sitebuilder.preview",
  PROJECT_ID: "sitebuilder.project-id",
  /** The managing instance (`INSTANCE_ID`), so two instances on one engine leave each other alone. */
  OWNER: "sitebuilder.owner",
} as const;

export const containerName = (projectId: ProjectId): string => `preview-${projectId}`;
export const routerName = (projectId: ProjectId): string => `preview-${projectId}`;

/** True when the labels mark a container (or network) as managed by this instance. */
export function isOwned(labels: Record<string, string> | undefined | null, owner: string): boolean {
  return labels?.[LABELS.MANAGED] === "true" && labels[LABELS.OWNER] === owner;
}

export function traefikLabels(projectId: ProjectId, domain: string, network: string): Record<string, string> {
  const name = routerName(projectId);
  return {
    "traefik.enable": "true",
    // Safe to interpolate: projectId is a validated DNS label and domain a validated DNS name.
    [`traefik.http.routers.${name}.rule`]: `Host(\`${projectId}.${domain}\`)`,
    [`traefik.http.routers.${name}.service`]: name,
    [`traefik.http.services.${name}.loadbalancer.server.port`]: "3000",
    "traefik.docker.network": network,
  };
}
