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
  const C = firewallComment("sbp-a");
  const bound = (peer: string, port: string) => [
    { chain: "DOCKER-USER", spec: ["-s", `${peer}/32`, "-i", "sbp-a", "-o", "sbp-a", "-m", "physdev", "!", "--physdev-in", port, "-m", "comment", "--comment", C, "-j", "DROP"] },
    { chain: "DOCKER-USER", spec: ["-d", `${peer}/32`, "-i", "sbp-a", "-o", "sbp-a", "-m", "physdev", "!", "--physdev-out", port, "-m", "comment", "--comment", C, "-j", "DROP"] },
    {
      chain: "DOCKER-USER",
      spec: ["-s", `${peer}/32`, "-i", "sbp-a", "-o", "sbp-a", "-p", "tcp", "-m", "tcp", "--dport", "3000", "-m", "physdev", "--physdev-in", port, "-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", C, "-j", "ACCEPT"],
    },
  ];

  it("binds each peer's ACCEPT to its bridge port (TCP 3000, new connections), and drops its address from or to any other port", () => {
    const rules = previewFirewallRules("sbp-a", ["169.254.0.0/16"], [
      { address: "172.29.0.2", port: "veth1111111" },
      { address: "172.29.0.3", port: "veth2222222" },
    ]);
    expect(rules.slice(2)).toEqual([...bound("172.29.0.2", "veth1111111"), ...bound("172.29.0.3", "veth2222222")]);
    // Nothing is opened towards a peer: the only rules naming a peer as destination DROP.
    expect(rules.filter((r) => r.spec.includes("-d") && r.spec[r.spec.indexOf("-d") + 1]!.startsWith("172.29.0.")).every((r) => r.spec.at(-1) === "DROP")).toBe(true);
  });

  it("fails closed for a peer whose port is unknown: no ACCEPT, its address dropped within the bridge", () => {
    const rules = previewFirewallRules("sbp-a", [], [{ address: "172.29.0.2", port: null }]);
    expect(rules.slice(1)).toEqual([{ chain: "DOCKER-USER", spec: ["-s", "172.29.0.2/32", "-i", "sbp-a", "-o", "sbp-a", "-m", "comment", "--comment", C, "-j", "DROP"] }]);
    expect(rules.some((r) => r.spec.at(-1) === "ACCEPT")).toBe(false);
  });

  it("sync replaces the rules of a peer whose port changed, keeps everything else, and converges", async () => {
    const ipt = fakeIptables({ INPUT: [], "DOCKER-USER": ["-s 172.29.0.2/32 -j ACCEPT", "-j RETURN"] });
    const fw = (port: string | null) => HostFirewall.forBridge("sbp-a", ["169.254.0.0/16"], ipt.run, [{ address: "172.29.0.2", port }]);
    expect(await fw("vethaaaaaaa").sync()).toEqual({ added: 5, removed: 0 });
    const ours = () => ipt.chains.get("DOCKER-USER")!.filter((r) => r.includes(C));
    expect(ours().filter((r) => r.includes("vethaaaaaaa"))).toHaveLength(3);
    // The peer restarted: new port; the old port's rules go, the REJECT stays.
    expect(await fw("vethbbbbbbb").sync()).toEqual({ added: 3, removed: 3 });
    expect(ours().some((r) => r.includes("vethaaaaaaa"))).toBe(false);
    expect(ours()[0]).toContain("--physdev-in vethbbbbbbb -m conntrack --ctstate NEW");
    expect(ours().filter((r) => r.includes("REJECT"))).toHaveLength(1);
    expect(await fw("vethbbbbbbb").sync()).toEqual({ added: 0, removed: 0 });
    // The peer is gone: only the fail-closed DROP is left for its address.
    expect(await fw(null).sync()).toEqual({ added: 1, removed: 3 });
    expect(ours().filter((r) => r.includes("172.29.0.2"))).toEqual([`-s 172.29.0.2/32 -i sbp-a -o sbp-a -m comment --comment "${C}" -j DROP`]);
    // A rule without our comment is never touched.
    expect(ipt.chains.get("DOCKER-USER")).toContain("-s 172.29.0.2/32 -j ACCEPT");
  });

  it("keeps the ACCEPT rules above its REJECT rules (a denied range may hold the preview subnet), also when a REJECT is added later", async () => {
    const ipt = fakeIptables();
    const peers = [{ address: "172.29.0.2", port: "vethaaaaaaa" }];
    expect(await HostFirewall.forBridge("sbp-a", ["10.0.0.0/8"], ipt.run, peers).install()).toBe(5);
    const ours = () => ipt.chains.get("DOCKER-USER")!.filter((r) => r.includes(firewallComment("sbp-a")));
    expect(ours()[0]).toContain("-j ACCEPT");
    expect(ours().at(-1)).toContain("-j REJECT");
    // A wider deny list later (e.g. 172.16.0.0/12, which holds the preview subnet): its REJECT
    // is inserted on top, and the ACCEPT is moved back above it.
    const wider = HostFirewall.forBridge("sbp-a", ["10.0.0.0/8", "172.16.0.0/12"], ipt.run, peers);
    expect(await wider.install()).toBe(1);
    expect(ours()[0]).toContain("-j ACCEPT");
    expect(ours()).toHaveLength(5);
    expect(await wider.status()).toEqual([true, true, true, true, true, true]);
    // Converged: nothing moves on the next install.
    const before = [...ipt.chains.get("DOCKER-USER")!];
    expect(await wider.install()).toBe(0);
    expect(ipt.chains.get("DOCKER-USER")).toEqual(before);
    expect(ipt.chains.get("DOCKER-USER")!.at(-1)).toBe("-j RETURN");
    // remove finds the peer rules by their comment like the others.
    expect(await wider.remove()).toBe(6);
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
