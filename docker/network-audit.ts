/**
 * `PreviewNetworkAudit`: which containers are attached to the preview network without being
 * this instance's previews or its trusted peers (security review F2: any container with Docker's
 * default NET_RAW on that bridge can ARP-poison its neighbours; the firewall binds the peers'
 * rules to their bridge ports, but a stranger can still impersonate a preview towards the
 * router). The engine's network inspect (`Containers`: the endpoints attached now) is the list;
 * a container is ours when the sweep's inventory lists it (our labels, our instance, the name
 * `preview-{id}`), a peer when its address is a configured trusted peer's (the ip range keeps
 * other containers off those addresses). Read only: a stranger is reported, never touched.
 */
import type Docker from "dockerode";
import type { Logger } from "pino";
import type { ManagedContainer, NetworkStranger, PreviewInventory, PreviewNetworkAudit } from "../functions/ports.js";
import { dockerError, statusOf } from "./errors.js";
import { trustedPeers } from "./isolation.js";
import type { PreviewSettings } from "./settings.js";
import { traced } from "./trace.js";

export class DockerNetworkAudit implements PreviewNetworkAudit {
  constructor(
    private readonly docker: Docker,
    private readonly settings: Pick<PreviewSettings, "network" | "trustedPeers">,
    private readonly inventory: Pick<PreviewInventory, "list">,
    private readonly log?: Logger,
  ) {}

  get network(): string {
    return this.settings.network;
  }

  async strangers(listed?: readonly Pick<ManagedContainer, "containerId">[]): Promise<NetworkStranger[]> {
    const name = this.settings.network;
    let info: Docker.NetworkInspectInfo;
    try {
      info = (await traced(this.log, "network.inspect", { network: name }, () => this.docker.getNetwork(name).inspect())) as Docker.NetworkInspectInfo;
    } catch (err) {
      if (statusOf(err) === 404) return [];
      throw dockerError("inspect", `network ${name}`, err);
    }
    const attached = Object.entries(info.Containers ?? {});
    if (!attached.length) return [];
    const ours = new Set((listed ?? (await this.inventory.list())).map((c) => c.containerId));
    const peers = new Set(trustedPeers(this.settings));
    const strangers: NetworkStranger[] = [];
    for (const [containerId, endpoint] of attached) {
      const address = (endpoint.IPv4Address ?? "").split("/")[0] ?? "";
      if (ours.has(containerId) || (address && peers.has(address))) continue;
      strangers.push({ containerId, name: endpoint.Name ?? "", address });
    }
    return strangers.sort((a, b) => a.name.localeCompare(b.name));
  }
}
