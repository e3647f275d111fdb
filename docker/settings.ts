/**
 * What the Docker adapter is configured with. `runtime/` maps the parsed environment onto these;
 * nothing in `docker/` reads the environment or imports `runtime/`.
 */

/** How to reach the engine (the standard `DOCKER_HOST`, `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`). */
export type DockerConnection =
  | { protocol: "unix"; socketPath: string }
  /** tcp://host:port; with `tlsVerify` the client uses ca.pem, cert.pem and key.pem from `certPath`. */
  | { protocol: "tcp"; host: string; port: number; tlsVerify: boolean; certPath: string | null }
  /**
   * ssh://[user@]host[:port]: docker-modem runs `docker system dial-stdio` over SSH. `agent` is the
   * SSH agent socket that holds the key (the caller passes `SSH_AUTH_SOCK`; without an agent the
   * connection can only authenticate by means ssh2 finds on its own).
   */
  | { protocol: "ssh"; host: string; port: number; username: string | null; agent?: string | null };

/** Settings of preview containers. */
export interface PreviewSettings {
  /** Value of the owner label: instances never touch each other's previews. */
  instanceId: string;
  image: string;
  network: string;
  domain: string;
  routing: "traefik" | "port";
  memoryBytes: number;
  nanoCpus: number;
  pidsLimit: number;
  /** Storage root as the Docker daemon sees it (bind-mount source); never `process.cwd()`. */
  storageHostPath: string;
  /** Extra labels put on everything created (e.g. a test-run marker). */
  extraLabels?: Record<string, string>;
  /** Seconds a stop waits for the process before SIGKILL (default 10). */
  stopTimeoutSeconds?: number;
  /** Log lines kept for a failed preview (default 50). */
  logTailLines?: number;
  /** Traefik forward-auth middleware referenced by every preview router (`traefik` routing); none when unset. */
  authMiddleware?: string | null;

  // --- Isolation (untrusted previews). Every field is optional; the defaults are the safe ones. ---

  /**
   * Numeric "uid:gid" the preview process runs as (default "1000:1000", the `node` user of
   * `docker/preview-base`). Root (0) is refused. The site folder must be writable by it: the
   * storage side prepares (chowns) it; the adapter does not touch files.
   */
  user?: string;
  /** Read-only root file system (default true). `/tmp` is a tmpfs either way and `HOME=/tmp`. */
  readOnlyRootFs?: boolean;
  /** Size of the `/tmp` tmpfs in bytes (default 512 MiB); its pages count against `memoryBytes`. */
  tmpBytes?: number;
  /**
   * Whether previews may open connections beyond this host, e.g. for `npm install` (default true).
   * false: the preview network is created `Internal` (the engine drops every forwarded packet
   * to or from outside its subnet). A network of the other kind is refused, never reused.
   */
  egress?: boolean;
  /**
   * Linux name of the preview network's bridge (at most 15 characters), so host firewall rules
   * can name it before the network exists. Default: `sbp-` + 11 hex digits of SHA-256(network).
   */
  bridgeName?: string;
  /**
   * The host firewall rules that stop previews from opening connections to the host itself (any
   * of its addresses, so every host service bound to 0.0.0.0 and every published port) and to
   * `egressDeny`: "iptables" = the adapter installs them (idempotent, scoped to the bridge,
   * needs root or CAP_NET_ADMIN in the host's network namespace); "off" (default) = not by this
   * process (`scripts/preview-firewall.ts install` does it at provisioning time). Without them a
   * preview reaches every host service on the gateway address.
   */
  hostFirewall?: "iptables" | "off";
  /**
   * IPv4 destinations (CIDR) previews may not open connections to even with egress on, applied
   * with the host firewall rules (default ["169.254.0.0/16"]: link-local, i.e. cloud instance
   * metadata). Add the private ranges of your VPC if the database or object store lives there.
   */
  egressDeny?: string[];
  /**
   * IPv4 addresses on the preview network that may open TCP connections to port 3000 of what
   * is on it (the router and this service, when they run as containers on that network: with
   * inter-container communication off they could not otherwise). Applied with the host firewall
   * rules (one ACCEPT per address in DOCKER-USER, scoped to the bridge); nothing else is opened,
   * and nothing on the network may open a connection to them. Safe only while no preview can be
   * given such an address: the network must have an IPAM subnet and an ip range for dynamic
   * addresses that excludes every peer (checked; a network without them is refused, and is never
   * created by this service). Default none.
   */
  trustedPeers?: string[];
  /**
   * What a start does when it cannot compare the folder the container mounted with the one
   * checked (`mounted-folder.ts`: the service needs the engine's pid namespace and CAP_SYS_PTRACE,
   * as root on the host has): "required" (default) kills the container and fails for good;
   * "path" accepts it, and the launch checks the path again instead (a swap undone within the
   * start then goes unseen).
   */
  mountCheck?: "required" | "path";
  /** Where the engine's processes are visible (default "/proc"). */
  procPath?: string;
}
