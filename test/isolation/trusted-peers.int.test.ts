/**
 * Trusted peers (PREVIEW_TRUSTED_PEERS; README "Deployment"): the router and this service as
 * containers ON the preview network, as docker-compose.yml runs them, without weakening the
 * isolation of previews. On the real engine and the real host firewall:
 *   - the network is made the way compose declares it: inter-container communication off, the
 *     fixed bridge name, a subnet, and an ip range (the previews' pool) that excludes the peer's
 *     fixed address;
 *   - the peer (a container at that fixed address) reaches every preview on port 3000: the
 *     router's requests and the service's readiness probe; and no other port of a preview;
 *   - an untrusted container on the same network (given an address from the pool, like any
 *     preview) reaches no preview, and previews reach neither each other nor the peer (which
 *     listens on 3000 too);
 *   - without the ACCEPT rule the peer reaches nothing (what opens the way is that rule alone);
 *   - the peer's rules are bound to its bridge port (review F2): a container with Docker's
 *     default NET_RAW that forges the peer's address (ARP poisoning + raw TCP, the reviewer's
 *     program test/fixtures/spoof-peer.c) gets no connection to a preview, with the peer running
 *     or stopped, while the same attack gets through an address-only rule (the control); a
 *     stopped peer leaves only a fail-closed DROP, and after a restart (new veth) the keeper
 *     script binds the rules to the new port;
 *   - the network audit reports the stranger (neither a preview of this instance nor at a peer's
 *     address), and only it, and touches nothing;
 *   - a network whose pool could hand a preview the peer's address is refused, and with peers
 *     the runtime never creates the network itself.
 * Probes: `busybox nc` from inside the containers (test/helpers/docker.ts). Everything created
 * carries the run's test label and is removed by id or label; firewall rules by their bridge's
 * comment.
 */
import { execFile } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import type Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerPreviewRuntime } from "../../docker/docker-runtime.js";
import { HostFirewall, firewallComment } from "../../docker/host-firewall.js";
import { BRIDGE_OPTIONS, UnsafeNetworkError, bridgeName } from "../../docker/isolation.js";
import { DockerPreviewInventory } from "../../docker/inventory.js";
import { DockerNetworkAudit } from "../../docker/network-audit.js";
import { resolvePeerPorts } from "../../docker/peer-ports.js";
import { TEST_LABEL, createDockerTestEnv, execIn, probeFromContainer, probeUntilSettled, removeFirewallRules, type DockerTestEnv } from "../helpers/docker.js";

const run = promisify(execFile);
const REPO = path.resolve(import.meta.dirname, "../..");

function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new Error("test/isolation needs root (it changes the host firewall); run the integration tier as root");
}

/**
 * The preview network as docker-compose.yml declares it, on a /24 of 10.77.0.0/16 that no other
 * network of the engine uses (the engine refuses an overlapping pool: try another).
 */
async function createComposeLikeNetwork(docker: Docker, name: string, bridge: string, runId: string): Promise<{ subnet: string; peer: string; pool: string }> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 20; attempt++) {
    const prefix = `10.77.${randomInt(0, 256)}`;
    const subnet = `${prefix}.0/24`;
    const pool = `${prefix}.128/25`;
    try {
      await docker.createNetwork({
        Name: name,
        CheckDuplicate: true,
        Driver: "bridge",
        EnableIPv6: false,
        Options: { [BRIDGE_OPTIONS.ICC]: "false", [BRIDGE_OPTIONS.NAME]: bridge },
        IPAM: { Driver: "default", Config: [{ Subnet: subnet, IPRange: pool, Gateway: `${prefix}.1` }] },
        Labels: { [TEST_LABEL]: runId },
      });
      return { subnet, peer: `${prefix}.2`, pool };
    } catch (err) {
      lastError = err;
      if (!/overlap/i.test(String((err as Error).message))) throw err;
    }
  }
  throw new Error(`no free /24 in 10.77.0.0/16 for the test network: ${String(lastError)}`);
}

interface Box {
  id: string;
  ip: string;
  /** Its site folder, mounted at /app. */
  dir: string;
}

/** A non-preview container on the network serving HTTP on 3000 (fixed address when `ip` is given). */
async function startBox(env: DockerTestEnv, role: string, ip?: string): Promise<Box> {
  const projectId = env.projectId(role);
  const dir = await env.writeSite(projectId);
  const c = await env.docker.createContainer({
    name: `sbpt-${role}-${projectId}`,
    Image: env.image,
    Labels: { [TEST_LABEL]: env.runId },
    HostConfig: { NetworkMode: env.options.network, Init: true, Mounts: [{ Type: "bind", Source: dir, Target: "/app", ReadOnly: true }] },
    NetworkingConfig: { EndpointsConfig: { [env.options.network]: ip ? { IPAMConfig: { IPv4Address: ip } } : {} } },
  });
  await c.start();
  const info = await c.inspect();
  return { id: c.id, ip: info.NetworkSettings.Networks[env.options.network]!.IPAddress, dir };
}

/** The host-side interface of a container's endpoint, found independently of peer-ports.ts: its eth0's iflink is that interface's ifindex. */
async function hostPortOf(env: DockerTestEnv, containerId: string, bridge: string): Promise<string> {
  const res = await execIn(env.docker, containerId, ["/bin/busybox", "cat", "/sys/class/net/eth0/iflink"]);
  const { stdout } = await run("/bin/sh", ["-c", `for p in /sys/class/net/${bridge}/brif/*; do n=$(basename "$p"); [ "$(cat /sys/class/net/$n/ifindex)" = "$0" ] && echo "$n"; done; exit 0`, res.stdout.trim()]);
  const ports = stdout.trim().split("\n").filter(Boolean);
  expect(ports, `ports of ${bridge} with ifindex ${res.stdout.trim()}`).toHaveLength(1);
  return ports[0]!;
}

/** Our rules in DOCKER-USER for this bridge, as `iptables -S` prints them. */
async function ourRules(bridge: string): Promise<string[]> {
  const { stdout } = await run("iptables", ["-w", "5", "-S", "DOCKER-USER"]);
  return stdout.split("\n").filter((l) => l.includes(`"${firewallComment(bridge)}"`));
}

describe("trusted peers on the preview network (router and service as containers)", () => {
  let env: DockerTestEnv;
  let net: { subnet: string; peer: string; pool: string };
  let peer: Box;
  let stranger: Box;
  const previews: Array<{ projectId: string; containerId: string; ip: string; mac: string }> = [];

  beforeAll(async () => {
    requireRoot();
    const network = `sbp-test-peers-${randomBytes(3).toString("hex")}`;
    env = await createDockerTestEnv({ network, hostFirewall: "iptables" });
    net = await createComposeLikeNetwork(env.docker, network, bridgeName(env.options), env.runId);
    // The peer first (as compose runs it before any preview): the runtime binds its rules to
    // the peer's bridge port when it first checks the firewall.
    peer = await startBox(env, "peer", net.peer);
    // The runtime with the peer configured: it uses the declared network and installs the rules.
    env.options.trustedPeers = [net.peer];
    env.runtime = new DockerPreviewRuntime(env.docker, env.options);
    for (const prefix of ["a", "b"]) {
      const projectId = env.projectId(prefix);
      const dir = await env.writeSite(projectId);
      // Also serves 3001, which no rule opens (the file keeps its owner: rewritten in place).
      await writeFile(path.join(dir, "start.sh"), "/bin/busybox httpd -p 3001 -h /app\nexec /bin/busybox httpd -f -p 3000 -h /app\n");
      const { containerId } = await env.runtime.ensureContainer(projectId);
      await env.start(projectId);
      // From the host (this process), as before: the host side still reaches previews.
      expect(await probeUntilSettled(env.runtime, projectId)).toMatchObject({ state: "ready" });
      const info = await env.docker.getContainer(containerId).inspect();
      const endpoint = info.NetworkSettings.Networks[network]!;
      previews.push({ projectId, containerId, ip: endpoint.IPAddress, mac: endpoint.MacAddress });
    }
    // The stranger keeps Docker's default capabilities (NET_RAW among them), like any container
    // an operator attaches; it holds the reviewer's spoofing program.
    stranger = await startBox(env, "stranger");
    await run("gcc", ["-static", "-O2", "-o", path.join(stranger.dir, "spoof"), path.join(REPO, "test/fixtures/spoof-peer.c")]).catch((err: unknown) => {
      throw new Error(`building the spoofing program needs gcc with static glibc (apt-get install gcc libc6-dev): ${String(err)}`);
    });
  });
  afterAll(async () => {
    await env?.cleanup(); // containers on the network, the network, and this bridge's rules
  });

  it("the declared network is used as it is, and the rules include one ACCEPT for the peer, bound to its bridge port, scoped to the bridge and TCP 3000", async () => {
    const info = await env.docker.getNetwork(env.options.network).inspect();
    expect(info.IPAM?.Config?.[0]).toMatchObject({ Subnet: net.subnet, IPRange: net.pool });
    expect(peer.ip).toBe(net.peer);
    // Previews and the stranger got addresses from the pool, never the peer's.
    for (const ip of [...previews.map((p) => p.ip), stranger.ip]) expect(Number(ip.split(".")[3])).toBeGreaterThanOrEqual(128);
    const bridge = bridgeName(env.options);
    const port = await hostPortOf(env, peer.id, bridge);
    const c = `-m comment --comment "${firewallComment(bridge)}"`;
    const ours = await ourRules(bridge);
    expect(ours[0]).toBe(`-A DOCKER-USER -s ${net.peer}/32 -i ${bridge} -o ${bridge} -p tcp -m tcp --dport 3000 -m physdev --physdev-in ${port} -m conntrack --ctstate NEW ${c} -j ACCEPT`);
    expect(ours).toContain(`-A DOCKER-USER -s ${net.peer}/32 -i ${bridge} -o ${bridge} -m physdev ! --physdev-in ${port} ${c} -j DROP`);
    expect(ours).toContain(`-A DOCKER-USER -d ${net.peer}/32 -i ${bridge} -o ${bridge} -m physdev ! --physdev-out ${port} ${c} -j DROP`);
    expect(ours.filter((l) => l.endsWith("-j ACCEPT"))).toHaveLength(1);
    // Written as iptables prints them back: a second sync finds nothing stale and nothing missing.
    const resolved = await resolvePeerPorts({ docker: env.docker, network: env.options.network, bridge }, [net.peer]);
    expect(resolved).toEqual([{ address: net.peer, port, containerId: peer.id }]);
    expect(await HostFirewall.forBridge(bridge, ["169.254.0.0/16"], undefined, resolved).sync()).toEqual({ added: 0, removed: 0 });
  });

  it("the peer reaches every preview on 3000 (router requests, the service's readiness probe)", async () => {
    for (const p of previews) {
      const probe = await probeFromContainer(env.docker, peer.id, p.ip, 3000);
      expect(probe.answered, probe.output).toBe(true);
      expect(probe.body).toContain(`preview ${p.projectId}`);
    }
  });

  it("the peer reaches nothing but port 3000 of a preview", async () => {
    const p = previews[0]!;
    const other = await probeFromContainer(env.docker, peer.id, p.ip, 3001);
    expect(other.answered, other.output).toBe(false);
    // The preview does serve 3001: the host reaches it.
    const res = await fetch(`http://${p.ip}:3001/`, { signal: AbortSignal.timeout(5_000) });
    expect(res.status).toBe(200);
  });

  it("an untrusted container on the same network reaches no preview, and previews reach neither each other nor the peer", async () => {
    const [a, b] = previews as [(typeof previews)[0], (typeof previews)[0]];
    const probes = await Promise.all([
      probeFromContainer(env.docker, stranger.id, a.ip, 3000),
      probeFromContainer(env.docker, a.containerId, b.ip, 3000),
      probeFromContainer(env.docker, b.containerId, a.ip, 3000),
      probeFromContainer(env.docker, a.containerId, peer.ip, 3000),
      probeFromContainer(env.docker, b.containerId, peer.ip, 3000),
    ]);
    for (const p of probes) {
      expect(p.answered, p.output).toBe(false);
      expect(p.code).not.toBe(0);
    }
    // The peer does serve 3000 (the host reaches it): what stops the previews is the firewall.
    const res = await fetch(`http://${peer.ip}:3000/`, { signal: AbortSignal.timeout(5_000) });
    expect(res.status).toBe(200);
    // And the stranger is no peer only by its address: it serves 3000 too, and the peer reaches it.
    expect((await probeFromContainer(env.docker, peer.id, stranger.ip, 3000)).answered).toBe(true);
  });

  it("refuses a network whose pool could hand a preview the peer's address, and never creates the network itself with peers", async () => {
    const prefix = net.subnet.split(".").slice(0, 3).join(".");
    const inPool = new DockerPreviewRuntime(env.docker, { ...env.options, hostFirewall: "off", trustedPeers: [`${prefix}.200`] });
    const err = await inPool.ensureNetwork().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(UnsafeNetworkError);
    expect((err as Error).message).toContain(`trusted peer ${prefix}.200 is inside its ip range ${net.pool}`);

    const missing = `sbp-test-nopeer-${randomBytes(3).toString("hex")}`;
    const absent = new DockerPreviewRuntime(env.docker, { ...env.options, network: missing, hostFirewall: "off", trustedPeers: [net.peer] });
    const err2 = await absent.ensureNetwork().then(() => null, (e: unknown) => e);
    expect(err2).toBeInstanceOf(UnsafeNetworkError);
    expect((err2 as Error).message).toMatch(/does not exist, and with trusted peers/);
    await expect(env.docker.getNetwork(missing).inspect()).rejects.toMatchObject({ statusCode: 404 });
  });

  it("without its ACCEPT rule the peer reaches no preview: inter-container communication is really off", async () => {
    const bridge = bridgeName(env.options);
    expect(await removeFirewallRules(bridge)).toBeGreaterThanOrEqual(3);
    const probe = await probeFromContainer(env.docker, peer.id, previews[0]!.ip, 3000);
    expect(probe.answered).toBe(false);
    // Put back (idempotent install), and the peer gets through again.
    const resolved = await resolvePeerPorts({ docker: env.docker, network: env.options.network, bridge }, [net.peer]);
    await HostFirewall.forBridge(bridge, env.options.egressDeny ?? ["169.254.0.0/16"], undefined, resolved).install();
    expect((await probeFromContainer(env.docker, peer.id, previews[0]!.ip, 3000)).answered).toBe(true);
  });

  it("the network audit reports the stranger, not the previews nor the peer, and leaves it alone", async () => {
    const audit = new DockerNetworkAudit(env.docker, env.options, new DockerPreviewInventory(env.docker, env.options));
    const found = await audit.strangers();
    const name = (await env.docker.getContainer(stranger.id).inspect()).Name.replace(/^\//, "");
    expect(found).toEqual([{ containerId: stranger.id, name, address: stranger.ip }]);
    // Read only: the stranger still runs, still attached.
    const info = await env.docker.getContainer(stranger.id).inspect();
    expect(info.State.Running).toBe(true);
    expect(info.NetworkSettings.Networks[env.options.network]?.IPAddress).toBe(stranger.ip);
    // A network that does not exist: nothing to report (the service may not have created it yet).
    const none = new DockerNetworkAudit(env.docker, { ...env.options, network: `sbp-test-absent-${randomBytes(3).toString("hex")}` }, new DockerPreviewInventory(env.docker, env.options));
    expect(await none.strangers()).toEqual([]);
  });

  /** Runs the reviewer's program in the stranger: forge the peer's address towards `victim`:3000. */
  async function spoof(victim: (typeof previews)[0]): Promise<string> {
    const res = await execIn(env.docker, stranger.id, ["/app/spoof", "eth0", net.peer, victim.ip, victim.mac, "3000"], 45_000);
    const out = res.stdout + res.stderr;
    expect(out, "the spoofing program ran").toContain("sent SYN");
    return out;
  }

  /** The keeper script (what docker-compose.yml's firewall service runs), against this bridge. */
  async function keeper(command: "install" | "status"): Promise<{ code: number; out: string }> {
    const args = ["tsx", "scripts/preview-firewall.ts", command, "--network", env.options.network, "--bridge", bridgeName(env.options), "--peers", net.peer, "--deny", "169.254.0.0/16"];
    return run("npx", args, { cwd: REPO, timeout: 60_000 }).then(
      ({ stdout, stderr }) => ({ code: 0, out: stdout + stderr }),
      (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: typeof err.code === "number" ? err.code : -1, out: `${err.stdout ?? ""}${err.stderr ?? ""}` }),
    );
  }

  it("a container with NET_RAW forging the peer's address (ARP poisoning + raw TCP) gets no connection to a preview, while the peer does", { timeout: 120_000 }, async () => {
    const [a, b] = previews as [(typeof previews)[0], (typeof previews)[0]];
    const out = await spoof(b);
    expect(out).not.toContain("got SYN-ACK");
    expect(out).toContain("timeout (established=0)");
    // The real peer, from its own port, still gets through (to the preview whose ARP cache the
    // attack did not poison; the victim's recovers once its poisoned entry expires).
    const probe = await probeFromContainer(env.docker, peer.id, a.ip, 3000);
    expect(probe.answered, probe.output).toBe(true);
  });

  it("with the peer stopped: no connection either (the rules name its gone port, then fail closed), while an address-only rule would let the attack through; after a restart the keeper binds the new port", { timeout: 240_000 }, async () => {
    const [a, b] = previews as [(typeof previews)[0], (typeof previews)[0]];
    const bridge = bridgeName(env.options);
    const c = `-m comment --comment "${firewallComment(bridge)}"`;
    const oldPort = await hostPortOf(env, peer.id, bridge);
    await env.docker.getContainer(peer.id).stop({ t: 1 });
    // Rules still bound to the port that is gone: nothing matches them.
    expect(await spoof(b)).not.toContain("got SYN-ACK");
    // The keeper: no running container holds the peer's address -> only the fail-closed DROP.
    const installed = await keeper("install");
    expect(installed.code, installed.out).toBe(0);
    expect(installed.out).toContain(`trusted peer ${net.peer}: bridge port not found (no running container holds it)`);
    let ours = await ourRules(bridge);
    expect(ours.filter((l) => l.includes(net.peer))).toEqual([`-A DOCKER-USER -s ${net.peer}/32 -i ${bridge} -o ${bridge} ${c} -j DROP`]);
    expect((await keeper("status")).code).toBe(0);
    expect(await spoof(b)).not.toContain("got SYN-ACK");

    // The control: the address-only rule (as before review F2) lets the same attack through.
    const addressOnly = ["-s", `${net.peer}/32`, "-i", bridge, "-o", bridge, "-p", "tcp", "-m", "tcp", "--dport", "3000", "-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", firewallComment(bridge), "-j", "ACCEPT"];
    await run("iptables", ["-w", "5", "-I", "DOCKER-USER", "1", ...addressOnly]);
    expect(await spoof(b)).toContain("got SYN-ACK from victim: connection accepted as the trusted peer");

    // The peer restarts: a new veth. The keeper removes the stale rules (the control's
    // address-only ACCEPT, the fail-closed DROP) and binds the peer's rules to the new port.
    await env.docker.getContainer(peer.id).start();
    const newPort = await hostPortOf(env, peer.id, bridge);
    expect(newPort).not.toBe(oldPort);
    expect((await keeper("install")).code).toBe(0);
    ours = await ourRules(bridge);
    expect(ours.filter((l) => l.endsWith("-j ACCEPT"))).toEqual([
      `-A DOCKER-USER -s ${net.peer}/32 -i ${bridge} -o ${bridge} -p tcp -m tcp --dport 3000 -m physdev --physdev-in ${newPort} -m conntrack --ctstate NEW ${c} -j ACCEPT`,
    ]);
    expect(ours.filter((l) => l.includes(oldPort))).toEqual([]);
    expect(ours.filter((l) => l.includes(net.peer))).toHaveLength(3);
    const status = await keeper("status");
    expect(status.code, status.out).toBe(0);
    expect((await probeFromContainer(env.docker, peer.id, a.ip, 3000)).answered).toBe(true);
    expect(await spoof(a)).not.toContain("got SYN-ACK");
  });
});
