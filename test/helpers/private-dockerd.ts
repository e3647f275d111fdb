/**
 * A Docker engine of the test's own, for faults the shared engine must never see (a restart in
 * the middle of a sweep): `dockerd` on its own socket, data root and exec root (so its own
 * containerd) under a temporary folder, no default bridge, no iptables rules, and an address
 * pool of its own (10.213.0.0/16) so its networks never overlap the shared engine's. It runs in a
 * network namespace of its own (`nsenter --net`; not `ip netns exec`, whose fresh /sys hides the
 * cgroup mounts dockerd needs): a dockerd started with `--bridge=none` deletes
 * the interface `docker0` of its namespace at start, which in the host's namespace is the shared
 * engine's default bridge (measured: every later build with a RUN step then failed on this machine). Nothing can
 * be pulled: images are built there `FROM scratch` (test/helpers/stub-image.ts). Only this
 * process's daemon is ever signalled (by the pid it spawned); `destroy` removes what the test
 * left in it, stops it and deletes the folder.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import Docker from "dockerode";

export interface PrivateDockerd {
  socket: string;
  docker: Docker;
  /** Stops the daemon (SIGTERM, as a service manager does; its containers stop) and starts it again. */
  restart(): Promise<void>;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Removes every container and network in it, stops it, deletes its folder. Safe to call twice. */
  destroy(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const run = promisify(execFile);

/**
 * dockerd bind-mounts its data root onto itself (and overlay mounts under it) and leaves the
 * bind mount after it stops: unmounts whatever is mounted under `dir`, deepest first, so that
 * the folder can be deleted. Only mounts under the test's own temporary folder.
 */
async function unmountUnder(dir: string): Promise<void> {
  const mounts = (await readFile("/proc/self/mounts", "utf8"))
    .split("\n")
    .map((line) => line.split(" ")[1] ?? "")
    .filter((p) => p.startsWith(dir + path.sep))
    .sort((a, b) => b.length - a.length);
  for (const p of mounts) await run("umount", [p]).catch(() => run("umount", ["-l", p]).catch(() => undefined));
}

export async function startPrivateDockerd(): Promise<PrivateDockerd> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "sbp-test-dockerd-"));
  const socket = path.join(dir, "d.sock");
  const docker = new Docker({ socketPath: socket });
  const netns = `sbp-dockerd-${path.basename(dir).slice(-6).toLowerCase()}`;
  await run("ip", ["netns", "add", netns]);
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();

  async function start(): Promise<void> {
    const log = openSync(path.join(dir, "dockerd.log"), "a");
    const args = [
      `--host=unix://${socket}`,
      `--data-root=${path.join(dir, "data")}`,
      `--exec-root=${path.join(dir, "exec")}`,
      `--pidfile=${path.join(dir, "dockerd.pid")}`,
      "--bridge=none",
      "--iptables=false",
      "--ip-masq=false",
      "--default-address-pool=base=10.213.0.0/16,size=24",
    ];
    // nsenter execs dockerd (same pid): signals reach the daemon itself.
    const proc = spawn("nsenter", [`--net=/run/netns/${netns}`, "dockerd", ...args], { stdio: ["ignore", log, log] });
    closeSync(log);
    child = proc;
    exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(200)) {
      if (proc.exitCode !== null) throw new Error(`private dockerd exited with ${proc.exitCode}; see ${path.join(dir, "dockerd.log")}`);
      if (await docker.ping().then(() => true, () => false)) return;
    }
    throw new Error(`private dockerd did not answer within 60 s; see ${path.join(dir, "dockerd.log")}`);
  }

  async function stop(): Promise<void> {
    const proc = child;
    if (!proc || proc.exitCode !== null) return;
    proc.kill("SIGTERM");
    const done = await Promise.race([exited.then(() => true), sleep(30_000).then(() => false)]);
    if (!done) {
      proc.kill("SIGKILL");
      await exited;
    }
    child = null;
  }

  let destroyed: Promise<void> | null = null;
  await start().catch(async (err: unknown) => {
    await stop();
    await unmountUnder(dir);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    await run("ip", ["netns", "del", netns]).catch(() => undefined);
    throw err;
  });
  return {
    socket,
    docker,
    start,
    stop,
    async restart() {
      await stop();
      await start();
    },
    destroy() {
      destroyed ??= (async () => {
        // Down (a test failed while it was stopped): start it once more, so that its networks
        // (Linux bridges on the host) are removed by the daemon rather than left behind.
        if (!child || child.exitCode !== null) await start().catch(() => undefined);
        if (child && child.exitCode === null) {
          const containers = await docker.listContainers({ all: true }).catch(() => []);
          await Promise.all(containers.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
          const networks = await docker.listNetworks().catch(() => []);
          const builtIn = new Set(["bridge", "host", "none"]);
          await Promise.all(networks.filter((n) => !builtIn.has(n.Name)).map((n) => docker.getNetwork(n.Id).remove().catch(() => undefined)));
        }
        await stop();
        await unmountUnder(dir);
        await rm(dir, { recursive: true, force: true });
        await run("ip", ["netns", "del", netns]).catch(() => undefined);
      })();
      return destroyed;
    },
  };
}
