/**
 * `mountedFolder` on a stand-in `/proc` (a temporary folder laid out like it): when it can tell
 * what a container mounted, and the reasons it gives when it cannot. (On the real `/proc`, with
 * real containers: docker-runtime.int.test.ts and runtime/mount-checked.int.test.ts.)
 */
import { mkdir, mkdtemp, rm, stat, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mountedFolder } from "../../docker/mounted-folder.js";

let proc: string;
const ID = "f".repeat(64);

beforeEach(async () => {
  proc = await mkdtemp(path.join(os.tmpdir(), "sbp-proc-"));
});
afterEach(async () => {
  await rm(proc, { recursive: true, force: true });
});

async function processOf(pid: number, cgroup: string): Promise<string> {
  const app = path.join(proc, String(pid), "root", "app");
  await mkdir(app, { recursive: true });
  await writeFile(path.join(proc, String(pid), "cgroup"), cgroup);
  return app;
}

describe("mountedFolder", () => {
  it("gives the device:inode of the folder at that path in the container's root", async () => {
    const app = await processOf(42, `0::/system.slice/docker-${ID}.scope\n`);
    const s = await stat(app, { bigint: true });
    expect(await mountedFolder(42, ID, "/app", proc)).toEqual({ identity: `${s.dev}:${s.ino}` });
  });

  it("does not trust a pid whose cgroup does not name the container (another pid namespace)", async () => {
    await processOf(42, "0::/user.slice/session-1.scope\n");
    expect(await mountedFolder(42, ID, "/app", proc)).toEqual({ unknown: expect.stringMatching(/process 42 here is not the container's: the service does not share the engine's pid namespace/) });
  });

  it("says so when the process is not visible", async () => {
    expect(await mountedFolder(42, ID, "/app", proc)).toEqual({ unknown: expect.stringMatching(/process 42 is not visible here \(ENOENT\)/) });
  });

  it("says so for a container without a process (pid 0)", async () => {
    expect(await mountedFolder(0, ID, "/app", proc)).toEqual({ unknown: "the container has no running process" });
  });

  it("never follows a link at the mount point (it would resolve against this process's root)", async () => {
    await processOf(42, `0::/docker/${ID}\n`);
    const root = path.join(proc, "42", "root");
    await rm(path.join(root, "app"), { recursive: true });
    await symlink("/", path.join(root, "app"));
    const s = await stat("/", { bigint: true });
    const result = await mountedFolder(42, ID, "/app", proc);
    expect(result).not.toEqual({ identity: `${s.dev}:${s.ino}` });
  });
});
