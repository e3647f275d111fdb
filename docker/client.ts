import Docker from "dockerode";
import type { Config } from "../runtime/config.js";

/**
 * A dockerode client for the configured engine (default: dockerode's own default, i.e.
 * `/var/run/docker.sock`). No API version is pinned: Debian's engine speaks 1.41 and a newer pin
 * is refused with 400.
 */
export function createDockerClient(target: Config["docker"]): Docker {
  if (target === null) return new Docker();
  return "socketPath" in target ? new Docker({ socketPath: target.socketPath }) : new Docker({ host: target.host, port: target.port, protocol: "http" });
}
