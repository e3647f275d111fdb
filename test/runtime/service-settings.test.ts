/** The composition root's mapping of the config onto the Docker adapter's settings (pure). */
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../runtime/config.js";
import { previewSettings } from "../../runtime/service.js";

const config = (vars: Record<string, string> = {}) => loadConfig({ INNGEST_DEV: "1", STORAGE_PATH: "/srv/storage", ...vars }, "/app");

describe("previewSettings", () => {
  it("PREVIEW_HOST_FIREWALL=auto manages the rules when this process can, else leaves them to provisioning", () => {
    expect(previewSettings(config(), () => true).hostFirewall).toBe("iptables");
    expect(previewSettings(config(), () => false).hostFirewall).toBe("off");
  });

  it("an explicit setting is kept whatever the process could do", () => {
    expect(previewSettings(config({ PREVIEW_HOST_FIREWALL: "off" }), () => true).hostFirewall).toBe("off");
    expect(previewSettings(config({ PREVIEW_HOST_FIREWALL: "iptables" }), () => false).hostFirewall).toBe("iptables");
  });

  it("PREVIEW_MOUNT_CHECK=auto requires the mount comparison when running as root (who can make it), else checks the path", () => {
    expect(previewSettings(config(), () => false, () => true).mountCheck).toBe("required");
    expect(previewSettings(config(), () => false, () => false).mountCheck).toBe("path");
    expect(previewSettings(config({ PREVIEW_MOUNT_CHECK: "path" }), () => false, () => true).mountCheck).toBe("path");
    expect(previewSettings(config({ PREVIEW_MOUNT_CHECK: "required" }), () => false, () => false).mountCheck).toBe("required");
  });

  it("passes the isolation settings through and mounts from the daemon's view of storage", () => {
    const s = previewSettings(config({ STORAGE_HOST_PATH: "/host/storage", PREVIEW_USER: "2000:2000", PREVIEW_EGRESS: "false" }), () => false);
    expect(s).toMatchObject({ user: "2000:2000", egress: false, readOnlyRootFs: true, storageHostPath: "/host/storage" });
    expect(s).not.toHaveProperty("readyTimeoutMs");
  });
});
