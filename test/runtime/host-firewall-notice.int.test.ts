/**
 * PREVIEW_HOST_FIREWALL=external against the host's real iptables (as root, host network
 * namespace): the start-up check (runtime/service.ts `hostFirewallNotice`) finds the rules a
 * keeper installed, names the ones missing, and changes nothing itself. The rules are those of a
 * bridge name unique to this run (no interface needs to exist for them); every rule of that
 * bridge is removed at the end, by its comment.
 */
import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { HostFirewall, runIptables } from "../../docker/host-firewall.js";
import { loadConfig } from "../../runtime/config.js";
import { hostFirewallNotice, iptablesUsable, previewSettings } from "../../runtime/service.js";
import { removeFirewallRules } from "../helpers/docker.js";

const BRIDGE = `sbpfw${randomBytes(4).toString("hex")}`;
const PEERS = "172.29.0.2,172.29.0.3";
afterAll(() => removeFirewallRules(BRIDGE));

const config = loadConfig({ INNGEST_DEV: "1", STORAGE_PATH: "/srv/storage", PREVIEW_HOST_FIREWALL: "external", PREVIEW_BRIDGE: BRIDGE, PREVIEW_TRUSTED_PEERS: PEERS }, "/app");
const settings = previewSettings(config, () => true);
const keeper = HostFirewall.forBridge(BRIDGE, ["169.254.0.0/16"], runIptables, PEERS.split(",").map((address) => ({ address, port: null })));
const notice = () => hostFirewallNotice(config.preview.hostFirewall, settings, () => true, runIptables);

describe("PREVIEW_HOST_FIREWALL=external, real iptables", () => {
  it("runs here as root with iptables (the check's precondition)", () => {
    expect(iptablesUsable()).toBe(true);
    expect(settings.hostFirewall).toBe("off"); // the service installs nothing
  });

  it("no rule yet: warns naming every missing rule, and installs none", async () => {
    const n = await notice();
    expect(n?.level).toBe("warn");
    // The bridge's own rules (a peer's name its bridge port: the keeper's health check verifies those).
    const own = HostFirewall.forBridge(BRIDGE, ["169.254.0.0/16"], runIptables, []).rules.map((r) => `${r.chain} ${r.spec.join(" ")}`);
    expect(own.length).toBeGreaterThan(0);
    expect((n?.fields as { missing: string[] }).missing).toEqual(own);
    expect(await keeper.status()).toEqual(keeper.rules.map(() => false));
  });

  it("the keeper installed them: info, nothing missing", async () => {
    await keeper.install();
    const n = await notice();
    expect(n?.level).toBe("info");
    expect(n?.msg).toMatch(/present/);
  });

  it("one deleted behind the keeper's back: warns naming exactly that one", async () => {
    const gone = keeper.rules.find((r) => r.chain === "INPUT")!;
    const del = await runIptables(["-D", gone.chain, ...gone.spec]);
    expect(del.code).toBe(0);
    const n = await notice();
    expect(n?.level).toBe("warn");
    expect((n?.fields as { missing: string[] }).missing).toEqual([`${gone.chain} ${gone.spec.join(" ")}`]);
  });
});
