/** The composition root's mapping of the config onto the Docker adapter's settings (pure). */
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../runtime/config.js";
import { canLookIntoPreviews, previewSettings } from "../../runtime/service.js";

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

  it("PREVIEW_MOUNT_CHECK=auto requires the mount comparison when this process can make it (root, or the previews' own uid), else checks the path", () => {
    expect(previewSettings(config(), () => false, () => true).mountCheck).toBe("required");
    expect(previewSettings(config(), () => false, () => false).mountCheck).toBe("path");
    expect(previewSettings(config({ PREVIEW_MOUNT_CHECK: "path" }), () => false, () => true).mountCheck).toBe("path");
    expect(previewSettings(config({ PREVIEW_MOUNT_CHECK: "required" }), () => false, () => false).mountCheck).toBe("required");
  });

  it("a process may look into previews as root or as their own uid:gid, not as another user", () => {
    expect(canLookIntoPreviews("1000:1000", 0, 0)).toBe(true);
    expect(canLookIntoPreviews("1000:1000", 1000, 1000)).toBe(true);
    expect(canLookIntoPreviews("1000:1000", 1001, 1000)).toBe(false);
    expect(canLookIntoPreviews("1000:1000", 1000, 1001)).toBe(false);
  });

  it("passes the trusted peers through to the Docker adapter", () => {
    expect(previewSettings(config({ PREVIEW_TRUSTED_PEERS: "172.29.0.2, 172.29.0.3" }), () => false).trustedPeers).toEqual(["172.29.0.2", "172.29.0.3"]);
    expect(previewSettings(config(), () => false).trustedPeers).toEqual([]);
  });

  it("passes the isolation settings through and mounts from the daemon's view of storage", () => {
    const s = previewSettings(config({ STORAGE_HOST_PATH: "/host/storage", PREVIEW_USER: "2000:2000", PREVIEW_EGRESS: "false" }), () => false);
    expect(s).toMatchObject({ user: "2000:2000", egress: false, readOnlyRootFs: true, storageHostPath: "/host/storage" });
    expect(s).not.toHaveProperty("readyTimeoutMs");
  });
});
