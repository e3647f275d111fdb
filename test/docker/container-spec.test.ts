/**
 * Pure unit tests of what a preview container is created with (no engine needed), the preview
 * URL, and the Docker log demultiplexer.
 */
import { describe, expect, it } from "vitest";
import { APP_DIR, PREVIEW_PORT, containerSpec, publicUrl, siteRelativePath, type PreviewSettings } from "../../docker/container-spec.js";
import { LABELS, containerName, isOwned } from "../../docker/labels.js";
import { demuxLogs, lastChars } from "../../docker/logs.js";
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

/** One multiplexed frame: [stream, 0, 0, 0, uint32 BE size] then the payload. */
function frame(stream: 0 | 1 | 2, payload: string | Buffer): Buffer {
  const body = typeof payload === "string" ? Buffer.from(payload, "utf8") : payload;
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(body.length, 4);
  return Buffer.concat([header, body]);
}

describe("demuxLogs", () => {
  it("joins stdout and stderr frames in order, without headers", () => {
    const buf = Buffer.concat([frame(1, "booting preview\n"), frame(2, "Error: Cannot find module next\n"), frame(1, "bye\n")]);
    expect(demuxLogs(buf)).toBe("booting preview\nError: Cannot find module next\nbye\n");
  });

  it("reads stdin frames and empty frames", () => {
    expect(demuxLogs(Buffer.concat([frame(0, "in\n"), frame(1, ""), frame(2, "err\n")]))).toBe("in\nerr\n");
  });

  it("decodes a UTF-8 character split across two frames", () => {
    const bytes = Buffer.from("café ✓\n", "utf8");
    const buf = Buffer.concat([frame(1, bytes.subarray(0, 4)), frame(1, bytes.subarray(4))]);
    expect(demuxLogs(buf)).toBe("café ✓\n");
  });

  it("keeps what arrived of a truncated last frame", () => {
    const full = frame(1, "hello world\n");
    expect(demuxLogs(Buffer.concat([frame(1, "first\n"), full.subarray(0, 8 + 5)]))).toBe("first\nhello");
  });

  it("ignores a trailing partial header", () => {
    expect(demuxLogs(Buffer.concat([frame(1, "ok\n"), Buffer.from([1, 0, 0])]))).toBe("ok\n");
  });

  it("returns raw (TTY) logs as they are", () => {
    expect(demuxLogs(Buffer.from("plain tty output\nline 2\n"))).toBe("plain tty output\nline 2\n");
    expect(demuxLogs(Buffer.from("hi\n"))).toBe("hi\n");
  });

  it("returns an empty string for no logs", () => {
    expect(demuxLogs(Buffer.alloc(0))).toBe("");
  });

  it("handles a large frame", () => {
    const big = "x".repeat(70_000);
    expect(demuxLogs(frame(2, big))).toBe(big);
  });
});

describe("lastChars", () => {
  it("returns short text unchanged", () => {
    expect(lastChars("abc\n", 10)).toBe("abc\n");
    expect(lastChars("abcd", 4)).toBe("abcd");
  });

  it("cuts at the first line start inside the kept window", () => {
    const text = "line1\nline2\nline3\n";
    expect(lastChars(text, 8)).toBe("line3\n");
    expect(lastChars(text, 14)).toBe("line2\nline3\n");
  });

  it("keeps a whole first line when the window already starts at a line start", () => {
    // The last 12 characters are exactly "line2\nline3\n": nothing needs cutting.
    expect(lastChars("line1\nline2\nline3\n", 12)).toBe("line2\nline3\n");
  });

  it("keeps the raw tail when it holds no usable line start", () => {
    expect(lastChars("abcdefghij", 4)).toBe("ghij");
    expect(lastChars("abcdefghi\n", 4)).toBe("ghi\n");
  });

  it("never returns more than maxChars", () => {
    const text = Array.from({ length: 500 }, (_, i) => `log line number ${i}`).join("\n");
    const tail = lastChars(text, 1000);
    expect(tail.length).toBeLessThanOrEqual(1000);
    expect(text.endsWith(tail)).toBe(true);
    expect(tail.startsWith("log line number")).toBe(true);
  });
});
