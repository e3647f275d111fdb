/**
 * Pure unit tests (no engine) of the readiness probe: where it probes, one HTTP attempt against
 * a local server, and the bounded slice driven by a scripted inspect. Durations are asserted
 * loosely (the point is "bounded", not "fast").
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { ContainerInspectInfo } from "dockerode";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { httpAnswers, hostPortOf, probeSlice, probeTarget, type ProbeTarget } from "../../docker/readiness.js";

interface FakeState {
  running?: boolean;
  status?: string;
  exitCode?: number;
  oom?: boolean;
  ip?: string;
  hostPort?: string;
}

/** Just the inspect fields the probe reads. */
function info({ running = true, status = running ? "running" : "exited", exitCode = 0, oom = false, ip, hostPort }: FakeState = {}): ContainerInspectInfo {
  const fake = {
    Id: "c0ffee",
    State: { Running: running, Status: status, ExitCode: exitCode, OOMKilled: oom },
    NetworkSettings: {
      Ports: hostPort ? { "3000/tcp": [{ HostIp: "127.0.0.1", HostPort: hostPort }] } : {},
      Networks: ip ? { previews: { IPAddress: ip } } : {},
    },
  };
  return fake as unknown as ContainerInspectInfo;
}

let server: http.Server;
let live: ProbeTarget;
/** A port nothing listens on (the server is closed right after binding). */
let dead: ProbeTarget;
let status = 200;

beforeAll(async () => {
  server = http.createServer((_req, res) => {
    res.statusCode = status;
    res.end("ok");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  live = { host: "127.0.0.1", port: (server.address() as AddressInfo).port };
  const closed = http.createServer();
  await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
  dead = { host: "127.0.0.1", port: (closed.address() as AddressInfo).port };
  await new Promise<void>((resolve) => closed.close(() => resolve()));
});
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

describe("probeTarget", () => {
  it("uses the address on the preview network with traefik routing", () => {
    expect(probeTarget(info({ ip: "172.30.0.4" }), { routing: "traefik", network: "previews" })).toEqual({ host: "172.30.0.4", port: 3000 });
    expect(probeTarget(info({ ip: "172.30.0.4" }), { routing: "traefik", network: "other" })).toBeNull();
    expect(probeTarget(info(), { routing: "traefik", network: "previews" })).toBeNull();
  });

  it("uses the published loopback port with port routing", () => {
    expect(probeTarget(info({ hostPort: "49153" }), { routing: "port", network: "previews" })).toEqual({ host: "127.0.0.1", port: 49153 });
    expect(probeTarget(info(), { routing: "port", network: "previews" })).toBeNull();
    expect(hostPortOf(info({ hostPort: "49153" }))).toBe("49153");
    expect(hostPortOf(info({ hostPort: "" }))).toBeUndefined();
  });
});

describe("httpAnswers", () => {
  it("is true for any status below 500", async () => {
    for (const s of [200, 302, 404]) {
      status = s;
      expect(await httpAnswers(live, 2_000)).toBe(true);
    }
    status = 200;
  });

  it("is false for a 5xx answer and when nothing listens", async () => {
    status = 503;
    expect(await httpAnswers(live, 2_000)).toBe(false);
    status = 200;
    expect(await httpAnswers(dead, 2_000)).toBe(false);
  });

  it("is false at once for an aborted signal", async () => {
    expect(await httpAnswers(live, 2_000, AbortSignal.abort())).toBe(false);
  });
});

describe("probeSlice", () => {
  const base = { name: "preview-a", target: () => live };

  it("is ready as soon as the target answers", async () => {
    const result = await probeSlice({ ...base, sliceMs: 5_000, inspect: async () => info() });
    expect(result).toMatchObject({ state: "ready", info: { Id: "c0ffee" } });
  });

  it("waits while the address is not assigned, re-inspecting until it is", async () => {
    let calls = 0;
    const result = await probeSlice({
      name: "preview-a",
      sliceMs: 10_000,
      inspect: async () => (++calls < 3 ? info() : info({ ip: "x" })),
      target: (i) => (i.NetworkSettings.Networks["previews"] ? live : null),
    });
    expect(result.state).toBe("ready");
    expect(calls).toBe(3);
  });

  it("says waiting when the slice runs out", async () => {
    const started = Date.now();
    const result = await probeSlice({ ...base, target: () => dead, sliceMs: 200, inspect: async () => info() });
    expect(result).toEqual({ state: "waiting" });
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it.each([0, -5, Number.NaN, Number.POSITIVE_INFINITY])("with a budget of %s still probes once, then says waiting", async (sliceMs) => {
    let calls = 0;
    const inspect = async () => {
      calls++;
      return info();
    };
    expect(await probeSlice({ ...base, target: () => dead, sliceMs, inspect })).toEqual({ state: "waiting" });
    expect(calls).toBe(1);
  });

  it("is down when the container is gone", async () => {
    expect(await probeSlice({ ...base, sliceMs: 1_000, inspect: async () => null })).toEqual({
      state: "down",
      reason: "container preview-a is gone",
      info: null,
    });
  });

  it("is down, with the exit code, when the process exits while probed", async () => {
    let calls = 0;
    const result = await probeSlice({
      ...base,
      target: () => dead,
      sliceMs: 30_000,
      inspect: async () => (++calls < 2 ? info() : info({ running: false, exitCode: 3 })),
    });
    expect(result).toMatchObject({ state: "down", reason: "container preview-a exited with code 3 before answering HTTP on port 3000" });
  });

  it("names an out-of-memory kill and a container never started", async () => {
    const oom = await probeSlice({ ...base, sliceMs: 100, inspect: async () => info({ running: false, exitCode: 137, oom: true }) });
    expect(oom).toMatchObject({ state: "down", reason: "container preview-a exited with code 137 (killed: out of memory) before answering HTTP on port 3000" });
    const created = await probeSlice({ ...base, sliceMs: 100, inspect: async () => info({ running: false, status: "created" }) });
    expect(created).toMatchObject({ state: "down", reason: "container preview-a has not been started" });
  });

  it("returns waiting promptly when the signal aborts, however long the slice", async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const started = Date.now();
    const result = await probeSlice({ ...base, target: () => dead, sliceMs: 60_000, signal: controller.signal, inspect: async () => info() });
    expect(result).toEqual({ state: "waiting" });
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("makes no call at all with an already-aborted signal", async () => {
    let calls = 0;
    const result = await probeSlice({
      ...base,
      sliceMs: 5_000,
      signal: AbortSignal.abort(),
      inspect: async () => {
        calls++;
        return info();
      },
    });
    expect(result).toEqual({ state: "waiting" });
    expect(calls).toBe(0);
  });

  it("lets an engine failure through", async () => {
    const failure = new Error("docker: inspect container preview-a failed: connect ENOENT");
    await expect(probeSlice({ ...base, sliceMs: 1_000, inspect: () => Promise.reject(failure) })).rejects.toBe(failure);
  });
});
