/** The composition root's mapping of the config onto the Docker adapter's settings (pure). */
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../runtime/config.js";
import type { IptablesRunner } from "../../docker/host-firewall.js";
import { canLookIntoPreviews, hostFirewallNotice, previewSettings } from "../../runtime/service.js";

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

  it("PREVIEW_HOST_FIREWALL=external: this process never installs the rules (a keeper does)", () => {
    expect(previewSettings(config({ PREVIEW_HOST_FIREWALL: "external" }), () => true).hostFirewall).toBe("off");
    expect(previewSettings(config({ PREVIEW_HOST_FIREWALL: "external" }), () => false).hostFirewall).toBe("off");
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

/** An iptables that answers `-C` from a set of present rules (joined specs) and records every call. */
function iptablesWith(present: (chain: string, spec: string) => boolean) {
  const calls: string[][] = [];
  const run: IptablesRunner = async (args) => {
    calls.push(args);
    const [op, chain, ...spec] = args;
    if (op !== "-C") return { code: 2, stdout: "", stderr: `unexpected ${op}` };
    return present(chain!, spec.join(" ")) ? { code: 0, stdout: "", stderr: "" } : { code: 1, stdout: "", stderr: "iptables: Bad rule (does a matching rule exist in that chain?).\n" };
  };
  return { run, calls };
}

describe("hostFirewallNotice (start-up line about the host rules)", () => {
  const settingsOf = (vars: Record<string, string>) => {
    const c = config({ PREVIEW_NETWORK: "sitebuilder-previews", PREVIEW_BRIDGE: "sbp-previews", ...vars });
    return { mode: c.preview.hostFirewall, settings: previewSettings(c, () => false) };
  };

  it("off: warns that previews can reach host services, and names external", async () => {
    const { mode, settings } = settingsOf({ PREVIEW_HOST_FIREWALL: "off" });
    const notice = await hostFirewallNotice(mode, settings, () => true, iptablesWith(() => true).run);
    expect(notice?.level).toBe("warn");
    expect(notice?.msg).toMatch(/previews can reach host services/);
    expect(notice?.msg).toContain("PREVIEW_HOST_FIREWALL=external");
  });

  it("iptables (this process installs them): nothing to say", async () => {
    const c = config({ PREVIEW_HOST_FIREWALL: "iptables" });
    expect(await hostFirewallNotice(c.preview.hostFirewall, previewSettings(c), () => true, iptablesWith(() => false).run)).toBeNull();
  });

  it("external, every rule present: info only, checked read-only (-C) and nothing installed", async () => {
    const { mode, settings } = settingsOf({ PREVIEW_HOST_FIREWALL: "external", PREVIEW_TRUSTED_PEERS: "172.29.0.2,172.29.0.3" });
    const ipt = iptablesWith(() => true);
    const notice = await hostFirewallNotice(mode, settings, () => true, ipt.run);
    expect(notice?.level).toBe("info");
    expect(notice?.msg).toMatch(/present/);
    expect(ipt.calls.length).toBeGreaterThan(0);
    expect(ipt.calls.every((a) => a[0] === "-C")).toBe(true);
    expect(ipt.calls.some((a) => a.includes("sbp-previews"))).toBe(true);
  });

  it("external, a rule missing: warns naming the missing rules", async () => {
    const { mode, settings } = settingsOf({ PREVIEW_HOST_FIREWALL: "external" });
    const notice = await hostFirewallNotice(mode, settings, () => true, iptablesWith((chain) => chain !== "INPUT").run);
    expect(notice?.level).toBe("warn");
    expect(notice?.msg).toMatch(/missing/);
    const missing = (notice?.fields as { missing: string[] }).missing;
    expect(missing.length).toBeGreaterThan(0);
    expect(missing.every((r) => r.startsWith("INPUT "))).toBe(true);
  });

  it("external, a chain that cannot be read: warns", async () => {
    const { mode, settings } = settingsOf({ PREVIEW_HOST_FIREWALL: "external" });
    const run: IptablesRunner = async () => ({ code: 1, stdout: "", stderr: "iptables: No chain/target/match by that name." });
    expect((await hostFirewallNotice(mode, settings, () => true, run))?.level).toBe("warn");
  });

  it("external, this process cannot check (non-root, own network namespace): info, no iptables call", async () => {
    const { mode, settings } = settingsOf({ PREVIEW_HOST_FIREWALL: "external" });
    const ipt = iptablesWith(() => false);
    const notice = await hostFirewallNotice(mode, settings, () => false, ipt.run);
    expect(notice?.level).toBe("info");
    expect(notice?.msg).toMatch(/not checked from this process/);
    expect(ipt.calls).toEqual([]);
  });
});
