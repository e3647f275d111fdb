/**
 * What a running container really mounted, read from the host. The engine resolves a bind
 * mount's source path (following links) when it starts the container, after any check this
 * service can make; `/proc/<pid>/root/<dir>` is the container's own view of its file system, so
 * its `device:inode` is that of the directory the engine mounted, whatever path led there.
 *
 * This needs a view of the engine's processes: the service in the host's pid namespace (run on
 * the host, or in a container with `pid: host`) with the right to look into the preview's
 * process: root (CAP_SYS_PTRACE), or the same uid:gid as the preview, which holds no capability
 * (measured: test/docker/mounted-folder-uid.int.test.ts). Without it the answer says why it cannot tell, and nothing is guessed: the pid
 * is only trusted once `/proc/<pid>/cgroup` names the container.
 */
import { lstat, readFile } from "node:fs/promises";
import type { FolderIdentity } from "../functions/ports.js";

export type MountedFolder = { identity: FolderIdentity } | { unknown: string };

export async function mountedFolder(pid: number, containerId: string, dir: string, proc = "/proc"): Promise<MountedFolder> {
  // (proc: where the engine's processes are visible; "/proc" unless a test says otherwise.)
  if (!Number.isSafeInteger(pid) || pid <= 0) return { unknown: "the container has no running process" };
  const cgroup = await readFile(`${proc}/${pid}/cgroup`, "utf8").catch((err: NodeJS.ErrnoException) => err);
  if (cgroup instanceof Error) {
    return { unknown: `process ${pid} is not visible here (${cgroup.code ?? cgroup.message}): the service does not share the engine's pid namespace` };
  }
  if (!cgroup.includes(containerId)) {
    return { unknown: `process ${pid} here is not the container's: the service does not share the engine's pid namespace` };
  }
  // lstat: an absolute link there would resolve against this process's root, not the container's.
  const stat = await lstat(`${proc}/${pid}/root${dir}`, { bigint: true }).catch((err: NodeJS.ErrnoException) => err);
  if (stat instanceof Error) {
    const code = stat.code ?? stat.message;
    if (code === "EACCES" || code === "EPERM") return { unknown: `not permitted to look into the container's process (${code}): that needs root with CAP_SYS_PTRACE, or to run as the previews' own uid:gid` };
    return { unknown: `${dir} in the container cannot be read (${code})` };
  }
  return { identity: `${stat.dev}:${stat.ino}` };
}
