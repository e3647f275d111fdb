/**
 * Where each trusted peer is plugged into the preview bridge: the host-side interface (veth) of
 * its container's endpoint, which the peer's firewall rules are bound to (`host-firewall.ts`,
 * `-m physdev --physdev-in`), so that a container forging the peer's source address from another
 * port of the bridge (ARP poisoning + raw sockets, which Docker's default NET_RAW allows) is not
 * let through (review F2).
 *
 * How, without entering the peer's namespaces (no CAP_SYS_ADMIN, no CAP_SYS_PTRACE; it needs the
 * host's pid namespace and the engine's API):
 *   1. the engine says which RUNNING container holds the peer's address on the network (its
 *      IPAM record: a container cannot choose what the engine reports), and its pid;
 *   2. `/proc/<pid>/net/igmp` (readable without ptrace rights; it lists every interface of that
 *      process's network namespace that is up, with its ifindex) gives the peer's interfaces;
 *   3. the host-side end of a veth names its peer's ifindex in `/sys/class/net/<veth>/iflink`:
 *      the port of OUR bridge (`/sys/class/net/<bridge>/brif/`) whose iflink is one of the peer's
 *      interfaces is the peer's port (a container has one endpoint per network);
 *   4. the container is inspected again: same pid, still running (the pid was the peer's during
 *      the read; a pid is never reused while its process lives).
 * Fail closed: any doubt (no running holder, two holders, no matching port, two matching ports,
 * a restart in between) gives `port: null` with the reason, and the firewall then lets nothing
 * from that address through. A peer restarting gets a new veth: callers resolve again on every
 * firewall check (the `watch` keeper every 30 s, the service's own check at most every 30 s).
 */
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import type Docker from "dockerode";
import { dockerError, statusOf } from "./errors.js";
import type { PeerBinding } from "./host-firewall.js";

export interface PeerPortLookup {
  docker: Docker;
  /** The preview network's name (as the engine knows it). */
  network: string;
  /** Its Linux bridge. */
  bridge: string;
  /** Where the host's /proc and /sys are (tests); defaults "/proc" and "/sys". */
  procRoot?: string;
  sysRoot?: string;
}

export interface ResolvedPeer extends PeerBinding {
  /** The container holding the address, when one was found. */
  containerId?: string;
  /** Why `port` is null. */
  reason?: string;
}

/** The ifindexes of the interfaces of a network namespace, from `/proc/<pid>/net/igmp` (lo excluded). */
export function parseIgmpInterfaces(text: string): number[] {
  const indexes: number[] = [];
  for (const line of text.split("\n")) {
    const m = /^(\d+)\s+(\S+)\s*:/.exec(line);
    if (m && m[2] !== "lo") indexes.push(Number(m[1]));
  }
  return indexes;
}

/** Resolves the bridge port of each peer (same order); never throws for a peer it cannot place. */
export async function resolvePeerPorts(lookup: PeerPortLookup, peers: readonly string[]): Promise<ResolvedPeer[]> {
  if (!peers.length) return [];
  const { docker, network } = lookup;
  let running: Docker.ContainerInfo[];
  try {
    running = await docker.listContainers({ filters: { network: [network] } });
  } catch (err) {
    throw dockerError("list", `containers of network ${network}`, err);
  }
  const ports = await bridgePorts(lookup);
  const out: ResolvedPeer[] = [];
  for (const address of peers) {
    const holders = running.filter((c) => c.NetworkSettings?.Networks?.[network]?.IPAddress === address);
    if (holders.length !== 1) {
      out.push({ address, port: null, reason: holders.length ? `${holders.length} running containers hold it` : "no running container holds it" });
      continue;
    }
    out.push(await resolveOne(lookup, address, holders[0]!.Id, ports));
  }
  return out;
}

async function resolveOne(lookup: PeerPortLookup, address: string, containerId: string, ports: Map<string, number>): Promise<ResolvedPeer> {
  const fail = (reason: string): ResolvedPeer => ({ address, port: null, containerId, reason });
  const before = await pidOf(lookup.docker, containerId);
  if (!before) return fail("its container is not running");
  const igmp = await readFile(path.join(lookup.procRoot ?? "/proc", String(before), "net", "igmp"), "utf8").catch(() => null);
  if (igmp === null) return fail(`cannot read /proc/${before}/net/igmp (is the host's pid namespace shared?)`);
  const indexes = new Set(parseIgmpInterfaces(igmp));
  const matching = [...ports].filter(([, iflink]) => indexes.has(iflink)).map(([name]) => name).sort();
  if ((await pidOf(lookup.docker, containerId)) !== before) return fail("its container restarted during the lookup");
  if (matching.length !== 1) return fail(matching.length ? `several ports of bridge ${lookup.bridge} match it (${matching.join(", ")})` : `no port of bridge ${lookup.bridge} leads to it`);
  return { address, port: matching[0]!, containerId };
}

/** The container's pid while it runs; 0 when it is not running or gone. */
async function pidOf(docker: Docker, containerId: string): Promise<number> {
  try {
    const info = await docker.getContainer(containerId).inspect();
    return info.State?.Running && info.State.Pid > 0 ? info.State.Pid : 0;
  } catch (err) {
    if (statusOf(err) === 404) return 0;
    throw dockerError("inspect", `container ${containerId}`, err);
  }
}

/** The bridge's ports (host-side interfaces) -> the ifindex of their other end (`iflink`). */
async function bridgePorts(lookup: PeerPortLookup): Promise<Map<string, number>> {
  const sys = path.join(lookup.sysRoot ?? "/sys", "class", "net");
  const names = await readdir(path.join(sys, lookup.bridge, "brif")).catch(() => [] as string[]);
  const number = async (name: string, file: string) => Number((await readFile(path.join(sys, name, file), "utf8").catch(() => "")).trim());
  // Every firewall check reads two small files per port (one per preview): all at once, not one after another.
  const read = await Promise.all(names.map(async (name) => [name, ...(await Promise.all([number(name, "iflink"), number(name, "ifindex")]))] as const));
  const ports = new Map<string, number>();
  // A port whose iflink is its own ifindex has no other end (not a veth): never a container's.
  for (const [name, iflink, ifindex] of read) if (Number.isInteger(iflink) && iflink > 0 && iflink !== ifindex) ports.set(name, iflink);
  return ports;
}
