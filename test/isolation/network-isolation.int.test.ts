/**
 * Network isolation of previews, probed from inside real preview containers (stub image,
 * `busybox nc -w 2`), on the real engine and the real host firewall:
 *   - preview -> preview (by address and by name): no answer (inter-container communication off);
 *   - preview -> a TCP server of this test bound to 0.0.0.0, via the gateway, docker0 and the
 *     host's main address: refused (host firewall rule on the preview bridge), and the server
 *     never sees a connection;
 *   - preview -> a container on another network, directly and via a port it publishes: no answer;
 *   - host -> preview:3000 (the readiness probe; a router on the host network): answers;
 *   - egress: a stand-in "outside" host on this machine (a network namespace behind a veth,
 *     198.18.0.0/15, routed by the host like any outside address) answers with egress on, is
 *     refused for an `egressDeny` range, and does not answer with egress off (Internal network).
 * No packet leaves this machine: every probed address is local (checked with `ip route get`).
 * Everything created carries the run's test label and is removed by id at the end; firewall
 * rules are removed by their bridge's comment (never anything else).
 */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerPreviewRuntime } from "../../docker/docker-runtime.js";
import { HostFirewall, firewallComment, runIptables } from "../../docker/host-firewall.js";
import { BRIDGE_OPTIONS, UnsafeNetworkError, bridgeName } from "../../docker/isolation.js";
import { PermanentError } from "../../functions/ports.js";
import { TEST_LABEL, createDockerTestEnv, execIn, probeFromContainer, probeUntilSettled, removeFirewallRules, type DockerTestEnv, type TcpProbe } from "../helpers/docker.js";

const run = promisify(execFile);

/** What was measured, printed at the end of the file (the README's reachability table). */
const measured: Array<{ from: string; to: string; result: string }> = [];
function record(from: string, to: string, p: TcpProbe): TcpProbe {
  const result = p.answered ? "ANSWERS" : /refused/i.test(p.output) ? "refused" : /timed out/i.test(p.output) ? "no answer (timeout)" : `fails: ${p.output}`;
  measured.push({ from, to, result: `${result} (${p.ms} ms)` });
  return p;
}

function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new Error("test/isolation needs root (it changes the host firewall and creates a network namespace); run the integration tier as root");
}

interface Preview {
  projectId: string;
  containerId: string;
  name: string;
  ip: string;
}

async function startPreview(env: DockerTestEnv, prefix: string): Promise<Preview> {
  const projectId = env.projectId(prefix);
  await env.writeSite(projectId);
  const { containerId } = await env.runtime.ensureContainer(projectId);
  await env.start(projectId);
  expect(await probeUntilSettled(env.runtime, projectId)).toMatchObject({ state: "ready" });
  const info = await env.docker.getContainer(containerId).inspect();
  return { projectId, containerId, name: `preview-${projectId}`, ip: info.NetworkSettings.Networks[env.options.network]!.IPAddress };
}

async function gatewayOf(env: DockerTestEnv): Promise<string> {
  const info = await env.docker.getNetwork(env.options.network).inspect();
  const gateway = info.IPAM?.Config?.[0]?.Gateway;
  if (!gateway) throw new Error(`network ${env.options.network} has no gateway`);
  return gateway;
}

/** A TCP server of this test on 0.0.0.0 (like a host service), counting the connections it gets. */
async function startHostServer(): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  let count = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    count++;
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.end("HTTP/1.0 200 OK\r\nconnection: close\r\ncontent-length: 4\r\n\r\nhost");
  });
  await new Promise<void>((resolve) => server.listen(0, "0.0.0.0", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => count,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy(); // a half-closed client must not hold the close
        server.close(() => resolve());
      }),
  };
}

/** The host's own stable addresses (docker0, the default route's interface): local, never outside. */
async function hostAddresses(): Promise<string[]> {
  const addrs: string[] = [];
  const ifaces = os.networkInterfaces();
  const docker0 = ifaces.docker0?.find((a) => a.family === "IPv4")?.address;
  if (docker0) addrs.push(docker0);
  const { stdout } = await run("ip", ["-4", "route", "show", "default"]);
  const dev = /\bdev (\S+)/.exec(stdout)?.[1];
  const main = dev ? ifaces[dev]?.find((a) => a.family === "IPv4")?.address : undefined;
  if (main) addrs.push(main);
  return addrs;
}

/**
 * A stand-in for the outside world on this machine: a network namespace behind a veth pair,
 * serving HTTP on two addresses of 198.18.<n>.0/29 (RFC 2544 benchmark range): .2 (allowed) and
 * .6 (in the /30 the egress-on env denies). The host routes to it like to any outside address:
 * previews reach it by forwarding + masquerade, exactly as they would reach the npm registry.
 */
interface OutsideHost {
  allowed: string;
  denied: string;
  deniedCidr: string;
  close(): Promise<void>;
}

async function startOutsideHost(tag: string): Promise<OutsideHost> {
  const ns = `sbpt-${tag}`;
  const hostIf = `sbpo${tag}`;
  const nsIf = `sbpi${tag}`;
  // A /24 of 198.18.0.0/16 that no interface or route of this host uses yet.
  const { stdout: addrs } = await run("ip", ["-4", "-o", "addr", "show"]);
  const { stdout: routes } = await run("ip", ["-4", "route", "show"]);
  const start = parseInt(tag.slice(0, 2), 16);
  const octet = Array.from({ length: 256 }, (_, i) => (start + i) % 256).find((o) => !`${addrs}\n${routes}`.includes(`198.18.${o}.`));
  if (octet === undefined) throw new Error("no free /24 in 198.18.0.0/16 on this host");
  const net29 = `198.18.${octet}`;
  const dir = await mkdtemp(path.join(os.tmpdir(), "sbpt-outside-"));
  await writeFile(path.join(dir, "index.html"), "outside\n");
  let server: ChildProcess | null = null;
  const close = async () => {
    if (server?.pid) {
      try {
        process.kill(server.pid, "SIGKILL");
      } catch {
        /* already gone */
      }
    }
    await run("ip", ["netns", "del", ns]).catch(() => undefined); // takes the veth pair with it
    await run("ip", ["link", "del", hostIf]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const cmds: string[][] = [
      ["netns", "add", ns],
      ["link", "add", hostIf, "type", "veth", "peer", "name", nsIf],
      ["link", "set", nsIf, "netns", ns],
      ["addr", "add", `${net29}.1/30`, "dev", hostIf],
      ["addr", "add", `${net29}.5/30`, "dev", hostIf],
      ["link", "set", hostIf, "up"],
      ["-n", ns, "addr", "add", `${net29}.2/30`, "dev", nsIf],
      ["-n", ns, "addr", "add", `${net29}.6/30`, "dev", nsIf],
      ["-n", ns, "link", "set", nsIf, "up"],
      ["-n", ns, "link", "set", "lo", "up"],
    ];
    for (const args of cmds) await run("ip", args);
    server = spawn("ip", ["netns", "exec", ns, "/bin/busybox", "httpd", "-f", "-p", "3000", "-h", dir], { stdio: "ignore" });
    // Both addresses route to our veth (so nothing can leave this machine), and the server answers.
    for (const addr of [`${net29}.2`, `${net29}.6`]) {
      const { stdout } = await run("ip", ["route", "get", addr]);
      if (!stdout.includes(`dev ${hostIf}`)) throw new Error(`${addr} does not route to ${hostIf}: ${stdout}`);
    }
    const deadline = Date.now() + 5_000;
    for (;;) {
      const ok = await fetch(`http://${net29}.2:3000/`, { signal: AbortSignal.timeout(1_000) }).then((r) => r.ok, () => false);
      if (ok) break;
      if (Date.now() > deadline) throw new Error("outside stand-in does not answer");
      await new Promise((r) => setTimeout(r, 50));
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { allowed: `${net29}.2`, denied: `${net29}.6`, deniedCidr: `${net29}.4/30`, close };
}

/** A non-preview container on its own network (the database/object store/Inngest stand-in), publishing 3000 on `publishIp`. */
async function startBackend(env: DockerTestEnv, publishIp: string): Promise<{ ip: string; hostPort: string; close(): Promise<void> }> {
  const docker = env.docker;
  const network = await docker.createNetwork({ Name: `${env.options.network}-backend`, CheckDuplicate: true, Labels: { [TEST_LABEL]: env.runId } });
  const projectId = env.projectId("backend");
  const dir = await env.writeSite(projectId);
  let containerId: string | null = null;
  const close = async () => {
    if (containerId) await docker.getContainer(containerId).remove({ force: true }).catch(() => undefined);
    await network.remove().catch(() => undefined);
  };
  try {
    const c = await docker.createContainer({
      name: `sbpt-backend-${projectId}`,
      Image: env.image,
      Labels: { [TEST_LABEL]: env.runId },
      ExposedPorts: { "3000/tcp": {} },
      HostConfig: {
        NetworkMode: network.id,
        Init: true,
        Mounts: [{ Type: "bind", Source: dir, Target: "/app", ReadOnly: true }],
        PortBindings: { "3000/tcp": [{ HostIp: publishIp, HostPort: "" }] },
      },
    });
    containerId = c.id;
    await c.start();
    const info = await c.inspect();
    const ip = Object.values(info.NetworkSettings.Networks)[0]!.IPAddress;
    const hostPort = info.NetworkSettings.Ports["3000/tcp"]![0]!.HostPort;
    return { ip, hostPort, close };
  } catch (err) {
    await close();
    throw err;
  }
}

describe("network isolation, egress on (ICC off + host firewall rule)", () => {
  let env: DockerTestEnv;
  let a: Preview;
  let b: Preview;
  let gateway: string;
  let hostServer: Awaited<ReturnType<typeof startHostServer>>;
  let outside: OutsideHost;
  let backend: Awaited<ReturnType<typeof startBackend>> | null = null;
  const tag = randomBytes(3).toString("hex");

  beforeAll(async () => {
    requireRoot();
    hostServer = await startHostServer();
    outside = await startOutsideHost(tag);
    env = await createDockerTestEnv({ hostFirewall: "iptables", egressDeny: ["169.254.0.0/16", outside.deniedCidr] });
    [a, b] = await Promise.all([startPreview(env, "a"), startPreview(env, "b")]);
    gateway = await gatewayOf(env);
    backend = await startBackend(env, gateway);
  });
  afterAll(async () => {
    await backend?.close();
    await env?.cleanup(); // containers, network, and this bridge's rules
    await outside?.close();
    await hostServer?.close();
  });

  it("creates the network with inter-container communication off, a fixed bridge, and installs the bridge's rules", async () => {
    const info = await env.docker.getNetwork(env.options.network).inspect();
    expect(info.Options).toMatchObject({ [BRIDGE_OPTIONS.ICC]: "false", [BRIDGE_OPTIONS.NAME]: bridgeName(env.options) });
    expect(info.Internal).toBe(false);
    const { stdout } = await run("ip", ["-br", "link", "show", bridgeName(env.options)]);
    expect(stdout).toContain(bridgeName(env.options));
    const firewall = HostFirewall.forBridge(bridgeName(env.options), env.options.egressDeny!);
    expect(await firewall.status()).toEqual([true, true, true]);
    // Every rule of ours names the bridge as its input interface: nothing else is filtered.
    const { stdout: rules } = await run("iptables", ["-w", "5", "-S"]);
    const ours = rules.split("\n").filter((l) => l.includes(firewallComment(bridgeName(env.options))));
    expect(ours).toHaveLength(3);
    for (const line of ours) expect(line).toContain(`-i ${bridgeName(env.options)} `);
  });

  it("the host reaches a preview on 3000: the readiness probe, and a router on the host network", async () => {
    expect(await env.runtime.probeReady(a.projectId, 2_000)).toMatchObject({ state: "ready" });
    const res = await fetch(`http://${a.ip}:3000/`, { signal: AbortSignal.timeout(5_000) });
    expect(res.status).toBe(200);
    // A container on the host network (Traefik with network_mode: host) is the host for this purpose.
    const router = await env.docker.createContainer({
      Image: env.image,
      Cmd: ["/bin/busybox", "sleep", "60"],
      Labels: { [TEST_LABEL]: env.runId },
      HostConfig: { NetworkMode: "host", Init: true },
    });
    try {
      await router.start();
      const p = record("router (host network)", "preview:3000", await probeFromContainer(env.docker, router.id, a.ip, 3000));
      expect(p.answered).toBe(true);
    } finally {
      await router.remove({ force: true });
    }
    measured.push({ from: "host (readiness probe)", to: "preview:3000", result: "ANSWERS" });
  });

  it("a preview reaches no other preview, by address or by name (the name still resolves)", async () => {
    const [byIp, byName, reverse] = await Promise.all([
      probeFromContainer(env.docker, a.containerId, b.ip, 3000),
      probeFromContainer(env.docker, a.containerId, b.name, 3000),
      probeFromContainer(env.docker, b.containerId, a.ip, 3000),
    ]);
    record("preview A", "preview B by IP :3000", byIp);
    record("preview A", "preview B by name :3000", byName);
    record("preview B", "preview A by IP :3000", reverse);
    for (const p of [byIp, byName, reverse]) {
      expect(p.answered).toBe(false);
      expect(p.code).not.toBe(0);
    }
    // Blocked at the connection, not by name resolution.
    const lookup = await execIn(env.docker, a.containerId, ["/bin/busybox", "nslookup", b.name]);
    expect(lookup.stdout).toContain(b.ip);
  });

  it("a preview reaches no host service bound to 0.0.0.0: not via the gateway, docker0 or the host's own address", async () => {
    const targets = [gateway, ...(await hostAddresses())];
    expect(targets.length).toBeGreaterThanOrEqual(2);
    const probes = await Promise.all(targets.map((t) => probeFromContainer(env.docker, a.containerId, t, hostServer.port)));
    probes.forEach((p, i) => {
      record("preview A", `host server 0.0.0.0 via ${i === 0 ? "gateway" : "host address"} ${targets[i]}`, p);
      expect(p.answered).toBe(false);
      expect(p.output).toMatch(/refused/i);
    });
    expect(hostServer.connections()).toBe(0);
    // The host itself does reach that server (it is there and listening).
    const res = await fetch(`http://127.0.0.1:${hostServer.port}/`, { signal: AbortSignal.timeout(2_000) });
    expect(await res.text()).toBe("host");
  });

  it("a preview reaches no container on another network, neither directly nor via a port it publishes", async () => {
    const [direct, published] = await Promise.all([
      probeFromContainer(env.docker, a.containerId, backend!.ip, 3000),
      probeFromContainer(env.docker, a.containerId, gateway, backend!.hostPort),
    ]);
    record("preview A", "container on another network :3000", direct);
    record("preview A", "that container's published port via the gateway", published);
    expect(direct.answered).toBe(false);
    expect(published.answered).toBe(false);
    // The backend is up: the host reaches it.
    const res = await fetch(`http://${gateway}:${backend!.hostPort}/`, { signal: AbortSignal.timeout(2_000) });
    expect(res.status).toBe(200);
  });

  it("egress stays open (the outside stand-in answers) except for denied ranges", async () => {
    const [allowed, denied] = await Promise.all([
      probeFromContainer(env.docker, a.containerId, outside.allowed, 3000),
      probeFromContainer(env.docker, a.containerId, outside.denied, 3000),
    ]);
    record("preview A", `outside stand-in ${outside.allowed}:3000 (egress on)`, allowed);
    record("preview A", `outside stand-in ${outside.denied}:3000 (in egressDeny)`, denied);
    expect(allowed.answered).toBe(true);
    expect(allowed.body).toContain("outside");
    expect(denied.answered).toBe(false);
    expect(denied.output).toMatch(/refused/i);
  });
});

describe("network isolation, egress off (Internal network)", () => {
  let env: DockerTestEnv;
  let a: Preview;
  let b: Preview;
  let gateway: string;
  let hostServer: Awaited<ReturnType<typeof startHostServer>>;
  let outside: OutsideHost;
  const tag = randomBytes(3).toString("hex");

  beforeAll(async () => {
    requireRoot();
    hostServer = await startHostServer();
    outside = await startOutsideHost(tag);
    env = await createDockerTestEnv({ hostFirewall: "iptables", egress: false });
    [a, b] = await Promise.all([startPreview(env, "ia"), startPreview(env, "ib")]);
    gateway = await gatewayOf(env);
  });
  afterAll(async () => {
    await env?.cleanup();
    await outside?.close();
    await hostServer?.close();
  });

  it("is an internal network with ICC off; the host still reaches previews on 3000", async () => {
    const info = await env.docker.getNetwork(env.options.network).inspect();
    expect(info.Internal).toBe(true);
    expect(info.Options?.[BRIDGE_OPTIONS.ICC]).toBe("false");
    expect(await env.runtime.probeReady(a.projectId, 2_000)).toMatchObject({ state: "ready" });
    const res = await fetch(`http://${a.ip}:3000/`, { signal: AbortSignal.timeout(5_000) });
    expect(res.status).toBe(200);
  });

  it("a preview reaches nothing outside its subnet, no other preview and no host service", async () => {
    const [out, peer, host] = await Promise.all([
      probeFromContainer(env.docker, a.containerId, outside.allowed, 3000),
      probeFromContainer(env.docker, a.containerId, b.ip, 3000),
      probeFromContainer(env.docker, a.containerId, gateway, hostServer.port),
    ]);
    record("preview (egress off)", `outside stand-in ${outside.allowed}:3000`, out);
    record("preview (egress off)", "other preview by IP :3000", peer);
    record("preview (egress off)", "host server 0.0.0.0 via gateway", host);
    for (const p of [out, peer, host]) expect(p.answered).toBe(false);
    expect(hostServer.connections()).toBe(0);
    // Measured on 20.10: an internal network still gives containers a default route via the
    // gateway; the engine drops the forwarded packets instead. Recorded, not relied upon.
    const routes = await execIn(env.docker, a.containerId, ["/bin/busybox", "ip", "route"]);
    measured.push({ from: "preview (egress off)", to: "routing table", result: routes.stdout.trim().replace(/\n/g, " | ") });
  });
});

describe("host firewall rule: what it changes, idempotent, removable, scoped", () => {
  let env: DockerTestEnv;
  let a: Preview;
  let gateway: string;
  let hostServer: Awaited<ReturnType<typeof startHostServer>>;
  let firewall: HostFirewall;
  const foreign = () => ["INPUT", "-i", bridgeName(env.options), "-m", "comment", "--comment", "not-sitebuilder", "-j", "RETURN"];

  beforeAll(async () => {
    requireRoot();
    hostServer = await startHostServer();
    // The adapter does not manage the firewall here: the test drives it.
    env = await createDockerTestEnv({ hostFirewall: "off" });
    a = await startPreview(env, "fw");
    gateway = await gatewayOf(env);
    firewall = HostFirewall.forBridge(bridgeName(env.options), ["169.254.0.0/16"]);
  });
  afterAll(async () => {
    if (env) {
      await runIptables(["-D", ...foreign()]).catch(() => undefined);
      await removeFirewallRules(bridgeName(env.options));
      await env.cleanup();
    }
    await hostServer?.close();
  });

  it("without the rule, ICC off alone leaves host services open to previews (measured baseline)", async () => {
    const p = record("preview (ICC off, NO host rule)", "host server 0.0.0.0 via gateway", await probeFromContainer(env.docker, a.containerId, gateway, hostServer.port));
    expect(p.answered).toBe(true);
    expect(hostServer.connections()).toBe(1);
  });

  it("install adds the rules once (idempotent); the preview is then refused, the host still reaches it", async () => {
    expect(await firewall.status()).toEqual([false, false]);
    expect(await firewall.install()).toBe(2);
    expect(await firewall.install()).toBe(0);
    expect(await firewall.status()).toEqual([true, true]);
    const before = hostServer.connections();
    const p = await probeFromContainer(env.docker, a.containerId, gateway, hostServer.port);
    expect(p.answered).toBe(false);
    expect(p.output).toMatch(/refused/i);
    expect(hostServer.connections()).toBe(before);
    expect((await fetch(`http://${a.ip}:3000/`, { signal: AbortSignal.timeout(5_000) })).status).toBe(200);
  });

  it("remove deletes only its own rules (a foreign rule on the same bridge survives), then the host service is reachable again", async () => {
    const added = await runIptables(["-A", ...foreign()]);
    expect(added.code).toBe(0);
    expect(await firewall.remove()).toBe(2);
    expect(await firewall.remove()).toBe(0);
    expect(await firewall.status()).toEqual([false, false]);
    expect((await runIptables(["-C", ...foreign()])).code).toBe(0);
    expect((await runIptables(["-D", ...foreign()])).code).toBe(0);
    const p = await probeFromContainer(env.docker, a.containerId, gateway, hostServer.port);
    expect(p.answered).toBe(true);
  });

  afterAll(() => {
    // The reachability table (also in the README's Security section).
    if (measured.length) console.info(["measured reachability:", ...measured.map((m) => `  ${m.from} -> ${m.to}: ${m.result}`)].join("\n"));
  });
});

describe("an existing preview network that does not isolate is refused, never used", () => {
  let env: DockerTestEnv;
  beforeAll(async () => {
    requireRoot();
    env = await createDockerTestEnv();
  });
  afterAll(async () => {
    await env?.cleanup();
  });

  it("refuses a network with inter-container communication on (e.g. created before this change), creating no container", async () => {
    await env.docker.createNetwork({ Name: env.options.network, CheckDuplicate: true, Labels: { [TEST_LABEL]: env.runId } });
    const id = env.projectId("icc");
    await env.writeSite(id);
    const err = await env.runtime.ensureContainer(id).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(UnsafeNetworkError);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toMatch(/inter-container communication is on/);
    expect((err as Error).message).toContain(`docker network rm ${env.options.network}`);
    await expect(env.docker.getContainer(`preview-${id}`).inspect()).rejects.toMatchObject({ statusCode: 404 });
    await env.docker.getNetwork(env.options.network).remove();
  });

  it("refuses to start a created preview once its network was replaced by one that does not isolate", async () => {
    const id = env.projectId("swap");
    await env.writeSite(id);
    const { containerId } = await env.runtime.ensureContainer(id);
    // The engine attaches by network name at start: swap the network for an ICC-on one.
    await env.docker.getNetwork(env.options.network).remove();
    await env.docker.createNetwork({ Name: env.options.network, CheckDuplicate: true, Labels: { [TEST_LABEL]: env.runId } });
    const err = await env.start(id).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(UnsafeNetworkError);
    expect((await env.docker.getContainer(containerId).inspect()).State.Status).toBe("created");
    // Once the unsafe network is gone, the runtime recreates it isolating, and the preview runs.
    await env.docker.getNetwork(env.options.network).remove();
    await env.start(id);
    expect((await env.docker.getContainer(containerId).inspect()).State.Running).toBe(true);
    expect((await env.docker.getNetwork(env.options.network).inspect()).Options?.[BRIDGE_OPTIONS.ICC]).toBe("false");
  });

  it("refuses a network whose egress does not match (internal vs not)", async () => {
    await env.runtime.ensureNetwork(); // egress on: not internal
    const strict = new DockerPreviewRuntime(env.docker, { ...env.options, egress: false });
    const err = await strict.ensureNetwork().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(UnsafeNetworkError);
    expect((err as Error).message).toMatch(/not internal but egress is off/);
  });
});
