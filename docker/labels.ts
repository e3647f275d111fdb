/**
 * Every Docker label name this service reads or writes. A container is ours only when it carries
 * `MANAGED=true`, our `OWNER` and the expected `PROJECT_ID`: nothing else is ever started,
 * stopped, removed or adopted.
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

/** True when the labels mark a container (or network) as managed by this instance. */
export function isOwned(labels: Record<string, string> | undefined | null, owner: string): boolean {
  return labels?.[LABELS.MANAGED] === "true" && labels[LABELS.OWNER] === owner;
}

/** True when the labels mark a container as this instance's preview of `projectId`. */
export function isOwnPreview(labels: Record<string, string> | undefined | null, owner: string, projectId: ProjectId): boolean {
  return isOwned(labels, owner) && labels?.[LABELS.PROJECT_ID] === projectId;
}

/**
 * The router and service of one preview. `middleware`: the forward-auth middleware (declared once,
 * in docker-compose.yml; `PREVIEW_AUTH_MIDDLEWARE`) every preview router goes through, so each
 * request records activity and, with `PREVIEW_ACCESS=token`, is gated.
 */
export function traefikLabels(projectId: ProjectId, domain: string, network: string, port: number, middleware?: string | null): Record<string, string> {
  // Router and service share the container's name: unique per project, and a valid Traefik name.
  const name = containerName(projectId);
  return {
    "traefik.enable": "true",
    // Safe to interpolate: projectId is a validated DNS label and domain a validated DNS name.
    [`traefik.http.routers.${name}.rule`]: `Host(\`${projectId}.${domain}\`)`,
    [`traefik.http.routers.${name}.service`]: name,
    ...(middleware ? { [`traefik.http.routers.${name}.middlewares`]: middleware } : {}),
    [`traefik.http.services.${name}.loadbalancer.server.port`]: String(port),
    "traefik.docker.network": network,
  };
}
