/**
 * Pure unit tests (no engine) of what a preview container is created with, its labels, and the
 * preview URL.
 */
import { describe, expect, it } from "vitest";
import { APP_DIR, PREVIEW_PORT, containerSpec, publicUrl, siteRelativePath } from "../../docker/container-spec.js";
import { LABELS, containerName, isOwnPreview, isOwned } from "../../docker/labels.js";
import type { PreviewSettings } from "../../docker/settings.js";
import { IsolationSettingError } from "../../docker/isolation.js";
import { PermanentError } from "../../functions/ports.js";
import { InvalidProjectIdError } from "../../functions/project-id.js";

const SETTINGS: PreviewSettings = {
  instanceId: "previews-eu",
  image: "preview-base:latest",
  network: "sitebuilder-previews",
  domain: "preview.localhost",
  routing: "traefik",
  memoryBytes: 512 * 1024 * 1024,
  nanoCpus: 1_500_000_000,
  pidsLimit: 256,
  storageHostPath: "/srv/host/storage",
};
const PORT_SETTINGS: PreviewSettings = { ...SETTINGS, routing: "port" };
const SECRET = "s3cr3t-payload";

const traefikKeys = (labels: Record<string, string>) => Object.keys(labels).filter((k) => k.startsWith("traefik."));

describe("containerSpec (traefik routing)", () => {
  const spec = containerSpec("site-42", SETTINGS, SECRET);
  const labels = spec.Labels!;
  const host = spec.HostConfig!;

  it("names the container preview-<id> and runs the configured image", () => {
    expect(spec.name).toBe("preview-site-42");
    expect(spec.name).toBe(containerName("site-42"));
    expect(spec.Image).toBe("preview-base:latest");
  });

  it("labels it as a managed preview of this project and owner", () => {
    expect(labels[LABELS.MANAGED]).toBe("true");
    expect(labels[LABELS.PROJECT_ID]).toBe("site-42");
    expect(labels[LABELS.OWNER]).toBe("previews-eu");
    expect(isOwned(labels, "previews-eu")).toBe(true);
    expect(isOwned(labels, "someone-else")).toBe(false);
    expect(isOwnPreview(labels, "previews-eu", "site-42")).toBe(true);
    expect(isOwnPreview(labels, "previews-eu", "site-43")).toBe(false);
  });

  it.each([
    ["no labels", {}],
    ["managed is not true", { [LABELS.MANAGED]: "false", [LABELS.OWNER]: "previews-eu", [LABELS.PROJECT_ID]: "site-42" }],
    ["no owner", { [LABELS.MANAGED]: "true", [LABELS.PROJECT_ID]: "site-42" }],
    ["another owner", { [LABELS.MANAGED]: "true", [LABELS.OWNER]: "previews-us", [LABELS.PROJECT_ID]: "site-42" }],
    ["no project id", { [LABELS.MANAGED]: "true", [LABELS.OWNER]: "previews-eu" }],
  ])("does not count a container with %s as this instance's preview", (_what, labels: Record<string, string>) => {
    expect(isOwnPreview(labels, "previews-eu", "site-42")).toBe(false);
    expect(isOwnPreview(null, "previews-eu", "site-42")).toBe(false);
  });

  it("carries the Traefik router and service labels", () => {
    expect(labels).toMatchObject({
      "traefik.enable": "true",
      "traefik.http.routers.preview-site-42.rule": "Host(`site-42.preview.localhost`)",
      "traefik.http.routers.preview-site-42.service": "preview-site-42",
      "traefik.http.services.preview-site-42.loadbalancer.server.port": "3000",
      "traefik.docker.network": "sitebuilder-previews",
    });
    expect(traefikKeys(labels)).toHaveLength(5);
  });

  it("is hardened", () => {
    expect(host.Privileged).toBe(false);
    expect(host.CapDrop).toEqual(["ALL"]);
    expect(host.CapAdd).toBeUndefined();
    expect(host.SecurityOpt).toContain("no-new-privileges:true");
    expect(host.Memory).toBe(512 * 1024 * 1024);
    expect(host.MemorySwap).toBe(512 * 1024 * 1024);
    expect(host.NanoCpus).toBe(1_500_000_000);
    expect(host.PidsLimit).toBe(256);
    expect(host.Init).toBe(true);
    expect(host.RestartPolicy).toEqual({ Name: "no" });
    expect(host.NetworkMode).toBe("sitebuilder-previews");
    expect(host.PidMode).toBeUndefined();
    expect(host.IpcMode).toBeUndefined();
    expect(host.Devices).toBeUndefined();
  });

  it("runs as the non-root default user 1000:1000 on a read-only root, with a bounded tmpfs /tmp as HOME", () => {
    expect(spec.User).toBe("1000:1000");
    expect(host.ReadonlyRootfs).toBe(true);
    expect(host.Tmpfs).toEqual({ "/tmp": `rw,nosuid,nodev,size=${512 * 1024 * 1024},mode=1777` });
    expect(spec.Env).toContain("HOME=/tmp");
  });

  it("bind-mounts exactly the project's site folder, from the host path, at /app", () => {
    expect(host.Mounts).toEqual([
      { Type: "bind", Source: "/srv/host/storage/projects/site-42/site", Target: APP_DIR, ReadOnly: false },
    ]);
    expect(APP_DIR).toBe("/app");
    expect(host.Binds).toBeUndefined();
    expect(spec.Volumes).toBeUndefined();
    expect(siteRelativePath("site-42")).toBe("projects/site-42/site");
  });

  it("never uses process.cwd() for the mount source", () => {
    const other = containerSpec("site-42", { ...SETTINGS, storageHostPath: "/mnt/elsewhere/" }, SECRET);
    expect(other.HostConfig!.Mounts![0]!.Source).toBe("/mnt/elsewhere/projects/site-42/site");
    expect(JSON.stringify(spec)).not.toContain(process.cwd());
  });

  it("does not give the container the Docker socket in any form", () => {
    const json = JSON.stringify(spec);
    expect(json).not.toContain("docker.sock");
    expect(json).not.toContain("/var/run");
    expect(spec.Env!.some((e) => e.startsWith("DOCKER_HOST="))).toBe(false);
  });

  it("exposes the dev server port without publishing it", () => {
    expect(PREVIEW_PORT).toBe(3000);
    expect(spec.ExposedPorts).toEqual({ "3000/tcp": {} });
    expect(host.PortBindings).toBeUndefined();
    expect(host.PublishAllPorts).toBeFalsy();
  });

  it("passes the dev server its environment", () => {
    expect(spec.Env).toEqual(
      expect.arrayContaining([
        `PAYLOAD_SECRET=${SECRET}`,
        "NEXT_PUBLIC_SITE_URL=http://site-42.preview.localhost",
        "PORT=3000",
        "HOSTNAME=0.0.0.0",
      ]),
    );
  });

  it("keeps extra labels but never lets them override the identity labels", () => {
    const s = containerSpec(
      "site-42",
      {
        ...SETTINGS,
        extraLabels: { "test-run": "r1", [LABELS.MANAGED]: "false", [LABELS.PROJECT_ID]: "other", [LABELS.OWNER]: "intruder" },
      },
      SECRET,
    );
    expect(s.Labels!["test-run"]).toBe("r1");
    expect(s.Labels![LABELS.MANAGED]).toBe("true");
    expect(s.Labels![LABELS.PROJECT_ID]).toBe("site-42");
    expect(s.Labels![LABELS.OWNER]).toBe("previews-eu");
  });

  it.each(["../x", "A", "a_b", "a`b", "a.b", "", "-a", "a".repeat(64)])("throws on the invalid id %j", (id) => {
    expect(() => containerSpec(id, SETTINGS, SECRET)).toThrow(InvalidProjectIdError);
  });
});

describe("containerSpec (port routing)", () => {
  const spec = containerSpec("site-42", PORT_SETTINGS, SECRET);

  it("publishes 3000 on the loopback interface with a random host port", () => {
    expect(spec.ExposedPorts).toEqual({ "3000/tcp": {} });
    expect(spec.HostConfig!.PortBindings).toEqual({ "3000/tcp": [{ HostIp: "127.0.0.1", HostPort: "" }] });
  });

  it("has no Traefik labels but keeps the identity labels", () => {
    expect(traefikKeys(spec.Labels!)).toEqual([]);
    expect(spec.Labels![LABELS.MANAGED]).toBe("true");
    expect(spec.Labels![LABELS.PROJECT_ID]).toBe("site-42");
  });

  it("keeps the same hardening and mount", () => {
    const h = spec.HostConfig!;
    expect(h.Privileged).toBe(false);
    expect(h.CapDrop).toEqual(["ALL"]);
    expect(h.Mounts).toHaveLength(1);
    expect(h.Mounts![0]!.Source).toBe("/srv/host/storage/projects/site-42/site");
  });

  it("gives the app a loopback site URL", () => {
    expect(spec.Env).toContain("NEXT_PUBLIC_SITE_URL=http://127.0.0.1");
  });
});

describe("containerSpec (unprivileged settings)", () => {
  it("takes the configured uid:gid, root fs mode and tmpfs size", () => {
    const s = containerSpec("site-42", { ...SETTINGS, user: "1234:5678", readOnlyRootFs: false, tmpBytes: 64 * 1024 * 1024 }, SECRET);
    expect(s.User).toBe("1234:5678");
    expect(s.HostConfig!.ReadonlyRootfs).toBe(false);
    expect(s.HostConfig!.Tmpfs).toEqual({ "/tmp": `rw,nosuid,nodev,size=${64 * 1024 * 1024},mode=1777` });
  });

  it.each(["0:0", "0:1000", "1000:0", "root", "node", "1000"])("refuses the user %j permanently", (user) => {
    expect(() => containerSpec("site-42", { ...SETTINGS, user }, SECRET)).toThrow(IsolationSettingError);
    expect(() => containerSpec("site-42", { ...SETTINGS, user }, SECRET)).toThrow(PermanentError);
  });

  it.each([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])("refuses the tmpfs size %s", (tmpBytes) => {
    expect(() => containerSpec("site-42", { ...SETTINGS, tmpBytes }, SECRET)).toThrow(IsolationSettingError);
  });

  it("keeps the network settings out of the container: it joins the network by name only", () => {
    const s = containerSpec("site-42", { ...SETTINGS, egress: false, hostFirewall: "iptables", bridgeName: "br-previews" }, SECRET);
    expect(s.HostConfig!.NetworkMode).toBe("sitebuilder-previews");
    expect(s.NetworkingConfig).toBeUndefined();
  });
});

describe("publicUrl", () => {
  it("is http://<id>.<domain> with traefik routing", () => {
    expect(publicUrl("site-42", SETTINGS)).toBe("http://site-42.preview.localhost");
    expect(publicUrl("a", { routing: "traefik", domain: "example.com" }, "1234")).toBe("http://a.example.com");
  });

  it("is the loopback host port with port routing", () => {
    expect(publicUrl("site-42", PORT_SETTINGS, "49153")).toBe("http://127.0.0.1:49153");
  });

  it("throws in port mode without a published port", () => {
    expect(() => publicUrl("site-42", PORT_SETTINGS)).toThrow("no published port for preview site-42");
    expect(() => publicUrl("site-42", PORT_SETTINGS, "")).toThrow(/no published port/);
  });
});
