/**
 * Installs, removes or shows the host firewall rules of the preview bridge, for hosts where the
 * service itself does not manage them (`PREVIEW_HOST_FIREWALL=off`, e.g. it runs without root or
 * CAP_NET_ADMIN). Run as root on the Docker host, at provisioning time and at every boot (the
 * rules live in the kernel, not on disk), e.g. from a systemd unit ordered after docker.service:
 *
 *   npx tsx scripts/preview-firewall.ts install [--network sitebuilder-previews | --bridge NAME] [--deny 169.254.0.0/16,10.0.0.0/8]
 *   npx tsx scripts/preview-firewall.ts status  [...]   exit 0 when every rule is present, 1 otherwise
 *   npx tsx scripts/preview-firewall.ts remove  [...]   deletes only the rules carrying this bridge's comment
 *   npx tsx scripts/preview-firewall.ts print   [...]   prints the iptables commands (for your own firewall config)
 *   npx tsx scripts/preview-firewall.ts watch   [...] [--every 30]   install, then check again every N seconds
 *                                                       and put back what a firewall reload removed (runs until SIGTERM)
 *
 * From the production image (compiled, no tsx): `node dist/scripts/preview-firewall.js ...`;
 * docker-compose.yml runs `watch` as its `firewall` service (root, host network, NET_ADMIN only).
 * `--peers 172.29.0.2,172.29.0.3`: trusted peers on the preview network (PREVIEW_TRUSTED_PEERS,
 * README "Deployment"), let through to port 3000 there, each bound to the bridge port of ITS
 * container (docker/peer-ports.ts): with peers every command asks the engine (DOCKER_HOST or
 * /var/run/docker.sock) which running container holds each address on `--network`, and reads
 * /proc/<its pid>/net (so it needs the host's pid namespace). A peer whose port is not found
 * gets no ACCEPT rule (fail closed) and is reported; `install`/`watch` replace the rules of a
 * peer whose port changed (a restarted container), `watch` at every round.
 *
 * The bridge name defaults to the one the service derives from the network name
 * (PREVIEW_NETWORK, default sitebuilder-previews), so both agree without configuration.
 * Idempotent: install adds only missing rules; remove touches only rules it would have added.
 */
import Docker from "dockerode";
import { HostFirewall, installCommands, previewFirewallRules } from "../docker/host-firewall.js";
import { DEFAULT_EGRESS_DENY, bridgeName, egressDeny, trustedPeers } from "../docker/isolation.js";
import { resolvePeerPorts, type ResolvedPeer } from "../docker/peer-ports.js";

function usage(message?: string): never {
  if (message) console.error(message);
  console.error("usage: preview-firewall.ts install|remove|status|print|watch [--network NAME | --bridge NAME] [--deny CIDR[,CIDR...]] [--peers IP[,IP...]] [--every SECONDS]");
  process.exit(2);
}

const [command, ...rest] = process.argv.slice(2);
const flags = new Map<string, string>();
for (let i = 0; i < rest.length; i += 2) {
  const key = rest[i];
  const value = rest[i + 1];
  if (!key?.startsWith("--") || value === undefined) usage(`bad argument ${key ?? ""}`);
  flags.set(key.slice(2), value);
}
for (const key of flags.keys()) if (!["network", "bridge", "deny", "peers", "every"].includes(key)) usage(`unknown option --${key}`);

const network = flags.get("network") ?? process.env.PREVIEW_NETWORK ?? "sitebuilder-previews";
const denyFlag = flags.get("deny");
const bridge = bridgeName({ network, bridgeName: flags.get("bridge") });
const deny = egressDeny({ egressDeny: denyFlag === undefined ? [...DEFAULT_EGRESS_DENY] : denyFlag.split(",").filter(Boolean) });
let peers: string[] = [];
try {
    peers = trustedPeers({ trustedPeers: (flags.get("peers") ?? "").split(",").filter(Boolean) });
} catch (err) {
  usage(`--peers: ${(err as Error).message}`);
}
/**
 * The peers with their bridge ports as they are now (asks the engine only when there are peers).
 * Each peer's state is reported when it changes (not at every round of `watch`): its port, or
 * why none was found (stderr).
 */
let docker: Docker | null = null;
const reported = new Map<string, string>();
async function currentPeers(): Promise<ResolvedPeer[]> {
  if (!peers.length) return [];
  docker ??= new Docker();
  const resolved = await resolvePeerPorts({ docker, network, bridge }, peers);
  for (const p of resolved) {
    const state = p.port ?? `none: ${p.reason}`;
    if (reported.get(p.address) === state) continue;
    reported.set(p.address, state);
    if (p.port === null) console.error(`${new Date().toISOString()} bridge ${bridge}: trusted peer ${p.address}: bridge port not found (${p.reason}); nothing from its address is let through`);
    else console.log(`${new Date().toISOString()} bridge ${bridge}: trusted peer ${p.address}: bridge port ${p.port} (container ${p.containerId?.slice(0, 12)})`);
  }
  return resolved;
}
const firewallNow = async (): Promise<HostFirewall> => HostFirewall.forBridge(bridge, deny, undefined, await currentPeers());
const firewall = HostFirewall.forBridge(bridge, deny);
const every = Number(flags.get("every") ?? "30");
if (!Number.isFinite(every) || every < 1 || every > 3600) usage("--every must be a number of seconds from 1 to 3600");

// Errors (no iptables, no engine to ask about peers) end a one-shot command with a clear line
// and exit 1; `watch` reports them per round and keeps going.
try {
switch (command) {
  case "print":
    for (const line of installCommands(previewFirewallRules(bridge, deny, await currentPeers()))) console.log(line);
    break;
  case "install": {
    const now = await firewallNow();
    const { added, removed } = await now.sync();
    console.log(`bridge ${bridge}: ${added} rule(s) added, ${now.rules.length - added} already present, ${removed} stale peer rule(s) removed`);
    break;
  }
  case "remove": {
    const removed = await firewall.remove();
    console.log(`bridge ${bridge}: ${removed} rule(s) removed`);
    break;
  }
  case "status": {
    // A peer not running is no failure here (compose starts the peers after this is healthy):
    // its fail-closed rule is what must be present then.
    const now = await firewallNow();
    const present = await now.status();
    now.rules.forEach((rule, i) => console.log(`${present[i] ? "present" : "MISSING"}  ${rule.chain} ${rule.spec.join(" ")}`));
    process.exit(present.every(Boolean) ? 0 : 1);
  }
  // falls through (process.exit above)
  case "watch": {
    // The rules live in the kernel: a firewall reload or a host reboot drops them. Checked again
    // every `--every` seconds; a failed round is reported and retried (the health check runs
    // `status`). SIGTERM ends the watch and leaves the rules in place (previews may still run).
    // One round at a time: two overlapping installs could both find a rule missing and add it twice.
    let busy = false;
    let inPlace = 0;
    const round = async () => {
      if (busy) return;
      busy = true;
      try {
        const now = await firewallNow();
        const { added, removed } = await now.sync();
        inPlace = now.rules.length;
        if (added || removed) console.log(`${new Date().toISOString()} bridge ${bridge}: ${added} rule(s) added, ${removed} stale peer rule(s) removed`);
      } catch (err) {
        console.error(`${new Date().toISOString()} bridge ${bridge}: ${(err as Error).message}`);
      } finally {
        busy = false;
      }
    };
    await round();
    console.log(`bridge ${bridge}: ${inPlace} rule(s) in place, checked every ${every}s`);
    const timer = setInterval(() => void round(), every * 1000);
    for (const signal of ["SIGTERM", "SIGINT"] as const) process.once(signal, () => (clearInterval(timer), process.exit(0)));
    break;
  }
  default:
    usage(command ? `unknown command ${command}` : undefined);
}
} catch (err) {
  console.error(`preview-firewall ${command ?? ""}: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
