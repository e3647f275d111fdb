/**
 * A dockerode client for one engine connection. The connection is entirely what `conn` says:
 * docker-modem otherwise fills gaps from `DOCKER_HOST`, `DOCKER_CERT_PATH`, ... (its defaults
 * are merged under the options given), so every field it would take from there is set here,
 * if only to undefined. No API version is pinned: Debian's engine speaks 1.41 and a newer pin is
 * refused with 400.
 */
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import Docker from "dockerode";
import type { DockerConnection } from "./settings.js";

/** Where the Docker CLI looks for TLS material when `DOCKER_CERT_PATH` is unset. */
const DEFAULT_CERT_PATH = path.join(os.homedir(), ".docker");

export function createDockerClient(conn: DockerConnection): Docker {
  return new Docker(dockerOptions(conn));
}

/** The dockerode options of a connection (exported for tests: no engine is needed to check them). */
export function dockerOptions(conn: DockerConnection): Docker.DockerOptions {
  // Overrides docker-modem's environment-derived defaults field by field.
  const base: Docker.DockerOptions = {
    socketPath: undefined,
    host: undefined,
    port: undefined,
    protocol: undefined,
    username: undefined,
    ca: undefined,
    cert: undefined,
    key: undefined,
    version: undefined,
    timeout: undefined,
  };
  switch (conn.protocol) {
    case "unix":
      return { ...base, socketPath: conn.socketPath };
    case "tcp": {
      if (!conn.tlsVerify) return { ...base, host: conn.host, port: conn.port, protocol: "http" };
      // TLS with a client certificate, and the server verified against ca.pem (as the Docker CLI
      // does with DOCKER_TLS_VERIFY=1). Read once at start-up: a missing file fails loudly here.
      const dir = conn.certPath ?? DEFAULT_CERT_PATH;
      const read = (file: string) => {
        try {
          return readFileSync(path.join(dir, file));
        } catch (err) {
          throw new Error(`docker: TLS to ${conn.host}:${conn.port} needs ${path.join(dir, file)}: ${(err as Error).message}`, { cause: err });
        }
      };
      return { ...base, host: conn.host, port: conn.port, protocol: "https", ca: read("ca.pem"), cert: read("cert.pem"), key: read("key.pem") };
    }
    case "ssh":
      return {
        ...base,
        host: conn.host,
        port: conn.port,
        protocol: "ssh",
        username: conn.username ?? undefined,
        sshOptions: conn.agent ? { agent: conn.agent } : {},
      };
  }
}
