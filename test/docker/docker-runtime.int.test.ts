/**
 * `DockerPreviewRuntime` against the real engine, with the stub image (busybox `FROM scratch`,
 * running the site folder's `start.sh`). Everything created carries the run's test label and is
 * removed by the env's cleanup (and by the global teardown, whatever happens).
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import { createDockerTestEnv, TEST_LABEL, type DockerTestEnv } from "../helpers/docker.js";
import { DockerPreviewRuntime } from "../../docker/docker-runtime.js";
import { DockerPermanentError, ForeignContainerError } from "../../docker/errors.js";
import { LABELS } from "../../docker/labels.js";
import { ContainerGoneError, PermanentError, isPermanent, type ProbeResult } from "../../functions/ports.js";
import { InvalidProjectIdError } from "../../functions/project-id.js";

async function httpGet(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  return { status: res.status, body: await res.text() };
}

const failure = (p: Promise<unknown>): Promise<unknown> => p.then(() => null, (e: unknown) => e);

/** Probes in short slices, as the workflow does, until the result is not `waiting` (bounded). */
async function probeUntilSettled(runtime: DockerPreviewRuntime, id: string, sliceMs = 250, maxSlices = 120): Promise<ProbeResult> {
  for (let i = 0; i < maxSlices; i++) {
    const result = await runtime.probeReady(id, sliceMs);
    if (result.state !== "waiting") return result;
  }
  return { state: "waiting" };
}

describe("DockerPreviewRuntime on a real engine (traefik routing)", () => {
  let env: DockerTestEnv;
  beforeAll(async () => {
    env = await createDockerTestEnv();
  });
  afterAll(async () => {
    await env?.cleanup();
  });

  it("creates exactly the hardened, labelled container and it answers HTTP", async () => {
    const id = env.projectId();
    const siteDir = await env.writeSite(id);
    const ensured = await env.runtime.ensureContainer(id);
    expect(ensured).toEqual({ containerId: expect.stringMatching(/^[0-9a-f]{64}$/), running: false });

    const info = await env.docker.getContainer(`preview-${id}`).inspect();
    expect(info.Id).toBe(ensured.containerId);
    expect(info.Name).toBe(`/preview-${id}`);
    expect(info.Config.Image).toBe(env.image);
    expect(info.Config.Labels).toMatchObject({
      [LABELS.MANAGED]: "true",
      [LABELS.PROJECT_ID]: id,
      [LABELS.OWNER]: "previews",
      [TEST_LABEL]: env.runId,
      "traefik.enable": "true",
      [`traefik.http.routers.preview-${id}.rule`]: `Host(\`${id}.preview.localhost\`)`,
      [`traefik.http.services.preview-${id}.loadbalancer.server.port`]: "3000",
      "traefik.docker.network": env.options.network,
    });
    const hc = info.HostConfig;
    expect(hc.Privileged).toBe(false);
    expect(hc.CapDrop).toEqual(["ALL"]);
    expect(hc.CapAdd ?? []).toEqual([]);
    expect(hc.SecurityOpt).toEqual(["no-new-privileges:true"]);
    expect(hc.Init).toBe(true);
    expect(hc.Memory).toBe(64 * 1024 * 1024);
    expect(hc.NanoCpus).toBe(500_000_000);
    expect(hc.PidsLimit).toBe(64);
    expect(hc.NetworkMode).toBe(env.options.network);
    expect(hc.PortBindings ?? {}).toEqual({});
    expect(hc.Binds ?? []).toEqual([]);
    // Exactly one mount: the project's own site folder, from the host storage path.
    expect(info.Mounts).toHaveLength(1);
    expect(info.Mounts[0]).toMatchObject({ Type: "bind", Source: siteDir, Destination: "/app", RW: true });
    expect(JSON.stringify(info.Mounts)).not.toContain("docker.sock");
    const envVars = info.Config.Env;
    expect(envVars.find((e) => e.startsWith("PAYLOAD_SECRET="))).toMatch(/^PAYLOAD_SECRET=[0-9a-f]{64}$/);
    expect(envVars).toContain(`NEXT_PUBLIC_SITE_URL=http://${id}.preview.localhost`);

    await env.start(id);
    const ready = await env.runtime.probeReady(id, 10_000);
    expect(ready).toEqual({ state: "ready", url: `http://${id}.preview.localhost`, containerId: ensured.containerId });

    const running = await env.docker.getContainer(ensured.containerId).inspect();
    const ip = running.NetworkSettings.Networks[env.options.network]!.IPAddress;
    const res = await httpGet(`http://${ip}:3000/`);
    expect(res.status).toBe(200);
    expect(res.body).toContain(`preview ${id}`);
  });

  it("gives each container its own random PAYLOAD_SECRET", async () => {
    const [a, b] = [env.projectId(), env.projectId()];
    await Promise.all([env.writeSite(a), env.writeSite(b)]);
    await Promise.all([env.runtime.ensureContainer(a), env.runtime.ensureContainer(b)]);
    const secret = async (id: string) =>
      (await env.docker.getContainer(`preview-${id}`).inspect()).Config.Env.find((e) => e.startsWith("PAYLOAD_SECRET="));
    expect(await secret(a)).not.toBe(await secret(b));
  });

  it("is idempotent: ensure finds, start of a running container is success", async () => {
    const id = env.projectId();
    await env.writeSite(id);
    const first = await env.runtime.ensureContainer(id);
    await env.start(id);
    await env.start(id); // already running: no call
    const again = await env.runtime.ensureContainer(id);
    expect(again).toEqual({ containerId: first.containerId, running: true });
  });

  it("stop and remove treat stopped and missing containers as outcomes", async () => {
    const id = env.projectId();
    await env.writeSite(id);
    expect(await env.runtime.stop(id)).toBe("absent");
    expect(await env.runtime.remove(id)).toBe("absent");
    const { containerId } = await env.runtime.ensureContainer(id);
    expect(await env.runtime.stop(id)).toBe("already-stopped"); // created, never started
    await env.start(id);
    expect(await env.runtime.stop(id)).toBe("stopped");
    expect((await env.docker.getContainer(containerId).inspect()).State.Running).toBe(false);
    expect(await env.runtime.stop(id)).toBe("already-stopped");
    await env.start(id);
    expect(await env.runtime.remove(id)).toBe("removed"); // running: force-removed
    await expect(env.docker.getContainer(containerId).inspect()).rejects.toMatchObject({ statusCode: 404 });
    expect(await env.runtime.remove(id)).toBe("absent");
    expect(await env.runtime.stop(id)).toBe("absent");
  });

  it("start compares what the container mounted with the checked folder: the same one is verified", async () => {
    const id = env.projectId();
    await env.writeSite(id);
    await env.runtime.ensureContainer(id);
    expect(await env.start(id)).toEqual({ mount: "verified" });
    // Already running: compared all the same.
    expect(await env.start(id)).toEqual({ mount: "verified" });
  });

  it("start kills a container that mounted another folder than the one checked, as a permanent failure", async () => {
    const id = env.projectId();
    const other = env.projectId();
    await env.writeSite(id);
    await env.writeSite(other);
    const { containerId } = await env.runtime.ensureContainer(id);
    // As if the check had seen another directory than the one the engine then mounted.
    const err = await failure(env.runtime.start(id, await env.folderOf(other)));
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toMatch(new RegExp(`^docker: start container preview-${id} failed: it mounted directory \\d+:\\d+ at /app, not the site folder checked right before \\(\\d+:\\d+\\): the folder was replaced while the engine mounted it; killed$`));
    const info = await env.docker.getContainer(containerId).inspect();
    expect(info.State.Running).toBe(false);
    expect(info.State.ExitCode).toBe(137);
  });

  it("where the mount cannot be compared (no view of the engine's processes), start kills the container unless told to accept a path check", async () => {
    const blind = await mkdtemp(path.join(os.tmpdir(), "sbp-blind-proc-"));
    try {
      const required = new DockerPreviewRuntime(env.docker, { ...env.options, procPath: blind });
      const id = env.projectId();
      await env.writeSite(id);
      const { containerId } = await required.ensureContainer(id);
      const err = await failure(required.start(id, await env.folderOf(id)));
      expect(err).toBeInstanceOf(PermanentError);
      expect((err as Error).message).toMatch(/cannot be compared with the site folder checked \(process \d+ is not visible here \(ENOENT\).*\); killed\. Run the service on the host as root, or in a container with pid: host and the SYS_PTRACE capability, or set PREVIEW_MOUNT_CHECK=path$/);
      expect((await env.docker.getContainer(containerId).inspect()).State.Running).toBe(false);

      const lenient = new DockerPreviewRuntime(env.docker, { ...env.options, procPath: blind, mountCheck: "path" });
      expect(await lenient.start(id, await env.folderOf(id))).toEqual({ mount: "unverified", reason: expect.stringMatching(/is not visible here/) });
      expect((await env.docker.getContainer(containerId).inspect()).State.Running).toBe(true);
    } finally {
      await rm(blind, { recursive: true, force: true });
    }
  });

  it("start does not re-create a container removed since it was ensured", async () => {
    const id = env.projectId();
    await env.writeSite(id);
    const first = await env.runtime.ensureContainer(id);
    await env.docker.getContainer(first.containerId).remove({ force: true });
    const err = await failure(env.start(id));
    expect(err).toBeInstanceOf(PermanentError);
    // Told apart from every other refusal: the workflow decides whether to create it again.
    expect(err).toBeInstanceOf(ContainerGoneError);
    expect((err as Error).message).toBe(`docker: start container preview-${id} failed: it no longer exists`);
    await expect(env.docker.getContainer(`preview-${id}`).inspect()).rejects.toMatchObject({ statusCode: 404 });
  });

  it("refuses an invalid project id before any call, as a permanent failure", async () => {
    for (const action of [
      () => env.runtime.ensureContainer("../x"),
      () => env.start("A"),
      () => env.runtime.probeReady("a b", 100),
      () => env.runtime.logTail("-a"),
      () => env.runtime.stop("a.b"),
      () => env.runtime.remove(""),
    ]) {
      const err = await failure(action());
      expect(err).toBeInstanceOf(InvalidProjectIdError);
      expect(isPermanent(err)).toBe(true);
    }
  });

  it("fails without retry, naming the image, when the preview image is missing", async () => {
    const runtime = new DockerPreviewRuntime(env.docker, { ...env.options, image: "sitebuilder-previews-test/absent:nope" });
    const id = env.projectId();
    await env.writeSite(id);
    const err = await failure(runtime.ensureContainer(id));
    expect(err).toBeInstanceOf(DockerPermanentError);
    expect((err as Error).message).toBe(`docker: create container preview-${id} failed: image sitebuilder-previews-test/absent:nope not found`);
    await expect(env.docker.getContainer(`preview-${id}`).inspect()).rejects.toMatchObject({ statusCode: 404 });
  });

  it("creates the preview network once, labelled, even when asked concurrently", async () => {
    const options = { ...env.options, network: `${env.options.network}-x` };
    const runtimes = Array.from({ length: 5 }, () => new DockerPreviewRuntime(env.docker, options));
    try {
      await Promise.all(runtimes.map((r) => r.ensureNetwork()));
      const nets = await env.docker.listNetworks({ filters: { name: [options.network] } });
      const exact = nets.filter((n) => n.Name === options.network);
      expect(exact).toHaveLength(1);
      expect(exact[0]!.Labels).toMatchObject({ [LABELS.MANAGED]: "true", [LABELS.OWNER]: "previews", [TEST_LABEL]: env.runId });
    } finally {
      const nets = await env.docker.listNetworks({ filters: { name: [options.network], label: [`${TEST_LABEL}=${env.runId}`] } });
      await Promise.all(nets.filter((n) => n.Name === options.network).map((n) => env.docker.getNetwork(n.Id).remove()));
    }
  });
});

describe("probeReady and logTail on a real engine", () => {
  let env: DockerTestEnv;
  beforeAll(async () => {
    env = await createDockerTestEnv();
  });
  afterAll(async () => {
    await env?.cleanup();
  });

  const launch = async (kind: Parameters<DockerTestEnv["writeSite"]>[1], prefix: string) => {
    const id = env.projectId(prefix);
    await env.writeSite(id, kind);
    const { containerId } = await env.runtime.ensureContainer(id);
    await env.start(id);
    return { id, containerId };
  };

  it("is waiting within a short slice while the dev server does not listen", async () => {
    const { id } = await launch("silent", "silent");
    const started = Date.now();
    expect(await env.runtime.probeReady(id, 300)).toEqual({ state: "waiting" });
    expect(Date.now() - started).toBeLessThan(10_000);
    // Still running: the slice decides nothing about the container.
    expect((await env.docker.getContainer(`preview-${id}`).inspect()).State.Running).toBe(true);
    expect(await env.runtime.logTail(id)).toBe("compiling...\n");
  });

  it("becomes ready across short slices for a slow dev server", async () => {
    const { id, containerId } = await launch("slow", "slow");
    expect(await probeUntilSettled(env.runtime, id)).toEqual({ state: "ready", url: `http://${id}.preview.localhost`, containerId });
  });

  it("is down, with the exit code, when the process exits; logTail has both log streams", async () => {
    const { id } = await launch("exit", "exit");
    const result = await probeUntilSettled(env.runtime, id, 10_000, 3);
    expect(result.state).toBe("down");
    if (result.state !== "down") return;
    expect(result.reason).toBe(`container preview-${id} exited with code 3 before answering HTTP on port 3000`);
    // Both streams, but not necessarily in the order written: the engine copies them separately.
    const logTail = await env.runtime.logTail(id);
    expect(logTail).toContain("booting preview\n");
    expect(logTail).toContain("Error: Cannot find module next\n");
    expect(logTail).toHaveLength("booting preview\nError: Cannot find module next\n".length);
  });

  it("is down when the container is gone or was never started", async () => {
    const none = env.projectId("none");
    expect(await env.runtime.probeReady(none, 1_000)).toEqual({ state: "down", reason: `container preview-${none} is gone` });
    const created = env.projectId("created");
    await env.writeSite(created);
    await env.runtime.ensureContainer(created);
    expect(await env.runtime.probeReady(created, 1_000)).toEqual({
      state: "down",
      reason: `container preview-${created} has not been started`,
    });
  });

  it("returns waiting promptly when its signal aborts, whatever the slice", async () => {
    const { id } = await launch("silent", "abort");
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 200);
    const started = Date.now();
    try {
      expect(await env.runtime.probeReady(id, 120_000, controller.signal)).toEqual({ state: "waiting" });
    } finally {
      clearTimeout(timer);
    }
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(await env.runtime.probeReady(id, 120_000, AbortSignal.abort())).toEqual({ state: "waiting" });
  });

  it("logTail is empty when there is no container", async () => {
    expect(await env.runtime.logTail(env.projectId("nothing"))).toBe("");
  });

  it("logs one debug line per Docker call, with the project and container ids", async () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: "debug" }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const runtime = new DockerPreviewRuntime(env.docker, env.options, log);
    const id = env.projectId("traced");
    await env.writeSite(id);
    const { containerId } = await runtime.ensureContainer(id);
    await runtime.start(id, await env.folderOf(id));
    expect((await probeUntilSettled(runtime, id)).state).toBe("ready");
    await runtime.logTail(id);
    await runtime.stop(id);
    await runtime.remove(id);

    const calls = lines.filter((l) => typeof l["call"] === "string" && String(l["call"]).startsWith("container."));
    const seen = new Set(calls.map((l) => l["call"]));
    for (const verb of ["inspect", "create", "start", "logs", "stop", "remove"]) expect(seen).toContain(`container.${verb}`);
    for (const line of calls) {
      expect(line["projectId"]).toBe(id);
      expect(line["level"]).toBe(20); // debug
      // Only the very first inspect, before the container exists, has no id to give.
      if (line["msg"] === "docker call") expect(line["containerId"]).toBe(containerId);
      else expect(line).toMatchObject({ call: "container.inspect", status: 404, container: `preview-${id}` });
    }
  });
});

describe("foreign containers are never touched", () => {
  let env: DockerTestEnv;
  beforeAll(async () => {
    env = await createDockerTestEnv();
    await env.runtime.ensureNetwork();
  });
  afterAll(async () => {
    await env?.cleanup();
  });

  it.each([
    ["no labels", {}],
    ["no project id label", { [LABELS.MANAGED]: "true", [LABELS.OWNER]: "previews" }],
    ["another project's id", { [LABELS.MANAGED]: "true", [LABELS.OWNER]: "previews", [LABELS.PROJECT_ID]: "someone" }],
    ["no owner label", { [LABELS.MANAGED]: "true", [LABELS.PROJECT_ID]: "$ID" }],
    ["managed=false", { [LABELS.MANAGED]: "false", [LABELS.OWNER]: "previews", [LABELS.PROJECT_ID]: "$ID" }],
  ])("refuses a container with %s under the preview's name, everywhere", async (_what, template: Record<string, string>) => {
    const id = env.projectId("foreign");
    await env.writeSite(id);
    const labels = Object.fromEntries(Object.entries(template).map(([k, v]) => [k, v === "$ID" ? id : v]));
    const foreign = await env.docker.createContainer({
      name: `preview-${id}`,
      Image: env.image,
      Cmd: ["/bin/busybox", "sleep", "3600"],
      Labels: { ...labels, [TEST_LABEL]: env.runId },
      HostConfig: { NetworkMode: env.options.network, Init: true },
    });
    await foreign.start();
    const before = await foreign.inspect();

    for (const [verb, action] of [
      ["create", () => env.runtime.ensureContainer(id)],
      ["start", () => env.start(id)],
      ["probe", () => env.runtime.probeReady(id, 500)],
      ["stop", () => env.runtime.stop(id)],
      ["remove", () => env.runtime.remove(id)],
    ] as const) {
      const err = await failure(action());
      expect(err).toBeInstanceOf(ForeignContainerError);
      expect(isPermanent(err)).toBe(true);
      expect((err as Error).message).toMatch(new RegExp(`^docker: ${verb} container preview-${id} failed: .*not managed by "previews" for project ${id}`));
    }
    // Its logs are not ours to read either.
    expect(await env.runtime.logTail(id)).toBe("");

    const after = await foreign.inspect();
    expect(after.Id).toBe(before.Id);
    expect(after.State.Running).toBe(true);
    expect(after.State.StartedAt).toBe(before.State.StartedAt);
  });

  it("concurrent ensures against a foreign name all fail permanently, and nothing is created", async () => {
    const id = env.projectId("foreign-race");
    await env.writeSite(id);
    await env.docker.createContainer({
      name: `preview-${id}`,
      Image: env.image,
      Cmd: ["/bin/busybox", "sleep", "3600"],
      Labels: { [TEST_LABEL]: env.runId },
      HostConfig: { NetworkMode: env.options.network, Init: true },
    });
    const results = await Promise.all(Array.from({ length: 5 }, () => failure(env.runtime.ensureContainer(id))));
    for (const err of results) expect(err).toBeInstanceOf(ForeignContainerError);
    const listed = await env.docker.listContainers({ all: true, filters: { name: [`preview-${id}`] } });
    expect(listed).toHaveLength(1);
  });

  it("another instance's preview is not ours", async () => {
    const other = new DockerPreviewRuntime(env.docker, { ...env.options, instanceId: "someone-else" });
    const mine = env.projectId();
    await env.writeSite(mine);
    await env.runtime.ensureContainer(mine);
    await env.start(mine);
    for (const action of [() => other.ensureContainer(mine), () => other.start(mine, "0:0"), () => other.stop(mine), () => other.remove(mine), () => other.probeReady(mine, 200)]) {
      expect(await failure(action())).toBeInstanceOf(ForeignContainerError);
    }
    expect(await other.logTail(mine)).toBe("");
    expect((await env.docker.getContainer(`preview-${mine}`).inspect()).State.Running).toBe(true);
  });
});

describe("concurrent creates converge", () => {
  let env: DockerTestEnv;
  beforeAll(async () => {
    env = await createDockerTestEnv();
  });
  afterAll(async () => {
    await env?.cleanup();
  });

  const ROUNDS = 10;
  const CALLERS = 10;

  it(`${ROUNDS} rounds of ${CALLERS} concurrent ensures of a new project: all succeed, with one container`, async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const id = env.projectId(`race${round}`);
      await env.writeSite(id);
      // Half share one runtime (one process), half have their own (other workers, cold caches).
      const callers = Array.from({ length: CALLERS }, (_, i) => (i % 2 ? env.runtime : new DockerPreviewRuntime(env.docker, env.options)));
      const settled = await Promise.allSettled(callers.map((r) => r.ensureContainer(id)));
      const failures = settled.flatMap((s) => (s.status === "rejected" ? [String((s.reason as Error)?.message ?? s.reason)] : []));
      expect(failures, `round ${round}`).toEqual([]);
      const ids = new Set(settled.map((s) => (s.status === "fulfilled" ? s.value.containerId : "")));
      expect(ids.size, `round ${round}`).toBe(1);
      const listed = await env.docker.listContainers({ all: true, filters: { name: [`preview-${id}`] } });
      expect(listed.map((c) => c.Id)).toEqual([...ids]);
    }
  });
});

describe("a preview network deleted behind the runtime's back", () => {
  let env: DockerTestEnv;
  beforeAll(async () => {
    env = await createDockerTestEnv();
  });
  afterAll(async () => {
    await env?.cleanup();
  });

  const removeNetwork = () => env.docker.getNetwork(env.options.network).remove();
  const networkLabels = async () => ((await env.docker.getNetwork(env.options.network).inspect()) as { Labels: Record<string, string> }).Labels;

  it("is recreated by the next create", async () => {
    await env.runtime.ensureNetwork();
    await removeNetwork();
    const id = env.projectId();
    await env.writeSite(id);
    const { containerId } = await env.runtime.ensureContainer(id);
    expect(await networkLabels()).toMatchObject({ [LABELS.MANAGED]: "true", [TEST_LABEL]: env.runId });
    await env.start(id);
    expect(await env.runtime.probeReady(id, 10_000)).toMatchObject({ state: "ready", containerId });
    await env.runtime.remove(id);
  });

  it("is recreated when a start finds it gone", async () => {
    const id = env.projectId();
    await env.writeSite(id);
    const { containerId } = await env.runtime.ensureContainer(id); // created, not started: not attached yet
    await removeNetwork();
    await env.start(id);
    expect(await networkLabels()).toMatchObject({ [LABELS.MANAGED]: "true" });
    expect(await env.runtime.probeReady(id, 10_000)).toMatchObject({ state: "ready", containerId });
  });
});

describe("DockerPreviewRuntime on a real engine (port routing)", () => {
  let env: DockerTestEnv;
  beforeAll(async () => {
    env = await createDockerTestEnv({ routing: "port" });
  });
  afterAll(async () => {
    await env?.cleanup();
  });

  it("publishes 3000 on a random loopback port and returns that URL", async () => {
    const id = env.projectId();
    await env.writeSite(id);
    await env.runtime.ensureContainer(id);
    await env.start(id);
    const ready = await env.runtime.probeReady(id, 10_000);
    expect(ready.state).toBe("ready");
    if (ready.state !== "ready") return;
    expect(ready.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const info = await env.docker.getContainer(ready.containerId).inspect();
    expect(info.HostConfig.PortBindings).toEqual({ "3000/tcp": [{ HostIp: "127.0.0.1", HostPort: "" }] });
    expect(Object.keys(info.Config.Labels).some((k) => k.startsWith("traefik."))).toBe(false);
    const res = await httpGet(`${ready.url}/`);
    expect(res.status).toBe(200);
    expect(res.body).toContain(`preview ${id}`);
  });
});

describe("a container of an earlier version is recreated, never started with its weaker spec", () => {
  let env: DockerTestEnv;
  beforeAll(async () => {
    env = await createDockerTestEnv();
    await env.runtime.ensureNetwork();
  });
  afterAll(async () => {
    await env?.cleanup();
  });

  it("ours by its labels, but root and a writable root file system: replaced by one with the current spec", async () => {
    const id = env.projectId("old");
    const site = await env.writeSite(id);
    const old = await env.docker.createContainer({
      name: `preview-${id}`,
      Image: env.image,
      Labels: { [TEST_LABEL]: env.runId, [LABELS.MANAGED]: "true", [LABELS.OWNER]: env.options.instanceId, [LABELS.PROJECT_ID]: id },
      HostConfig: { NetworkMode: env.options.network, Init: true, Mounts: [{ Type: "bind", Source: site, Target: "/app" }] },
    });
    const ensured = await env.runtime.ensureContainer(id);
    expect(ensured.containerId).not.toBe(old.id);
    await expect(old.inspect()).rejects.toMatchObject({ statusCode: 404 });
    const info = await env.docker.getContainer(ensured.containerId).inspect();
    expect(info.Config.User).toBe("1000:1000");
    expect(info.HostConfig.ReadonlyRootfs).toBe(true);
    // A container with the current spec is reused as it is.
    expect((await env.runtime.ensureContainer(id)).containerId).toBe(ensured.containerId);
  });
});
