/**
 * The mount check without root (docker-compose.yml runs the service as 1000:1000, the preview
 * user): `mountedFolder` run in a process of the previews' own uid:gid, with no capability, reads
 * what a real, hardened preview (all capabilities dropped, no-new-privileges, read-only root,
 * started by the runtime) mounted; a process of another non-root uid cannot, and says why. The
 * reading processes are spawned through `setpriv` (util-linux) with the test's TypeScript loader.
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { previewUser } from "../../docker/isolation.js";
import { createDockerTestEnv, type DockerTestEnv } from "../helpers/docker.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** `mountedFolder(pid, containerId, "/app")` in a process of uid:gid, no supplementary groups. */
function mountedFolderAs(uid: number, gid: number, pid: number, containerId: string): unknown {
  const module = path.join(root, "docker/mounted-folder.ts");
  const script = `import { mountedFolder } from ${JSON.stringify(module)}; console.log(JSON.stringify(await mountedFolder(${pid}, ${JSON.stringify(containerId)}, "/app")));`;
  const res = spawnSync("setpriv", [`--reuid=${uid}`, `--regid=${gid}`, "--clear-groups", process.execPath, "--import", "tsx", "--input-type=module", "-e", script], {
    cwd: root, // where tsx resolves
    encoding: "utf8",
    timeout: 30_000,
  });
  if (res.status !== 0) throw new Error(`reading as ${uid}:${gid} failed (${res.status}): ${res.stderr}`);
  return JSON.parse(res.stdout.trim().split("\n").at(-1)!);
}

describe("the mount check as the previews' own uid, without root", () => {
  let env: DockerTestEnv;
  let pid: number;
  let containerId: string;
  let projectId: string;

  beforeAll(async () => {
    if (process.getuid?.() !== 0) throw new Error("this test switches users with setpriv: run the integration tier as root");
    env = await createDockerTestEnv();
    projectId = env.projectId("uid");
    await env.writeSite(projectId);
    ({ containerId } = await env.runtime.ensureContainer(projectId));
    await env.start(projectId);
    const info = await env.docker.getContainer(containerId).inspect();
    pid = info.State.Pid;
    expect(info.Config.User).toBe("1000:1000");
    expect(info.HostConfig.CapDrop).toEqual(["ALL"]);
  });
  afterAll(async () => {
    await env?.cleanup();
  });

  it("the preview's own uid:gid reads the folder the container mounted: the checked one", async () => {
    const { uid, gid } = previewUser(env.options);
    expect(mountedFolderAs(uid, gid, pid, containerId)).toEqual({ identity: await env.folderOf(projectId) });
  });

  it("another non-root uid cannot, and is told what it takes", () => {
    const { uid, gid } = previewUser(env.options);
    const answer = mountedFolderAs(uid + 1, gid, pid, containerId) as { unknown?: string };
    expect(answer.unknown).toMatch(/not permitted to look into the container's process \(EACCES\)/);
    expect(answer.unknown).toContain("the previews' own uid:gid");
  });
});
