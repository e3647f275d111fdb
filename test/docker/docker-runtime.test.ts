import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NonRetriableError } from "inngest";
import { createDockerTestEnv, TEST_LABEL, type DockerTestEnv } from "../helpers/docker.js";
import { DockerPreviewRuntime } from "../../docker/docker-runtime.js";
import { LABELS } from "../../docker/labels.js";

async function httpGet(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  return { status: res.status, body: await res.text() };
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
    expect(ensured).toMatchObject({ created: true, running: false });

    const info = await env.docker.getContainer(`preview-${id}`).inspect();
    expect(info.Id).toBe(ensured.containerId);
    expect(info.Name).toBe(`/preview-${id}`);
    expect(info.Config.Image).toBe(env.image);
    expect(info.Config.Labels).toMatchObject({
      [LABELS.MANAGED]: "true",
      [LABELS.PROJECT_ID]: id,
      [LABELS.OWNER]: "previews",
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

    await env.runtime.start(id);
    const ready = await env.runtime.waitUntilReady(id, 10_000);
    expect(ready).toEqual({ ready: true, url: `http://${id}.preview.localhost`, containerId: ensured.containerId });

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
    await env.runtime.start(id);
    await env.runtime.start(id); // 304 from the engine: success
    const again = await env.runtime.ensureContainer(id);
    expect(again).toEqual({ containerId: first.containerId, created: false, running: true });
  });

  it("20 concurrent ensures of one project give one container", async () => {
    const id = env.projectId("race");
    await env.writeSite(id);
    const results = await Promise.all(Array.from({ length: 20 }, () => env.runtime.ensureContainer(id)));
    const ids = new Set(results.map((r) => r.containerId));
    expect(ids.size).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    const listed = await env.docker.listContainers({ all: true, filters: { name: [`preview-${id}`] } });
    expect(listed.map((c) => c.Id)).toEqual([...ids]);
  });

  it("reports a preview that exits, with its exit code and both log streams", async () => {
    const id = env.projectId("exit");
    await env.writeSite(id, "exit");
    await env.runtime.ensureContainer(id);
    await env.runtime.start(id);
    const result = await env.runtime.waitUntilReady(id, 10_000);
    expect(result.ready).toBe(false);
    if (result.ready) return;
    expect(result.reason).toBe(`container preview-${id} exited with code 3 before answering HTTP on port 3000`);
    expect(result.logTail).toContain("booting preview");
    expect(result.logTail).toContain("Error: Cannot find module next");
  });

  it("reports a preview that never answers within the timeout", async () => {
    const id = env.projectId("silent");
    await env.writeSite(id, "silent");
    await env.runtime.ensureContainer(id);
    await env.runtime.start(id);
    const started = Date.now();
    const result = await env.runtime.waitUntilReady(id, 1_500);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_400);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(result).toEqual({ ready: false, reason: `container preview-${id} did not answer HTTP on port 3000 within 2s`, logTail: "compiling...\n" });
  });

  it("waits for a slow dev server", async () => {
    const id = env.projectId("slow");
    await env.writeSite(id, "slow");
    await env.runtime.ensureContainer(id);
    await env.runtime.start(id);
    const result = await env.runtime.waitUntilReady(id, 10_000);
    expect(result.ready).toBe(true);
  });

  it("stop and remove treat stopped and missing containers as outcomes", async () => {
    const id = env.projectId();
    await env.writeSite(id);
    expect(await env.runtime.stop(id)).toBe("absent");
    expect(await env.runtime.remove(id)).toBe("absent");
    const { containerId } = await env.runtime.ensureContainer(id);
    expect(await env.runtime.stop(id)).toBe("already-stopped"); // created, never started
    await env.runtime.start(id);
    const t0 = Date.now();
    expect(await env.runtime.stop(id)).toBe("stopped");
    expect(Date.now() - t0).toBeLessThan(3_000); // Init forwards SIGTERM: no full timeout
    expect((await env.docker.getContainer(containerId).inspect()).State.Running).toBe(false);
    expect(await env.runtime.stop(id)).toBe("already-stopped");
    await env.runtime.start(id);
    expect(await env.runtime.remove(id)).toBe("removed"); // running: force-removed
    await expect(env.docker.getContainer(containerId).inspect()).rejects.toMatchObject({ statusCode: 404 });
    expect(await env.runtime.remove(id)).toBe("absent");
    expect(await env.runtime.stop(id)).toBe("absent");
  });

  it("start does not re-create a container removed since it was ensured", async () => {
    const id = env.projectId();
    await env.writeSite(id);
    const first = await env.runtime.ensureContainer(id);
    await env.docker.getContainer(first.containerId).remove({ force: true });
    const err = await env.runtime.start(id).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(NonRetriableError);
    expect((err as Error).message).toBe(`docker: start container preview-${id} failed: it no longer exists`);
    await expect(env.docker.getContainer(`preview-${id}`).inspect()).rejects.toMatchObject({ statusCode: 404 });
  });

  it("never touches a container it does not manage", async () => {
    const id = env.projectId("foreign");
    await env.writeSite(id);
    const foreign = await env.docker.createContainer({
      name: `preview-${id}`,
      Image: env.image,
      Cmd: ["/bin/busybox", "sleep", "3600"],
      Labels: { [TEST_LABEL]: env.runId },
      HostConfig: { NetworkMode: env.options.network, Init: true },
    });
    await foreign.start();
    for (const action of [() => env.runtime.ensureContainer(id), () => env.runtime.start(id), () => env.runtime.stop(id), () => env.runtime.remove(id)]) {
      const err = await action().then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(NonRetriableError);
      expect((err as Error).message).toContain(`container preview-${id}`);
      expect((err as Error).message).toContain("not managed");
    }
    const info = await foreign.inspect();
    expect(info.State.Running).toBe(true);
    // Another instance's preview is not ours either.
    const other = new DockerPreviewRuntime(env.docker, { ...env.options, instanceId: "someone-else" });
    const mine = env.projectId();
    await env.writeSite(mine);
    await env.runtime.ensureContainer(mine);
    await expect(other.remove(mine)).rejects.toBeInstanceOf(NonRetriableError);
    await expect(env.docker.getContainer(`preview-${mine}`).inspect()).resolves.toBeTruthy();
  });

  it("fails without retry, naming the image, when the preview image is missing", async () => {
    const runtime = new DockerPreviewRuntime(env.docker, { ...env.options, image: "sitebuilder-previews-test/absent:nope" });
    const id = env.projectId();
    await env.writeSite(id);
    const err = await runtime.ensureContainer(id).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(NonRetriableError);
    expect((err as Error).message).toContain("image sitebuilder-previews-test/absent:nope not found");
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
      expect(exact[0]!.Labels).toMatchObject({ [LABELS.MANAGED]: "true", [TEST_LABEL]: env.runId });
    } finally {
      const nets = await env.docker.listNetworks({ filters: { name: [options.network], label: [`${TEST_LABEL}=${env.runId}`] } });
      await Promise.all(nets.filter((n) => n.Name === options.network).map((n) => env.docker.getNetwork(n.Id).remove()));
    }
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
    await env.runtime.start(id);
    const ready = await env.runtime.waitUntilReady(id, 10_000);
    expect(ready.ready).toBe(true);
    if (!ready.ready) return;
    expect(ready.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const info = await env.docker.getContainer(ready.containerId).inspect();
    expect(info.HostConfig.PortBindings).toEqual({ "3000/tcp": [{ HostIp: "127.0.0.1", HostPort: "" }] });
    expect(Object.keys(info.Config.Labels).some((k) => k.startsWith("traefik."))).toBe(false);
    const res = await httpGet(`${ready.url}/`);
    expect(res.status).toBe(200);
    expect(res.body).toContain(`preview ${id}`);
  });
});
