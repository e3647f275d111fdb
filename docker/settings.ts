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
}
