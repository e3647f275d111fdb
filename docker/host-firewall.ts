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
 *   DOCKER-USER  -i <bridge> -o <bridge> -s <peer> -p tcp --dport 3000 NEW -> ACCEPT
 *                                                    one per trusted peer (the router and this
 *                                                    service as containers on the preview
 *                                                    network): DOCKER-USER comes before the
 *                                                    engine's inter-container DROP, so only
 *                                                    these connections get through; replies
 *                                                    pass the engine's own ESTABLISHED rule,
 *                                                    and nothing on the bridge may open a
 *                                                    connection to a peer (no rule for that).
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

/** The rules of one preview bridge: the REJECT rules, then one ACCEPT per trusted peer (validated addresses). */
export function previewFirewallRules(bridge: string, egressDeny: readonly string[], trustedPeers: readonly string[] = []): FirewallRule[] {
  const comment = ["-m", "comment", "--comment", firewallComment(bridge)];
  const reject = ["-j", "REJECT", "--reject-with", "icmp-port-unreachable"];
  return [
    { chain: "INPUT", spec: ["-i", bridge, "-m", "conntrack", "--ctstate", "NEW,INVALID", ...comment, ...reject] },
    ...egressDeny.map((cidr): FirewallRule => ({ chain: "DOCKER-USER", spec: ["-i", bridge, "-d", cidr, "-m", "conntrack", "--ctstate", "NEW", ...comment, ...reject] })),
    ...trustedPeers.map(
      (peer): FirewallRule => ({
        chain: "DOCKER-USER",
        spec: ["-s", `${peer}/32`, "-i", bridge, "-o", bridge, "-p", "tcp", "-m", "tcp", "--dport", String(PREVIEW_PORT), "-m", "conntrack", "--ctstate", "NEW", ...comment, "-j", "ACCEPT"],
      }),
    ),
  ];
}

const isAccept = (rule: FirewallRule): boolean => rule.spec.at(-1) === "ACCEPT";

/** The shell commands that install the rules (for operators who manage the firewall themselves). */
export const installCommands = (rules: readonly FirewallRule[]): string[] =>
  rules.map((r) => ["iptables", "-w", "-I", r.chain, "1", ...r.spec].join(" "));

export class HostFirewall {
  constructor(
    readonly bridge: string,
    readonly rules: readonly FirewallRule[],
    private readonly run: IptablesRunner = runIptables,
  ) {}

  static forBridge(bridge: string, egressDeny: readonly string[], run: IptablesRunner = runIptables, trustedPeers: readonly string[] = []): HostFirewall {
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
