/**
 * The previews' own bridge network (separate from the database/cache/storage network): created
 * on first use, labelled as ours, deduplicated when concurrent creators raced.
 */
import type Docker from "dockerode";
import type { Logger } from "pino";
import { dockerError, statusOf } from "./errors.js";
import { LABELS, isOwned } from "./labels.js";
import type { PreviewSettings } from "./settings.js";
import { traced } from "./trace.js";

export class PreviewNetwork {
  /** The ensure in flight, shared by concurrent callers; null when none is. */
  private inflight: Promise<void> | null = null;

  constructor(
    private readonly docker: Docker,
    private readonly settings: Pick<PreviewSettings, "network" | "instanceId" | "extraLabels">,
    private readonly log?: Logger,
  ) {}

  get name(): string {
    return this.settings.network;
  }

  /**
   * Creates the network when missing; concurrent callers share one attempt. Success is not
   * cached: the network can be deleted behind our back, and the engine (20.10) accepts a create
   * that names a missing network, failing only at start. One inspect per container create is
   * cheap; creates are rare.
   */
  ensure(): Promise<void> {
    this.inflight ??= this.createIfMissing().finally(() => {
      this.inflight = null;
    });
    return this.inflight;
  }

  /** Whether a network of that name exists now (one inspect). */
  async exists(): Promise<boolean> {
    const name = this.name;
    try {
      await traced(this.log, "network.inspect", { network: name }, () => this.docker.getNetwork(name).inspect());
      return true;
    } catch (err) {
      if (statusOf(err) === 404) return false;
      throw dockerError("inspect", `network ${name}`, err);
    }
  }

  private async createIfMissing(): Promise<void> {
    const name = this.name;
    if (await this.exists()) return;
    try {
      await traced(this.log, "network.create", { network: name }, () =>
        this.docker.createNetwork({
          Name: name,
          Driver: "bridge",
          // Narrows (does not close) the window in which two creates give two networks of one name.
          CheckDuplicate: true,
          Labels: { ...this.settings.extraLabels, [LABELS.MANAGED]: "true", [LABELS.OWNER]: this.settings.instanceId },
        }),
      );
      this.log?.info({ network: name }, "created preview network");
    } catch (err) {
      // 409: another creator won; the network exists, which is all we want.
      if (statusOf(err) !== 409) throw dockerError("create", `network ${name}`, err);
    }
    await this.dedupe();
  }

  /**
   * `CheckDuplicate` does not stop concurrent creates (measured: five at once give five networks
   * with one name). Every creator therefore keeps the oldest network of that name and removes
   * the other ones it owns; all creators pick the same keeper, so they converge.
   */
  private async dedupe(): Promise<void> {
    const name = this.name;
    let networks: Docker.NetworkInspectInfo[];
    try {
      // The name filter matches substrings: keep exact names only.
      networks = (await traced(this.log, "network.list", { network: name }, () => this.docker.listNetworks({ filters: { name: [name] } }))).filter(
        (n) => n.Name === name,
      );
    } catch (err) {
      throw dockerError("list", `networks ${name}`, err);
    }
    if (networks.length <= 1) return;
    networks.sort((a, b) => a.Created.localeCompare(b.Created) || a.Id.localeCompare(b.Id));
    for (const extra of networks.slice(1)) {
      if (!isOwned(extra.Labels, this.settings.instanceId)) continue;
      await traced(this.log, "network.remove", { network: name }, () => this.docker.getNetwork(extra.Id).remove()).catch((err: unknown) =>
        // Another creator may be removing the same duplicate: harmless.
        this.log?.warn({ network: name, networkId: extra.Id, err }, "could not remove duplicate network"),
      );
    }
  }
}
