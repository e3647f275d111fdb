/**
 * `PreviewNetwork` over an in-memory engine and iptables: it creates the network with the
 * isolating options, refuses an existing one without them, treats the engine's 403 "same bridge
 * name" as a lost creation race, and installs the host rules once, re-checking them at most every
 * `FIREWALL_RECHECK_MS`.
 */
import type Docker from "dockerode";
import { afterEach, describe, expect, it, vi } from "vitest";
import { type IptablesRunner } from "../../docker/host-firewall.js";
import { BRIDGE_OPTIONS, UnsafeNetworkError, bridgeName } from "../../docker/isolation.js";
import { FIREWALL_RECHECK_MS, PreviewNetwork } from "../../docker/network.js";

const SETTINGS = { network: "previews-net", instanceId: "previews" };
const httpError = (statusCode: number, message: string) => Object.assign(new Error(message), { statusCode });

function fakeEngine(opts: { existing?: Record<string, unknown>; createFails?: number; createdByOther?: boolean } = {}) {
  let network: Record<string, unknown> | null = opts.existing ?? null;
  const creates: Array<Record<string, unknown>> = [];
  const docker = {
    getNetwork: () => ({
      inspect: async () => {
        if (!network) throw httpError(404, "network not found");
        return network;
      },
    }),
    createNetwork: async (spec: Record<string, unknown>) => {
      creates.push(spec);
      if (opts.createFails) {
        if (opts.createdByOther) network = { Name: spec.Name, Driver: "bridge", Internal: false, EnableIPv6: false, Options: spec.Options };
        throw httpError(opts.createFails, "networks have same bridge name");
      }
      network = { Name: spec.Name, Driver: spec.Driver, Internal: spec.Internal, EnableIPv6: spec.EnableIPv6, Options: spec.Options, Labels: spec.Labels };
      return {};
    },
    listNetworks: async () => (network ? [{ ...network, Id: "n1", Created: "2026-01-01" }] : []),
  };
  return { docker: docker as unknown as Docker, creates };
}

function fakeIptables() {
  const rules = new Set<string>();
  const calls: string[][] = [];
  const run: IptablesRunner = async (args) => {
    calls.push(args);
    const [op, chain, ...rest] = args;
    if (op === "-C") return { code: rules.has(`${chain} ${rest.join(" ")}`) ? 0 : 1, stdout: "", stderr: "" };
    if (op === "-I") rules.add(`${chain} ${rest.slice(1).join(" ")}`);
    return { code: 0, stdout: "", stderr: "" };
  };
  return { run, rules, calls };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("PreviewNetwork", () => {
  it("creates a missing network with ICC off, its fixed bridge name and the owner labels", async () => {
    const engine = fakeEngine();
    await new PreviewNetwork(engine.docker, SETTINGS).ensure();
    expect(engine.creates).toHaveLength(1);
    expect(engine.creates[0]).toMatchObject({
      Name: "previews-net",
      Driver: "bridge",
      Internal: false,
      EnableIPv6: false,
      CheckDuplicate: true,
      Options: { [BRIDGE_OPTIONS.ICC]: "false", [BRIDGE_OPTIONS.NAME]: bridgeName(SETTINGS) },
      Labels: { "sitebuilder.preview": "true", "sitebuilder.owner": "previews" },
    });
  });

  it("refuses an existing network that does not isolate, permanently", async () => {
    const engine = fakeEngine({ existing: { Name: "previews-net", Driver: "bridge", Internal: false, EnableIPv6: false, Options: {} } });
    await expect(new PreviewNetwork(engine.docker, SETTINGS).ensure()).rejects.toBeInstanceOf(UnsafeNetworkError);
    expect(engine.creates).toHaveLength(0);
  });

  it("takes a 403 'same bridge name' as another creator's win when a network of its name exists", async () => {
    const engine = fakeEngine({ createFails: 403, createdByOther: true });
    await expect(new PreviewNetwork(engine.docker, SETTINGS).ensure()).resolves.toBeUndefined();
  });

  it("reports a bridge name held by a network of another name", async () => {
    const engine = fakeEngine({ createFails: 403 });
    const err = await new PreviewNetwork(engine.docker, SETTINGS).ensure().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(UnsafeNetworkError);
    expect((err as Error).message).toMatch(/held by another network/);
  });

  it("installs no host rule unless asked to", async () => {
    const ipt = fakeIptables();
    await new PreviewNetwork(fakeEngine().docker, SETTINGS, undefined, ipt.run).ensure();
    expect(ipt.calls).toEqual([]);
  });

  it("installs the host rules once and re-checks them at most every FIREWALL_RECHECK_MS", async () => {
    vi.useFakeTimers({ toFake: ["performance"] });
    const ipt = fakeIptables();
    const net = new PreviewNetwork(fakeEngine().docker, { ...SETTINGS, hostFirewall: "iptables" }, undefined, ipt.run);
    await net.ensure();
    expect(ipt.rules.size).toBe(2); // INPUT + the default deny (169.254.0.0/16)
    const after = ipt.calls.length;
    await net.ensure();
    await net.ensure();
    expect(ipt.calls.length).toBe(after);
    vi.advanceTimersByTime(FIREWALL_RECHECK_MS + 1);
    await net.ensure();
    expect(ipt.calls.slice(after).map((c) => c[0])).toEqual(["-C", "-C"]);
    ipt.rules.clear(); // a firewall reload
    vi.advanceTimersByTime(FIREWALL_RECHECK_MS + 1);
    await net.ensure();
    expect(ipt.rules.size).toBe(2);
  });
});
