/**
 * The host firewall rules of the preview bridge, installed and removed through `iptables`
 * (the same binary, hence the same backend, the Docker engine uses).
 *
 * Why (measured on Docker 20.10): with inter-container communication off, a preview still
 * reaches every service of the host on any host address (the bridge's gateway, docker0, eth0),
 * and every port another container publishes (docker-proxy answers on the host). That traffic is
 * addressed to the host, so it crosses the INPUT chain: `DOCKER-USER` (FORWARD) never sees it.
 * Hence:
 *   INPUT        -i <bridge> NEW,INVALID -> REJECT   previews open no connection to the host;
 *                                                    replies to the host's own connections (the
 *                                                    router, the readiness probe) are ESTABLISHED
 *                                                    and pass.
 *   DOCKER-USER  -i <bridge> -d <cidr> NEW -> REJECT one per `egressDeny` entry (forwarded
 *                                                    traffic, e.g. cloud metadata 169.254.0.0/16).
 *   DOCKER-USER  -s <peer> -i <bridge> -o <bridge> -p tcp --dport 3000
 *                -m physdev --physdev-in <port> NEW -> ACCEPT
 *                                                    one per trusted peer (the router and this
 *                                                    service as containers on the preview
 *                                                    network): DOCKER-USER comes before the
 *                                                    engine's inter-container DROP, so only
 *                                                    these connections get through; replies
 *                                                    pass the engine's own ESTABLISHED rule,
 *                                                    and nothing on the bridge may open a
 *                                                    connection to a peer (no rule for that).
 *                                                    <port> is the bridge port (host-side veth)
 *                                                    of the peer's container (`peer-ports.ts`):
 *                                                    the source address alone can be forged by
 *                                                    any container with NET_RAW on the bridge
 *                                                    (ARP poisoning + raw TCP; review F2), the
 *                                                    port a frame entered the bridge by cannot.
 *   DOCKER-USER  -s <peer> -i <bridge> -o <bridge> -m physdev ! --physdev-in <port> -> DROP
 *   DOCKER-USER  -d <peer> -i <bridge> -o <bridge> -m physdev ! --physdev-out <port> -> DROP
 *                                                    the peer's address is never accepted from,
 *                                                    nor delivered to, another port of the
 *                                                    bridge, whatever the connection state: no
 *                                                    packet injected into a peer's connection,
 *                                                    no reply to the peer diverted by ARP
 *                                                    poisoning to another container.
 *   Fail closed: a peer whose port is not found (not running, ambiguous) gets no ACCEPT, only
 *   `-s <peer> -i <bridge> -o <bridge> -> DROP`. The port changes when the peer's container
 *   restarts: `sync` replaces stale peer rules.
 * The ACCEPT rules are kept above our REJECT rules (a denied range may contain the preview
 * subnet, e.g. 172.16.0.0/12): install re-inserts them on top whenever it adds a REJECT.
 *
 * Every rule carries the comment `sitebuilder-previews:<bridge>` and is matched exactly: install
 * adds a rule only when `iptables -C` does not find it (idempotent), remove deletes only rules
 * with that comment, so rules this code did not add are never touched. REJECT (not DROP): a
 * preview's attempt fails at once instead of hanging.
 */
import { execFile } from "node:child_process";
import { PermanentError } from "../functions/ports.js";
import { PREVIEW_PORT } from "./container-spec.js";

export const FIREWALL_COMMENT_PREFIX = "sitebuilder-previews:";
export type FirewallChain = "INPUT" | "DOCKER-USER";
export const FIREWALL_CHAINS: readonly FirewallChain[] = ["INPUT", "DOCKER-USER"];

export interface FirewallRule {
  chain: FirewallChain;
  /** The rule after the chain name, as `iptables -A <chain>` takes it. */
  spec: string[];
}

/** Runs `iptables` with these arguments (no shell); resolves with the exit code, never rejects on a non-zero exit. */
export type IptablesRunner = (args: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;

/** The host firewall could not be read or changed (no iptables, no permission, no DOCKER-USER chain). */
export class HostFirewallError extends PermanentError {
  override name = "HostFirewallError";
}

const IPTABLES_WAIT_SECONDS = "5";

export const runIptables: IptablesRunner = (args) =>
  new Promise((resolve, reject) => {
    // -w: wait for the xtables lock (the engine changes rules concurrently) instead of failing.
    execFile("iptables", ["-w", IPTABLES_WAIT_SECONDS, ...args], { timeout: 15_000 }, (err, stdout, stderr) => {
      if (err && typeof (err as NodeJS.ErrnoException).code === "string") {
        // ENOENT (no iptables binary), EACCES: not an exit status.
        reject(new HostFirewallError(`host firewall: cannot run iptables: ${err.message}`, { cause: err }));
        return;
      }
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });

export const firewallComment = (bridge: string): string => `${FIREWALL_COMMENT_PREFIX}${bridge}`;

/**
 * A trusted peer (validated IPv4 address) and the bridge port its container is plugged into: the
 * host-side interface name, or null when it was not found (then no ACCEPT for it: fail closed).
 */
export interface PeerBinding {
  address: string;
  port: string | null;
}

/**
 * The rules of one preview bridge: the REJECT rules, then the rules of each trusted peer (see the
 * header). Peer rules are written in the order `iptables -S` prints them back, so `sync` can
 * tell a current rule from a stale one by its text.
 */
export function previewFirewallRules(bridge: string, egressDeny: readonly string[], trustedPeers: readonly PeerBinding[] = []): FirewallRule[] {
  const comment = ["-m", "comment", "--comment", firewallComment(bridge)];
  const reject = ["-j", "REJECT", "--reject-with", "icmp-port-unreachable"];
  const within = ["-i", bridge, "-o", bridge];
  return [
    { chain: "INPUT", spec: ["-i", bridge, "-m", "conntrack", "--ctstate", "NEW,INVALID", ...comment, ...reject] },
    ...egressDeny.map((cidr): FirewallRule => ({ chain: "DOCKER-USER", spec: ["-i", bridge, "-d", cidr, "-m", "conntrack", "--ctstate", "NEW", ...comment, ...reject] })),
    ...trustedPeers.flatMap(({ address, port }): FirewallRule[] => {
      const src = ["-s", `${address}/32`, ...within];
      if (port === null) return [{ chain: "DOCKER-USER", spec: [...src, ...comment, "-j", "DROP"] }];
      return [
        { chain: "DOCKER-USER", spec: [...src, "-m", "physdev", "!", "--physdev-in", port, ...comment, "-j", "DROP"] },
        { chain: "DOCKER-USER", spec: ["-d", `${address}/32`, ...within, "-m", "physdev", "!", "--physdev-out", port, ...comment, "-j", "DROP"] },
        {
          chain: "DOCKER-USER",
          spec: [...src, "-p", "tcp", "-m", "tcp", "--dport", String(PREVIEW_PORT), "-m", "physdev", "--physdev-in", port, "-m", "conntrack", "--ctstate", "NEW", ...comment, "-j", "ACCEPT"],
        },
      ];
    }),
  ];
}

const isAccept = (rule: FirewallRule): boolean => rule.spec.at(-1) === "ACCEPT";
/** Peer rules (ACCEPT or DROP; the static rules REJECT): the ones that go stale when a peer's port changes. */
const isPeerSpec = (spec: readonly string[]): boolean => spec.at(-1) === "ACCEPT" || spec.at(-1) === "DROP";

/** The shell commands that install the rules (for operators who manage the firewall themselves). */
export const installCommands = (rules: readonly FirewallRule[]): string[] =>
  rules.map((r) => ["iptables", "-w", "-I", r.chain, "1", ...r.spec].join(" "));

export class HostFirewall {
  constructor(
    readonly bridge: string,
    readonly rules: readonly FirewallRule[],
    private readonly run: IptablesRunner = runIptables,
  ) {}

  static forBridge(bridge: string, egressDeny: readonly string[], run: IptablesRunner = runIptables, trustedPeers: readonly PeerBinding[] = []): HostFirewall {
    return new HostFirewall(bridge, previewFirewallRules(bridge, egressDeny, trustedPeers), run);
  }

  /** Whether each rule is present (same order as `rules`). */
  async status(): Promise<boolean[]> {
    const present: boolean[] = [];
    for (const rule of this.rules) present.push(await this.has(rule));
    return present;
  }

  /**
   * Adds the missing rules at the top of their chain; returns how many it added. The ACCEPT
   * rules (trusted peers) go in last, so they sit above every REJECT of ours; when a REJECT had
   * to be added, the ACCEPT rules already present are moved back on top (delete, insert).
   */
  async install(): Promise<number> {
    let added = 0;
    let rejectAdded = false;
    for (const rule of this.rules.filter((r) => !isAccept(r))) {
      if (await this.has(rule)) continue;
      await this.must(["-I", rule.chain, "1", ...rule.spec], `add a rule to ${rule.chain}`);
      added++;
      rejectAdded = true;
    }
    for (const rule of this.rules.filter(isAccept)) {
      const present = await this.has(rule);
      if (present && !rejectAdded) continue;
      if (present) await this.must(["-D", rule.chain, ...rule.spec], `move a rule of ${rule.chain}`);
      else added++;
      await this.must(["-I", rule.chain, "1", ...rule.spec], `add a rule to ${rule.chain}`);
    }
    return added;
  }

  /**
   * Deletes the peer rules (ACCEPT, DROP) of this bridge in DOCKER-USER that are not among
   * `rules` (a peer's old port, a peer no longer listed, a peer found again), then installs
   * what is missing. Returns how many rules it removed and added; converges when repeated.
   */
  async sync(): Promise<{ added: number; removed: number }> {
    const wanted = new Set(this.rules.filter((r) => r.chain === "DOCKER-USER").map((r) => r.spec.join(" ")));
    let removed = 0;
    const listed = await this.run(["-S", "DOCKER-USER"]);
    if (listed.code !== 0) throw new HostFirewallError(`host firewall: cannot list DOCKER-USER (iptables exit ${listed.code}): ${listed.stderr.trim()}`);
    for (const line of listed.stdout.split("\n")) {
      const spec = ownRuleSpec(line, "DOCKER-USER", firewallComment(this.bridge));
      if (!spec || !isPeerSpec(spec) || wanted.has(spec.join(" "))) continue;
      const res = await this.run(["-D", "DOCKER-USER", ...spec]);
      if (res.code === 0) removed++;
    }
    return { added: await this.install(), removed };
  }

  /**
   * Deletes every rule of this bridge (by its comment) from both chains, including rules of an
   * earlier `egressDeny`; returns how many. Rules without the comment are never deleted.
   */
  async remove(): Promise<number> {
    let removed = 0;
    const comment = firewallComment(this.bridge);
    for (const chain of FIREWALL_CHAINS) {
      const listed = await this.run(["-S", chain]);
      if (listed.code !== 0) continue; // no such chain (e.g. DOCKER-USER without the engine): nothing of ours there
      for (const line of listed.stdout.split("\n")) {
        const spec = ownRuleSpec(line, chain, comment);
        if (!spec) continue;
        const res = await this.run(["-D", chain, ...spec]);
        if (res.code === 0) removed++;
      }
    }
    return removed;
  }

  private async has(rule: FirewallRule): Promise<boolean> {
    const res = await this.run(["-C", rule.chain, ...rule.spec]);
    if (res.code === 0) return true;
    if (res.code === 1 && !/no chain|does not exist|permission denied|you must be root/i.test(res.stderr)) return false;
    throw new HostFirewallError(`host firewall: cannot check ${rule.chain} (iptables exit ${res.code}): ${res.stderr.trim() || res.stdout.trim()}`);
  }

  private async must(args: string[], what: string): Promise<void> {
    const res = await this.run(args);
    if (res.code !== 0) throw new HostFirewallError(`host firewall: cannot ${what} (iptables exit ${res.code}): ${res.stderr.trim()}`);
  }
}

/**
 * The spec (after the chain) of an `iptables -S` line when it is one of ours: an append to that
 * chain whose comment is exactly `comment`. Our rules contain no spaces or quotes, so splitting
 * on whitespace is exact for them; any other line is rejected.
 */
export function ownRuleSpec(line: string, chain: string, comment: string): string[] | null {
  const tokens = line.trim().split(/\s+/);
  if (tokens[0] !== "-A" || tokens[1] !== chain) return null;
  const at = tokens.indexOf("--comment");
  if (at < 0) return null;
  const value = tokens[at + 1]?.replace(/^"(.*)"$/, "$1");
  if (value !== comment) return null;
  if (tokens.some((t) => t.includes('"') && t !== `"${comment}"`)) return null;
  return tokens.slice(2).map((t) => (t === `"${comment}"` ? comment : t));
}
