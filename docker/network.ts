/**
 * The previews' own bridge network (separate from the database/cache/storage network): created
 * on first use with the isolating options (`isolation.ts`: inter-container communication off,
 * fixed bridge name, internal when egress is off), labelled as ours. Concurrent creators cannot
 * make two: the engine refuses a second network with the same bridge name. An existing network without those options is refused
 * (`UnsafeNetworkError`, permanent), never used. With `hostFirewall: "iptables"` the host rules
 * of the bridge (`host-firewall.ts`) are installed too, and re-checked at most every
 * `FIREWALL_RECHECK_MS` (a firewall reload or a reboot drops them).
 * With `trustedPeers` (router and service as containers on the network) the network must be
 * declared by the deployment with a subnet and an ip range excluding the peers: it is checked,
 * and never created here; the peers' firewall rules are bound to their bridge ports
 * (`peer-ports.ts`), looked up again at every firewall check (a restarted peer has a new port).
 */
import type Docker from "dockerode";
import type { Logger } from "pino";
import { detailOf, dockerError, statusOf } from "./errors.js";
import { HostFirewall, type IptablesRunner } from "./host-firewall.js";
import { UnsafeNetworkError, bridgeName, egressDeny, networkOptions, networkProblems, trustedPeers, unsafeNetworkMessage } from "./isolation.js";
import { LABELS } from "./labels.js";
import { resolvePeerPorts } from "./peer-ports.js";
import type { PreviewSettings } from "./settings.js";
import { traced } from "./trace.js";

/** How long a successful firewall check is trusted (one ensure per create or start). */
export const FIREWALL_RECHECK_MS = 30_000;

type NetworkSettings = Pick<PreviewSettings, "network" | "instanceId" | "extraLabels" | "egress" | "bridgeName" | "hostFirewall" | "egressDeny" | "trustedPeers">;

/** How long a create that lost the bridge name waits for the winner's network to appear. */
const BRIDGE_CONVERGE_MS = 3_000;

export class PreviewNetwork {
  /** The ensure in flight, shared by concurrent callers; null when none is. */
  private inflight: Promise<void> | null = null;
  private readonly firewall: HostFirewall | null;
  private firewallCheckedAt = -Infinity;

  constructor(
    private readonly docker: Docker,
    private readonly settings: NetworkSettings,
    private readonly log?: Logger,
    private readonly iptables?: IptablesRunner,
  ) {
    // Without peers the rules are fixed; with peers they are rebuilt at each check (their ports).
    this.firewall = settings.hostFirewall === "iptables" ? HostFirewall.forBridge(bridgeName(settings), egressDeny(settings), iptables) : null;
  }

  /** The Linux bridge of the network (host firewall rules name it). */
  get bridge(): string {
    return bridgeName(this.settings);
  }

  get name(): string {
    return this.settings.network;
  }

  /**
   * Creates the network when missing and checks that it isolates; concurrent callers share one
   * attempt. Success is not cached: the network can be deleted or replaced behind our back, and
   * the engine (20.10) accepts a create that names a missing network, failing only at start.
   * One inspect per container create or start is cheap (~1 ms).
   */
  ensure(): Promise<void> {
    this.inflight ??= this.ensureIsolated().finally(() => {
      this.inflight = null;
    });
    return this.inflight;
  }

  /** Whether a network of that name exists now (one inspect). */
  async exists(): Promise<boolean> {
    return (await this.inspect()) !== null;
  }

  private async inspect(): Promise<Docker.NetworkInspectInfo | null> {
    const name = this.name;
    try {
      return (await traced(this.log, "network.inspect", { network: name }, () => this.docker.getNetwork(name).inspect())) as Docker.NetworkInspectInfo;
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw dockerError("inspect", `network ${name}`, err);
    }
  }

  private async ensureIsolated(): Promise<void> {
    const name = this.name;
    let info = await this.inspect();
    if (!info && trustedPeers(this.settings).length) {
      // With trusted peers the network is declared by the deployment (docker-compose.yml: a
      // subnet, an ip range that excludes the peers, the peers' fixed addresses); one created
      // here would have none of that, and the peers would not be on it.
      throw new UnsafeNetworkError(
        `docker: use network ${name} failed: it does not exist, and with trusted peers (PREVIEW_TRUSTED_PEERS) it is not created here: declare it with a subnet and an ip range that excludes the peers (docker-compose.yml does; \`docker-compose up -d\` recreates it)`,
      );
    }
    if (!info) {
      const bridgeTaken = await this.create();
      info = await this.inspect();
      // A concurrent creator that won the bridge name may not be visible by name yet: wait for
      // it a moment before deciding that another network holds the bridge.
      for (let waited = 0, delay = 10; !info && bridgeTaken && waited < BRIDGE_CONVERGE_MS; waited += delay, delay = Math.min(delay * 2, 200)) {
        await new Promise((resolve) => setTimeout(resolve, delay));
        info = await this.inspect();
      }
      if (!info && bridgeTaken) {
        // The engine refused the bridge name and no network of our name holds it.
        throw new UnsafeNetworkError(
          `docker: create network ${name} failed: ${detailOf(bridgeTaken)}; its bridge name ${this.bridge} is held by another network: set a distinct bridge name (or remove that network)`,
          { cause: bridgeTaken },
        );
      }
      // Gone again right after the create (removed behind our back): retryable.
      if (!info) throw dockerError("inspect", `network ${name}`, Object.assign(new Error("network vanished right after its create"), { statusCode: 503 }));
    }
    const problems = networkProblems(info, this.settings);
    if (problems.length) {
      this.log?.error({ network: name, problems }, "preview network does not isolate previews; refusing to use it");
      throw new UnsafeNetworkError(unsafeNetworkMessage(name, problems));
    }
    await this.ensureFirewall();
  }

  private async ensureFirewall(): Promise<void> {
    if (!this.firewall || performance.now() - this.firewallCheckedAt < FIREWALL_RECHECK_MS) return;
    const peers = trustedPeers(this.settings);
    let added: number;
    let removed = 0;
    if (peers.length) {
      const bridge = this.firewall.bridge;
      const resolved = await resolvePeerPorts({ docker: this.docker, network: this.name, bridge }, peers);
      for (const p of resolved.filter((r) => r.port === null)) {
        this.log?.warn({ network: this.name, bridge, peer: p.address, containerId: p.containerId, reason: p.reason }, "trusted peer's bridge port not found: nothing from its address is let through until it is");
      }
      ({ added, removed } = await HostFirewall.forBridge(bridge, egressDeny(this.settings), this.iptables, resolved).sync());
    } else {
      added = await this.firewall.install();
    }
    this.firewallCheckedAt = performance.now();
    if (added || removed) this.log?.info({ network: this.name, bridge: this.firewall.bridge, added, removed }, "installed host firewall rules of the preview bridge");
  }

  /**
   * Creates the network. Another creator winning is no failure: 409 (same name) or, since the
   * bridge name is fixed, 403 "networks have same bridge name" (measured: of six concurrent
   * creates one gets 201 and five 403, so the fixed name also closes the duplicate-name race that
   * `CheckDuplicate` leaves open). Returns the 403 when there was one, so the caller can tell a
   * lost race (a network of our name exists) from a bridge held by another network.
   */
  private async create(): Promise<unknown> {
    const name = this.name;
    try {
      await traced(this.log, "network.create", { network: name }, () =>
        this.docker.createNetwork({
          Name: name,
          ...networkOptions(this.settings),
          // With the fixed bridge name the engine lets exactly one of concurrent creates win (the
          // others get 403), so two networks of one name cannot appear; this checks the name too.
          CheckDuplicate: true,
          Labels: { ...this.settings.extraLabels, [LABELS.MANAGED]: "true", [LABELS.OWNER]: this.settings.instanceId },
        }),
      );
      this.log?.info({ network: name, bridge: this.bridge, egress: this.settings.egress !== false }, "created preview network");
    } catch (err) {
      // 409/403: another creator won; the network exists, which is all we want (its options are
      // checked next, like any existing network's).
      const status = statusOf(err);
      if (status === 403) return err;
      if (status !== 409) throw dockerError("create", `network ${name}`, err);
    }
    return null;
  }
}
