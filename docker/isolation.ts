/**
 * What isolates a preview, as pure functions of the settings (unit-tested without an engine):
 * the user it runs as, its file system, the options of the preview network and the check that
 * an existing network really has them.
 *
 * Mechanism (measured on Docker 20.10, see README "Security"): ONE bridge network for all
 * previews with inter-container communication off (`enable_icc=false`: the engine drops every
 * packet between two ports of the bridge, so previews cannot reach each other by address or by
 * name), a fixed bridge name so that host rules can name it, and a host firewall rule
 * (`host-firewall.ts`) that rejects connections opened from that bridge to the host itself.
 * Other Docker networks are already unreachable (the engine's isolation chains). The router and
 * the readiness probe reach previews from the host side (host network namespace). Egress off:
 * the network is `Internal`.
 */
import { createHash } from "node:crypto";
import type { NetworkCreateOptions, NetworkInspectInfo } from "dockerode";
import { PermanentError } from "../functions/ports.js";
import type { PreviewSettings } from "./settings.js";

export const DEFAULT_PREVIEW_USER = "1000:1000";
export const DEFAULT_TMP_BYTES = 512 * 1024 * 1024;
export const DEFAULT_EGRESS_DENY: readonly string[] = ["169.254.0.0/16"];
/** Where the writable scratch space is, and HOME (npm's cache, Next's telemetry config). */
export const TMP_DIR = "/tmp";

export const BRIDGE_OPTIONS = {
  ICC: "com.docker.network.bridge.enable_icc",
  NAME: "com.docker.network.bridge.name",
} as const;

/** A setting that can never work (retrying will not change it). */
export class IsolationSettingError extends PermanentError {
  override name = "IsolationSettingError";
}

/** The preview network exists with options that would not isolate previews: refused, not used. */
export class UnsafeNetworkError extends PermanentError {
  override name = "UnsafeNetworkError";
}

const USER_RE = /^(\d{1,10}):(\d{1,10})$/;
const MAX_ID = 2 ** 31 - 1;

/** The numeric user of previews, validated: "uid:gid", neither 0. */
export function previewUser(settings: Pick<PreviewSettings, "user">): { user: string; uid: number; gid: number } {
  const user = settings.user ?? DEFAULT_PREVIEW_USER;
  const m = USER_RE.exec(user);
  const uid = m ? Number(m[1]) : NaN;
  const gid = m ? Number(m[2]) : NaN;
  if (!m || uid > MAX_ID || gid > MAX_ID) {
    throw new IsolationSettingError(`preview user ${JSON.stringify(user)} is not a numeric "uid:gid" (e.g. "1000:1000")`);
  }
  if (uid === 0 || gid === 0) throw new IsolationSettingError(`preview user ${user} is root (uid or gid 0): previews must run unprivileged`);
  return { user, uid, gid };
}

const BRIDGE_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;

/** The Linux bridge name of the preview network (explicit, or derived from the network name). */
export function bridgeName(settings: Pick<PreviewSettings, "network" | "bridgeName">): string {
  const name = settings.bridgeName ?? `sbp-${createHash("sha256").update(settings.network).digest("hex").slice(0, 11)}`;
  if (!BRIDGE_RE.test(name)) {
    throw new IsolationSettingError(`bridge name ${JSON.stringify(name)} is not a Linux interface name of at most 15 letters, digits, "_", "." or "-"`);
  }
  return name;
}

/** One dotted-quad IPv4 address (no anchors): the shared part of IPV4_RE and CIDR_RE. */
const IPV4 = String.raw`(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}`;
const CIDR_RE = new RegExp(String.raw`^${IPV4}\/(3[0-2]|[12]?\d)$`);

/** The IPv4 destinations denied to previews, validated (no IPv6: previews have none). */
export function egressDeny(settings: Pick<PreviewSettings, "egressDeny">): string[] {
  const list = [...(settings.egressDeny ?? DEFAULT_EGRESS_DENY)];
  for (const cidr of list) {
    if (!CIDR_RE.test(cidr)) throw new IsolationSettingError(`egress deny entry ${JSON.stringify(cidr)} is not an IPv4 CIDR (a.b.c.d/n)`);
  }
  return list;
}

const IPV4_RE = new RegExp(`^${IPV4}$`);

/** The trusted peers (IPv4 addresses on the preview network), validated; empty when none. */
export function trustedPeers(settings: Pick<PreviewSettings, "trustedPeers">): string[] {
  const list = [...(settings.trustedPeers ?? [])];
  for (const peer of list) {
    if (!IPV4_RE.test(peer)) throw new IsolationSettingError(`trusted peer ${JSON.stringify(peer)} is not an IPv4 address (a.b.c.d)`);
  }
  return list;
}

/** a.b.c.d -> 32-bit number; NaN when not an IPv4 address. */
function ipv4(address: string): number {
  if (!IPV4_RE.test(address)) return NaN;
  return address.split(".").reduce((n, octet) => n * 256 + Number(octet), 0);
}

/** Whether `address` is inside `cidr` (a.b.c.d/n); false for anything malformed. */
export function inCidr(address: string, cidr: string): boolean {
  const [base, bits] = cidr.split("/");
  const n = Number(bits);
  const a = ipv4(address);
  const b = ipv4(base ?? "");
  if (!Number.isInteger(n) || n < 0 || n > 32 || Number.isNaN(a) || Number.isNaN(b)) return false;
  const size = 2 ** (32 - n);
  return Math.floor(a / size) === Math.floor(b / size);
}

type NetworkSettings = Pick<PreviewSettings, "network" | "bridgeName" | "egress" | "instanceId" | "extraLabels" | "trustedPeers">;

/** The create options of the preview network, minus labels (the caller adds them). */
export function networkOptions(settings: NetworkSettings): Pick<NetworkCreateOptions, "Driver" | "Internal" | "EnableIPv6" | "Options"> {
  return {
    Driver: "bridge",
    Internal: settings.egress === false,
    EnableIPv6: false,
    Options: { [BRIDGE_OPTIONS.ICC]: "false", [BRIDGE_OPTIONS.NAME]: bridgeName(settings) },
  };
}

/**
 * What is wrong, for isolation, with an existing network of that name; empty when it is right.
 * Labels are not checked (a network created by compose with the right options is fine).
 */
export function networkProblems(info: Pick<NetworkInspectInfo, "Driver" | "Internal" | "EnableIPv6" | "Options"> & { IPAM?: PeerIpam }, settings: NetworkSettings): string[] {
  const want = networkOptions(settings);
  const options = info.Options ?? {};
  const problems: string[] = [];
  if (info.Driver !== "bridge") problems.push(`its driver is ${info.Driver}, not bridge`);
  if (options[BRIDGE_OPTIONS.ICC] !== "false") problems.push(`inter-container communication is on (${BRIDGE_OPTIONS.ICC} is not "false"): previews would reach each other`);
  const bridge = want.Options![BRIDGE_OPTIONS.NAME];
  if (options[BRIDGE_OPTIONS.NAME] !== bridge) {
    problems.push(`its bridge is ${JSON.stringify(options[BRIDGE_OPTIONS.NAME] ?? "(engine-chosen br-<id>)")}, not ${JSON.stringify(bridge)}: the host firewall rules would not apply to it`);
  }
  if (Boolean(info.Internal) !== want.Internal) {
    problems.push(want.Internal ? "it is not internal but egress is off" : "it is internal but egress is on (npm install could not reach the registry)");
  }
  if (info.EnableIPv6) problems.push("IPv6 is enabled on it (the isolation rules are IPv4)");
  problems.push(...peerProblems(info, settings));
  return problems;
}

/** What the peer check reads of a network's IPAM (as the engine's inspect answers it). */
interface PeerIpam {
  Config?: Array<{ Subnet?: string; IPRange?: string; Gateway?: string }> | null;
}

/**
 * Trusted peers are let through the firewall by address, so no preview may ever be given one:
 * the network needs a subnet holding every peer and an ip range (the pool the engine hands
 * containers without a fixed address, i.e. every preview) that holds none, nor the gateway.
 */
function peerProblems(info: { IPAM?: PeerIpam }, settings: NetworkSettings): string[] {
  const peers = trustedPeers(settings);
  if (!peers.length) return [];
  const config = (info.IPAM?.Config ?? []).find((c) => c.Subnet && ipv4(c.Subnet.split("/")[0] ?? "") >= 0);
  if (!config?.Subnet || !config.IPRange) {
    return [
      `it has no IPv4 subnet with an ip range (IPAM Subnet and IPRange): with trusted peers (${peers.join(", ")}) the engine could hand a preview a peer's address, which the firewall lets through`,
    ];
  }
  const problems: string[] = [];
  for (const peer of peers) {
    if (!inCidr(peer, config.Subnet)) problems.push(`trusted peer ${peer} is outside its subnet ${config.Subnet}`);
    else if (inCidr(peer, config.IPRange)) problems.push(`trusted peer ${peer} is inside its ip range ${config.IPRange}, from which previews get their addresses`);
    else if (peer === config.Gateway) problems.push(`trusted peer ${peer} is its gateway (the host)`);
  }
  return problems;
}

export function unsafeNetworkMessage(name: string, problems: string[]): string {
  return (
    `docker: use network ${name} failed: it exists with options that do not isolate previews: ${problems.join("; ")}. ` +
    `Refusing to use it. Remove it once its previews are removed (docker network rm ${name}) so that it is recreated, ` +
    `or set PREVIEW_NETWORK to a new name`
  );
}
