/**
 * Pure unit tests of the isolation settings: the preview user, the bridge name, the egress deny
 * list, the preview network's options and the check of an existing network.
 */
import { describe, expect, it } from "vitest";
import {
  BRIDGE_OPTIONS,
  DEFAULT_EGRESS_DENY,
  IsolationSettingError,
  bridgeName,
  egressDeny,
  inCidr,
  networkOptions,
  networkProblems,
  previewUser,
  trustedPeers,
  unsafeNetworkMessage,
} from "../../docker/isolation.js";
import { PermanentError } from "../../functions/ports.js";

const NET = { network: "sitebuilder-previews", instanceId: "previews" };

describe("previewUser", () => {
  it("defaults to 1000:1000 (the preview image's node user)", () => {
    expect(previewUser({})).toEqual({ user: "1000:1000", uid: 1000, gid: 1000 });
    expect(previewUser({ user: "1234:99" })).toEqual({ user: "1234:99", uid: 1234, gid: 99 });
  });

  it.each(["0:0", "0:1000", "1000:0", "00:1"])("refuses root %j permanently", (user) => {
    const err = (() => {
      try {
        previewUser({ user });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(IsolationSettingError);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toMatch(/root/);
  });

  it.each(["node", "1000", "1000:", ":1000", "-1:5", "1000:1000:1", " 1000:1000", "99999999999:1", "4294967295:1"])("refuses the malformed user %j", (user) => {
    expect(() => previewUser({ user })).toThrow(IsolationSettingError);
  });
});

describe("bridgeName", () => {
  it("derives a stable name of at most 15 characters from the network name", () => {
    const name = bridgeName({ network: "sitebuilder-previews" });
    expect(name).toMatch(/^sbp-[0-9a-f]{11}$/);
    expect(name).toHaveLength(15);
    expect(bridgeName({ network: "sitebuilder-previews" })).toBe(name);
    expect(bridgeName({ network: "other" })).not.toBe(name);
  });

  it("takes an explicit name, validated as an interface name", () => {
    expect(bridgeName({ network: "x", bridgeName: "br-previews" })).toBe("br-previews");
    for (const bad of ["", "a-name-too-long-16", "has space", "semi;colon", "-dash", "a/b"]) {
      expect(() => bridgeName({ network: "x", bridgeName: bad })).toThrow(IsolationSettingError);
    }
  });
});

describe("egressDeny", () => {
  it("defaults to link-local (cloud instance metadata)", () => {
    expect(egressDeny({})).toEqual(["169.254.0.0/16"]);
    expect(DEFAULT_EGRESS_DENY).toEqual(["169.254.0.0/16"]);
    expect(egressDeny({ egressDeny: [] })).toEqual([]);
    expect(egressDeny({ egressDeny: ["10.0.0.0/8", "192.168.1.7/32"] })).toEqual(["10.0.0.0/8", "192.168.1.7/32"]);
  });

  it.each(["10.0.0.0", "10.0.0.0/33", "256.0.0.0/8", "fd00::/8", "10.0.0.0/8 -j ACCEPT", "-s 1.2.3.4/32"])("refuses %j", (cidr) => {
    expect(() => egressDeny({ egressDeny: [cidr] })).toThrow(IsolationSettingError);
  });
});

describe("networkOptions", () => {
  it("is a bridge with inter-container communication off, a fixed bridge name, no IPv6, not internal by default", () => {
    expect(networkOptions(NET)).toEqual({
      Driver: "bridge",
      Internal: false,
      EnableIPv6: false,
      Options: { [BRIDGE_OPTIONS.ICC]: "false", [BRIDGE_OPTIONS.NAME]: bridgeName(NET) },
    });
  });

  it("is internal when egress is off", () => {
    expect(networkOptions({ ...NET, egress: false }).Internal).toBe(true);
    expect(networkOptions({ ...NET, egress: true }).Internal).toBe(false);
  });
});

describe("networkProblems", () => {
  const good = { Driver: "bridge", Internal: false, EnableIPv6: false, Options: { [BRIDGE_OPTIONS.ICC]: "false", [BRIDGE_OPTIONS.NAME]: bridgeName(NET) } };

  it("finds none in a network created with networkOptions", () => {
    expect(networkProblems(good, NET)).toEqual([]);
    expect(networkProblems({ ...good, ...networkOptions({ ...NET, egress: false }) }, { ...NET, egress: false })).toEqual([]);
  });

  it("names each problem of a network that would not isolate", () => {
    // A default `docker network create` (what existed before this change).
    const plain = networkProblems({ Driver: "bridge", Internal: false, EnableIPv6: false, Options: {} }, NET);
    expect(plain).toHaveLength(2);
    expect(plain[0]).toMatch(/inter-container communication is on/);
    expect(plain[1]).toMatch(/engine-chosen/);
    expect(networkProblems({ ...good, Options: { ...good.Options, [BRIDGE_OPTIONS.ICC]: "true" } }, NET)).toEqual([expect.stringMatching(/inter-container/)]);
    expect(networkProblems({ ...good, Options: { ...good.Options, [BRIDGE_OPTIONS.NAME]: "br-other" } }, NET)).toEqual([expect.stringMatching(/"br-other"/)]);
    expect(networkProblems({ ...good, Driver: "overlay" }, NET)).toEqual([expect.stringMatching(/overlay/)]);
    expect(networkProblems({ ...good, EnableIPv6: true }, NET)).toEqual([expect.stringMatching(/IPv6/)]);
    expect(networkProblems({ ...good, Internal: true }, NET)).toEqual([expect.stringMatching(/internal but egress is on/)]);
    expect(networkProblems(good, { ...NET, egress: false })).toEqual([expect.stringMatching(/not internal but egress is off/)]);
    expect(networkProblems({ ...good, Options: undefined }, NET)).toHaveLength(2);
  });

  it("with trusted peers, wants a subnet holding them and an ip range (the previews' pool) holding none of them", () => {
    const peers = { ...NET, trustedPeers: ["172.29.0.2", "172.29.0.3"] };
    const ipam = (config: Array<{ Subnet?: string; IPRange?: string; Gateway?: string }> | null) => ({ ...good, IPAM: { Config: config } });
    const right = ipam([{ Subnet: "172.29.0.0/21", IPRange: "172.29.4.0/22", Gateway: "172.29.0.1" }]);
    expect(networkProblems(right, peers)).toEqual([]);
    // Without peers the IPAM is not looked at.
    expect(networkProblems(good, NET)).toEqual([]);
    expect(networkProblems(good, peers)).toEqual([expect.stringMatching(/no IPv4 subnet with an ip range/)]);
    expect(networkProblems(ipam([{ Subnet: "172.29.0.0/21" }]), peers)).toEqual([expect.stringMatching(/could hand a preview a peer's address/)]);
    expect(networkProblems(ipam([{ Subnet: "172.29.0.0/21", IPRange: "172.29.0.0/22" }]), peers)).toEqual([
      expect.stringMatching(/172\.29\.0\.2 is inside its ip range 172\.29\.0\.0\/22/),
      expect.stringMatching(/172\.29\.0\.3 is inside its ip range/),
    ]);
    expect(networkProblems(ipam([{ Subnet: "10.9.0.0/24", IPRange: "10.9.0.128/25" }]), peers)).toEqual([
      expect.stringMatching(/172\.29\.0\.2 is outside its subnet 10\.9\.0\.0\/24/),
      expect.stringMatching(/172\.29\.0\.3 is outside/),
    ]);
    expect(networkProblems(ipam([{ Subnet: "172.29.0.0/21", IPRange: "172.29.4.0/22", Gateway: "172.29.0.2" }]), peers)).toEqual([expect.stringMatching(/172\.29\.0\.2 is its gateway/)]);
  });

  it("refuses a trusted peer that is not an IPv4 address, permanently", () => {
    expect(trustedPeers({})).toEqual([]);
    expect(() => trustedPeers({ trustedPeers: ["172.29.0.0/24"] })).toThrow(IsolationSettingError);
    expect(() => networkProblems(good, { ...NET, trustedPeers: ["traefik"] })).toThrow(/not an IPv4 address/);
  });

  it("inCidr", () => {
    expect(inCidr("172.29.0.2", "172.29.0.0/21")).toBe(true);
    expect(inCidr("172.29.8.0", "172.29.0.0/21")).toBe(false);
    expect(inCidr("10.0.0.1", "0.0.0.0/0")).toBe(true);
    expect(inCidr("10.0.0.1", "10.0.0.1/32")).toBe(true);
    expect(inCidr("10.0.0.2", "10.0.0.1/32")).toBe(false);
    expect(inCidr("x", "10.0.0.0/8")).toBe(false);
    expect(inCidr("10.0.0.1", "10.0.0.0/33")).toBe(false);
  });

  it("words a refusal that says what to do", () => {
    const msg = unsafeNetworkMessage("sitebuilder-previews", ["inter-container communication is on"]);
    expect(msg).toMatch(/^docker: use network sitebuilder-previews failed: /);
    expect(msg).toContain("docker network rm sitebuilder-previews");
    expect(msg).toContain("PREVIEW_NETWORK");
  });
});
