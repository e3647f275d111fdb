/** The forward-auth middleware on every preview router (traefik routing), and nowhere in port routing. */
import { describe, expect, it } from "vitest";
import { containerSpec } from "../../docker/container-spec.js";
import { traefikLabels } from "../../docker/labels.js";
import type { PreviewSettings } from "../../docker/settings.js";

const SETTINGS: PreviewSettings = {
  instanceId: "previews",
  image: "preview-base:latest",
  network: "sitebuilder-previews",
  domain: "preview.localhost",
  routing: "traefik",
  memoryBytes: 512 * 1024 * 1024,
  nanoCpus: 1_000_000_000,
  pidsLimit: 256,
  storageHostPath: "/srv/host/storage",
  authMiddleware: "preview-auth@docker",
};

describe("forward-auth middleware label", () => {
  it("every preview router references the middleware", () => {
    const labels = containerSpec("site-1", SETTINGS, "secret").Labels!;
    expect(labels["traefik.http.routers.preview-site-1.middlewares"]).toBe("preview-auth@docker");
    expect(labels["traefik.http.routers.preview-site-1.rule"]).toBe("Host(`site-1.preview.localhost`)");
  });

  it("no middleware label without a middleware, none at all in port routing", () => {
    expect(Object.keys(traefikLabels("site-1", "preview.localhost", "net", 3000)).some((k) => k.endsWith(".middlewares"))).toBe(false);
    const port = containerSpec("site-1", { ...SETTINGS, routing: "port" }, "secret").Labels!;
    expect(Object.keys(port).some((k) => k.startsWith("traefik."))).toBe(false);
  });
});
