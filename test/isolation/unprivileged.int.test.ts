/**
 * Unprivileged previews, on the real engine with the stub image: the dev server runs as the
 * configured non-root uid:gid, the root file system is read-only, /tmp is a writable tmpfs
 * (HOME), what the preview writes on the bind-mounted site folder is owned by that uid on the
 * host, and the stub httpd still serves. Probes run inside the container (docker exec, which runs
 * as the container's user) and the dev server itself records who it runs as.
 */
import { stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PermanentError } from "../../functions/ports.js";
import { IsolationSettingError } from "../../docker/isolation.js";
import { createDockerTestEnv, execIn, probeUntilSettled, type DockerTestEnv } from "../helpers/docker.js";

const sh = (script: string) => ["/bin/busybox", "sh", "-c", script];

/** Records the dev server's own identity and HOME, then serves /app like the http stub. */
const START_RECORDING_IDENTITY = "/bin/busybox id -u > /tmp/server-uid\n/bin/busybox id -g > /tmp/server-gid\necho \"$HOME\" > /tmp/server-home\nexec /bin/busybox httpd -f -p 3000 -h /app\n";

/** chown needs root; the suite fails clearly instead of skipping (as the Docker tier does). */
function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new Error("test/isolation needs root (it chowns site folders and changes the host firewall); run the integration tier as root");
}

describe("unprivileged previews (default user 1000:1000)", () => {
  let env: DockerTestEnv;
  let id: string;
  let siteDir: string;
  let containerId: string;

  beforeAll(async () => {
    requireRoot();
    env = await createDockerTestEnv();
    id = env.projectId("unpriv");
    siteDir = await env.writeSite(id); // handed to 1000:1000, as the storage side prepares it
    await writeFile(path.join(siteDir, "start.sh"), START_RECORDING_IDENTITY);
    containerId = (await env.runtime.ensureContainer(id)).containerId;
    await env.start(id);
    expect(await probeUntilSettled(env.runtime, id)).toMatchObject({ state: "ready" });
  });
  afterAll(async () => {
    await env?.cleanup();
  });

  it("is created as 1000:1000 with a read-only root and a bounded tmpfs at /tmp", async () => {
    const info = await env.docker.getContainer(containerId).inspect();
    expect(info.Config.User).toBe("1000:1000");
    expect(info.Config.Env).toContain("HOME=/tmp");
    expect(info.HostConfig.ReadonlyRootfs).toBe(true);
    expect(info.HostConfig.Tmpfs).toEqual({ "/tmp": `rw,nosuid,nodev,size=${512 * 1024 * 1024},mode=1777` });
  });

  it("runs the dev server itself (not only exec'd commands) as uid 1000, gid 1000, HOME=/tmp", async () => {
    const res = await execIn(env.docker, containerId, sh("cat /tmp/server-uid /tmp/server-gid /tmp/server-home"));
    expect(res.code).toBe(0);
    expect(res.stdout.trim().split("\n")).toEqual(["1000", "1000", "/tmp"]);
    const id_ = await execIn(env.docker, containerId, ["/bin/busybox", "id", "-u"]);
    expect(id_.stdout.trim()).toBe("1000");
    expect(id_.stdout.trim()).not.toBe("0");
  });

  it("cannot write to the root file system, even where the mode would allow it", async () => {
    const res = await execIn(env.docker, containerId, sh("echo pwned > /pwned; echo rc=$?; echo x > /app/../etc-pwned 2>&1; echo rc2=$?"));
    expect(res.stdout).toContain("rc=1");
    expect(res.stdout).toContain("rc2=1");
    expect(res.stderr).toMatch(/Read-only file system|Permission denied/);
    // Read-only, not just unwritable for uid 1000: the mount itself is ro.
    const mounts = await execIn(env.docker, containerId, sh("/bin/busybox awk '$2==\"/\" {print $4}' /proc/mounts"));
    expect(mounts.stdout.trim().split(",")).toContain("ro");
  });

  it("can write to /tmp (a tmpfs, nosuid, nodev)", async () => {
    const res = await execIn(env.docker, containerId, sh("echo scratch > /tmp/t && cat /tmp/t && /bin/busybox awk '$2==\"/tmp\" {print $3, $4}' /proc/mounts"));
    expect(res.code).toBe(0);
    const [content, mount] = res.stdout.trim().split("\n");
    expect(content).toBe("scratch");
    expect(mount).toMatch(/^tmpfs rw,nosuid,nodev/);
  });

  it("writes files into /app that the host sees owned by 1000:1000", async () => {
    const res = await execIn(env.docker, containerId, sh("mkdir -p /app/.next && echo built > /app/.next/out.txt && echo hi > /app/written.txt"));
    expect(res.code).toBe(0);
    for (const file of ["written.txt", ".next/out.txt", ".next"]) {
      const st = await stat(path.join(siteDir, file));
      expect({ file, uid: st.uid, gid: st.gid }).toEqual({ file, uid: 1000, gid: 1000 });
    }
  });

  it("still serves HTTP to the host (the stub httpd as uid 1000 on port 3000)", async () => {
    const info = await env.docker.getContainer(containerId).inspect();
    const ip = info.NetworkSettings.Networks[env.options.network]!.IPAddress;
    const res = await fetch(`http://${ip}:3000/`, { signal: AbortSignal.timeout(5_000) });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain(`preview ${id}`);
  });
});

describe("unprivileged previews: folder preparation and settings", () => {
  let env: DockerTestEnv;
  beforeAll(async () => {
    requireRoot();
    env = await createDockerTestEnv({ user: "1234:2345" });
  });
  afterAll(async () => {
    await env?.cleanup();
  });

  it("runs as a configured uid:gid; a root-owned (unprepared) site folder is readable but not writable", async () => {
    const id = env.projectId("rootdir");
    const siteDir = await env.writeSite(id, "http", { owner: "root" });
    const { containerId } = await env.runtime.ensureContainer(id);
    await env.start(id);
    expect(await probeUntilSettled(env.runtime, id)).toMatchObject({ state: "ready" });
    const who = await execIn(env.docker, containerId, sh("/bin/busybox id -u; /bin/busybox id -g"));
    expect(who.stdout.trim().split("\n")).toEqual(["1234", "2345"]);
    const res = await execIn(env.docker, containerId, sh("echo x > /app/new.txt"));
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(/Permission denied/);
    await expect(stat(path.join(siteDir, "new.txt"))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it.each(["0:0", "0:1000", "1000:0", "node", "1000", "-1:5", "1000:1000:1"])("refuses the user %j permanently, before any create", async (user) => {
    const bad = await createDockerTestEnv({ user });
    try {
      const id = bad.projectId("baduser");
      await bad.writeSite(id, "http", { owner: "root" });
      const err = await bad.runtime.ensureContainer(id).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(IsolationSettingError);
      expect(err).toBeInstanceOf(PermanentError);
      await expect(bad.docker.getContainer(`preview-${id}`).inspect()).rejects.toMatchObject({ statusCode: 404 });
    } finally {
      await bad.cleanup();
    }
  });
});
