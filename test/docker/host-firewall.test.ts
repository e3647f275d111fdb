/**
 * The host firewall rules of the preview bridge, against an in-memory iptables (no root, no
 * kernel): what the rules are, that install is idempotent and remove deletes only rules carrying
 * the bridge's comment.
 */
import { describe, expect, it } from "vitest";
import { HostFirewall, HostFirewallError, firewallComment, installCommands, ownRuleSpec, previewFirewallRules, type IptablesRunner } from "../../docker/host-firewall.js";

/** A tiny iptables: chains of rule strings, -C/-I/-A/-D/-S as the real one answers them. */
function fakeIptables(initial: Record<string, string[]> = { INPUT: [], "DOCKER-USER": ["-j RETURN"] }) {
  const chains = new Map(Object.entries(initial).map(([k, v]) => [k, [...v]]));
  const calls: string[][] = [];
  const quote = (spec: string[]) => spec.map((t, i) => (spec[i - 1] === "--comment" ? `"${t}"` : t)).join(" ");
  const run: IptablesRunner = async (args) => {
    calls.push(args);
    const [op, chain, ...rest] = args;
    const rules = chains.get(chain!);
    if (!rules) return { code: 1, stdout: "", stderr: "iptables: No chain/target/match by that name.\n" };
    switch (op) {
      case "-S":
        return { code: 0, stdout: [`-N ${chain}`, ...rules.map((r) => `-A ${chain} ${r}`)].join("\n") + "\n", stderr: "" };
      case "-C":
        return rules.includes(quote(rest)) ? { code: 0, stdout: "", stderr: "" } : { code: 1, stdout: "", stderr: "iptables: Bad rule (does a matching rule exist in that chain?).\n" };
      case "-I":
        rules.unshift(quote(rest.slice(1)));
        return { code: 0, stdout: "", stderr: "" };
      case "-A":
        rules.push(quote(rest));
        return { code: 0, stdout: "", stderr: "" };
      case "-D": {
        const at = rules.indexOf(quote(rest));
        if (at < 0) return { code: 1, stdout: "", stderr: "iptables: Bad rule.\n" };
        rules.splice(at, 1);
        return { code: 0, stdout: "", stderr: "" };
      }
      default:
        return { code: 2, stdout: "", stderr: `unknown ${op}` };
    }
  };
  return { run, chains, calls };
}

describe("previewFirewallRules", () => {
  it("rejects new connections from the bridge to the host, and to each denied range (forwarded)", () => {
    const rules = previewFirewallRules("sbp-0123456789a", ["169.254.0.0/16"]);
    expect(rules).toEqual([
      {
        chain: "INPUT",
        spec: ["-i", "sbp-0123456789a", "-m", "conntrack", "--ctstate", "NEW,INVALID", "-m", "comment", "--comment", "sitebuilder-previews:sbp-0123456789a", "-j", "REJECT", "--reject-with", "icmp-port-unreachable"],
      },
      {
        chain: "DOCKER-USER",
        spec: ["-i", "sbp-0123456789a", "-d", "169.254.0.0/16", "-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "sitebuilder-previews:sbp-0123456789a", "-j", "REJECT", "--reject-with", "icmp-port-unreachable"],
      },
    ]);
    // Scoped: every rule matches the bridge as input interface, and only NEW (INVALID) packets,
    // so replies to the host's own connections (router, readiness probe) pass.
    for (const r of rules) {
      expect(r.spec.slice(0, 2)).toEqual(["-i", "sbp-0123456789a"]);
      expect(r.spec.join(" ")).not.toContain("ESTABLISHED");
    }
    expect(installCommands(rules)[0]).toBe(
      "iptables -w -I INPUT 1 -i sbp-0123456789a -m conntrack --ctstate NEW,INVALID -m comment --comment sitebuilder-previews:sbp-0123456789a -j REJECT --reject-with icmp-port-unreachable",
    );
  });
});

describe("HostFirewall", () => {
  it("installs missing rules at the top of their chains, once", async () => {
    const ipt = fakeIptables({ INPUT: ["-i eth0 -j ACCEPT"], "DOCKER-USER": ["-j RETURN"] });
    const fw = HostFirewall.forBridge("sbp-a", ["169.254.0.0/16", "10.0.0.0/8"], ipt.run);
    expect(await fw.status()).toEqual([false, false, false]);
    expect(await fw.install()).toBe(3);
    expect(await fw.install()).toBe(0);
    expect(await fw.status()).toEqual([true, true, true]);
    expect(ipt.chains.get("INPUT")![0]).toContain("-i sbp-a ");
    expect(ipt.chains.get("INPUT")![1]).toBe("-i eth0 -j ACCEPT");
    expect(ipt.chains.get("DOCKER-USER")!.at(-1)).toBe("-j RETURN");
    expect(ipt.chains.get("DOCKER-USER")!.filter((r) => r.includes("sbp-a"))).toHaveLength(2);
  });

  it("removes only the rules carrying its bridge's comment, including those of an earlier deny list", async () => {
    const other = HostFirewall.forBridge("sbp-b", ["169.254.0.0/16"]);
    const foreign = [
      "-i eth0 -j ACCEPT",
      `-i sbp-a -m comment --comment "not-ours" -j RETURN`,
      `-i sbp-a -m comment --comment "${firewallComment("sbp-a")}-x" -j DROP`,
      `-i sbp-a -m comment --comment "hello world ${firewallComment("sbp-a")}" -j DROP`,
    ];
    const ipt = fakeIptables({ INPUT: [...foreign], "DOCKER-USER": ["-j RETURN"] });
    await HostFirewall.forBridge("sbp-a", ["10.0.0.0/8", "169.254.0.0/16"], ipt.run).install();
    await new HostFirewall("sbp-b", other.rules, ipt.run).install();
    // The deny list shrank since install: remove still finds the 10/8 rule by its comment.
    const fw = HostFirewall.forBridge("sbp-a", ["169.254.0.0/16"], ipt.run);
    expect(await fw.remove()).toBe(3);
    expect(await fw.remove()).toBe(0);
    const left = [...ipt.chains.get("INPUT")!, ...ipt.chains.get("DOCKER-USER")!];
    expect(left.filter((r) => r.includes(`"${firewallComment("sbp-a")}"`))).toEqual([]);
    expect(left.filter((r) => r.includes(`"${firewallComment("sbp-b")}"`))).toHaveLength(2);
    for (const f of foreign) expect(ipt.chains.get("INPUT")).toContain(f);
  });

  it("fails clearly (permanent) when iptables refuses, e.g. without root", async () => {
    const run: IptablesRunner = async () => ({ code: 4, stdout: "", stderr: "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)\n" });
    const err = await HostFirewall.forBridge("sbp-a", [], run).install().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(HostFirewallError);
    expect((err as Error).message).toMatch(/you must be root/);
  });

  it("fails clearly when a chain is missing (the engine runs without iptables)", async () => {
    const ipt = fakeIptables({ INPUT: [] });
    const err = await HostFirewall.forBridge("sbp-a", ["169.254.0.0/16"], ipt.run).install().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(HostFirewallError);
    expect((err as Error).message).toMatch(/DOCKER-USER/);
  });
});

describe("trusted peers", () => {
  it("adds one ACCEPT per peer: from that address, within the bridge, TCP 3000, new connections only", () => {
    const rules = previewFirewallRules("sbp-a", ["169.254.0.0/16"], ["172.29.0.2", "172.29.0.3"]);
    expect(rules).toHaveLength(4);
    expect(rules.slice(2)).toEqual(
      ["172.29.0.2", "172.29.0.3"].map((peer) => ({
        chain: "DOCKER-USER",
        spec: ["-s", `${peer}/32`, "-i", "sbp-a", "-o", "sbp-a", "-p", "tcp", "-m", "tcp", "--dport", "3000", "-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", firewallComment("sbp-a"), "-j", "ACCEPT"],
      })),
    );
    // Nothing is opened towards a peer: no rule names a peer as destination.
    expect(rules.some((r) => r.spec.includes("-d") && r.spec[r.spec.indexOf("-d") + 1]!.startsWith("172.29.0."))).toBe(false);
  });

  it("keeps the ACCEPT rules above its REJECT rules (a denied range may hold the preview subnet), also when a REJECT is added later", async () => {
    const ipt = fakeIptables();
    const peers = ["172.29.0.2"];
    expect(await HostFirewall.forBridge("sbp-a", ["10.0.0.0/8"], ipt.run, peers).install()).toBe(3);
    const ours = () => ipt.chains.get("DOCKER-USER")!.filter((r) => r.includes(firewallComment("sbp-a")));
    expect(ours().map((r) => r.split(" -j ")[1])).toEqual(["ACCEPT", "REJECT --reject-with icmp-port-unreachable"]);
    // A wider deny list later (e.g. 172.16.0.0/12, which holds the preview subnet): its REJECT
    // is inserted on top, and the ACCEPT is moved back above it.
    const wider = HostFirewall.forBridge("sbp-a", ["10.0.0.0/8", "172.16.0.0/12"], ipt.run, peers);
    expect(await wider.install()).toBe(1);
    expect(ours()[0]).toContain("-j ACCEPT");
    expect(ours()).toHaveLength(3);
    expect(await wider.status()).toEqual([true, true, true, true]);
    // Converged: nothing moves on the next install.
    const before = [...ipt.chains.get("DOCKER-USER")!];
    expect(await wider.install()).toBe(0);
    expect(ipt.chains.get("DOCKER-USER")).toEqual(before);
    expect(ipt.chains.get("DOCKER-USER")!.at(-1)).toBe("-j RETURN");
    // remove finds the ACCEPT rules by their comment like the others.
    expect(await wider.remove()).toBe(4);
  });
});

describe("ownRuleSpec", () => {
  const c = firewallComment("sbp-a");
  it("turns one of our -S lines back into a deletable spec", () => {
    expect(ownRuleSpec(`-A INPUT -i sbp-a -m conntrack --ctstate INVALID,NEW -m comment --comment "${c}" -j REJECT --reject-with icmp-port-unreachable`, "INPUT", c)).toEqual(
      ["-i", "sbp-a", "-m", "conntrack", "--ctstate", "INVALID,NEW", "-m", "comment", "--comment", c, "-j", "REJECT", "--reject-with", "icmp-port-unreachable"],
    );
  });
  it("ignores every other line", () => {
    expect(ownRuleSpec(`-A INPUT -i sbp-a -m comment --comment "${c}" -j REJECT`, "DOCKER-USER", c)).toBeNull();
    expect(ownRuleSpec(`-N INPUT`, "INPUT", c)).toBeNull();
    expect(ownRuleSpec(`-P INPUT ACCEPT`, "INPUT", c)).toBeNull();
    expect(ownRuleSpec(`-A INPUT -i sbp-a -j REJECT`, "INPUT", c)).toBeNull();
    expect(ownRuleSpec(`-A INPUT -i sbp-a -m comment --comment "${c}x" -j REJECT`, "INPUT", c)).toBeNull();
    expect(ownRuleSpec(`-A INPUT -m comment --comment "a b" -i sbp-a -m comment --comment "${c}" -j REJECT`, "INPUT", c)).toBeNull();
  });
});
