/**
 * Unit tier: finding a trusted peer's bridge port (`peer-ports.ts`) over a stand-in engine and
 * stand-in /proc and /sys trees (temporary folders shaped like the kernel's files), so that every
 * fail-closed branch is exercised. The real engine and kernel: test/isolation/trusted-peers.int.test.ts.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type Docker from "dockerode";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseIgmpInterfaces, resolvePeerPorts } from "../../docker/peer-ports.js";

const IGMP = (ifaces: Array<[number, string]>) =>
  ["Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter", ...ifaces.flatMap(([i, n]) => [`${i}\t${n.padEnd(10)}:     1      V3`, "\t\t\t\t010000E0     1 0:00000000\t\t0"])].join("\n") + "\n";

interface Box {
  id: string;
  ip: string;
  pids: number[];
  running?: boolean;
}

function engine(boxes: Box[], network = "net") {
  const inspects = new Map<string, number>();
  const docker = {
    listContainers: async () => boxes.filter((b) => b.running !== false).map((b) => ({ Id: b.id, NetworkSettings: { Networks: { [network]: { IPAddress: b.ip } } } })),
    getContainer: (id: string) => ({
      inspect: async () => {
        const b = boxes.find((x) => x.id === id);
        if (!b) throw Object.assign(new Error("no such container"), { statusCode: 404 });
        const n = inspects.get(id) ?? 0;
        inspects.set(id, n + 1);
        const pid = b.pids[Math.min(n, b.pids.length - 1)]!;
        return { State: { Running: b.running !== false, Pid: pid } };
      },
    }),
  };
  return docker as unknown as Docker;
}

describe("parseIgmpInterfaces", () => {
  it("reads the ifindex of every interface but lo", () => {
    expect(parseIgmpInterfaces(IGMP([[1, "lo"], [32978, "eth0"], [40001, "eth1"]]))).toEqual([32978, 40001]);
    expect(parseIgmpInterfaces("")).toEqual([]);
  });
});

describe("resolvePeerPorts", () => {
  let root: string;
  const proc = () => path.join(root, "proc");
  const sys = () => path.join(root, "sys");
  async function netns(pid: number, ifaces: Array<[number, string]>) {
    await mkdir(path.join(proc(), String(pid), "net"), { recursive: true });
    await writeFile(path.join(proc(), String(pid), "net", "igmp"), IGMP(ifaces));
  }
  async function port(bridge: string, name: string, ifindex: number, iflink: number) {
    await mkdir(path.join(sys(), "class/net", bridge, "brif", name), { recursive: true });
    await mkdir(path.join(sys(), "class/net", name), { recursive: true });
    await writeFile(path.join(sys(), "class/net", name, "ifindex"), `${ifindex}\n`);
    await writeFile(path.join(sys(), "class/net", name, "iflink"), `${iflink}\n`);
  }
  const lookup = (docker: Docker) => ({ docker, network: "net", bridge: "sbp-x", procRoot: proc(), sysRoot: sys() });

  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "sbp-peerports-"));
    // The peer (pid 100): eth0 (ifindex 50) on our bridge, eth1 (ifindex 60) on another one.
    await netns(100, [[1, "lo"], [50, "eth0"], [60, "eth1"]]);
    await port("sbp-x", "vethpeer", 51, 50);
    await port("sbp-x", "vethprev", 71, 70);
    await port("br-other", "vethback", 61, 60);
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("finds the port of our bridge that leads to the peer's namespace", async () => {
    const docker = engine([{ id: "c-peer", ip: "10.0.0.2", pids: [100] }, { id: "c-prev", ip: "10.0.0.130", pids: [200] }]);
    expect(await resolvePeerPorts(lookup(docker), ["10.0.0.2"])).toEqual([{ address: "10.0.0.2", port: "vethpeer", containerId: "c-peer" }]);
  });

  it("fails closed: no holder, two holders, restart during the lookup, unreadable /proc, no port, two ports", async () => {
    const peer = { id: "c-peer", ip: "10.0.0.2", pids: [100] };
    const reasons = async (boxes: Box[]) => (await resolvePeerPorts(lookup(engine(boxes)), ["10.0.0.2"]))[0]!;
    expect(await reasons([])).toMatchObject({ port: null, reason: "no running container holds it" });
    expect(await reasons([{ ...peer, running: false }])).toMatchObject({ port: null, reason: "no running container holds it" });
    expect(await reasons([peer, { id: "c-twin", ip: "10.0.0.2", pids: [100] }])).toMatchObject({ port: null, reason: "2 running containers hold it" });
    expect(await reasons([{ ...peer, pids: [100, 101] }])).toMatchObject({ port: null, containerId: "c-peer", reason: "its container restarted during the lookup" });
    expect(await reasons([{ ...peer, pids: [999] }])).toMatchObject({ port: null, reason: expect.stringContaining("cannot read /proc/999/net/igmp") });
    await netns(300, [[1, "lo"], [80, "eth0"]]);
    expect(await reasons([{ ...peer, pids: [300] }])).toMatchObject({ port: null, reason: "no port of bridge sbp-x leads to it" });
    // Another port whose other end has the same ifindex (in another namespace): ambiguous.
    await port("sbp-x", "vethodd", 91, 50);
    expect(await reasons([peer])).toMatchObject({ port: null, reason: "several ports of bridge sbp-x match it (vethodd, vethpeer)" });
  });

  it("asks nothing without peers", async () => {
    const docker = { listContainers: () => Promise.reject(new Error("must not be called")) } as unknown as Docker;
    expect(await resolvePeerPorts(lookup(docker), [])).toEqual([]);
  });
});
