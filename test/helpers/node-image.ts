/**
 * Builds a preview image like `docker/preview-base` without a registry: `FROM node:20-alpine`
 * cannot be pulled here, so the base is made `FROM scratch` of the host's Node runtime (the `node`
 * binary, npm, and the shared libraries `ldd` lists for node and for the given native modules),
 * with static busybox for `/bin/sh` and the small tools the entrypoint uses. The rest of the image
 * is the real one: every instruction of `docker/preview-base/Dockerfile` after its base (WORKDIR,
 * the entrypoint, the next.config fragment, USER, ENV, ENTRYPOINT, CMD), with its own files.
 */
import { execFileSync } from "node:child_process";
import { cp, copyFile, mkdir, mkdtemp, readFile, realpath, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type Docker from "dockerode";
import { BUSYBOX } from "./stub-image.js";

export const PREVIEW_BASE_DIR = path.resolve(import.meta.dirname, "../../docker/preview-base");

/** Shared libraries (absolute paths, as the loader looks them up) that `ldd` lists for `files`. */
function sharedLibraries(files: string[]): string[] {
  const libs = new Set<string>();
  for (const file of files) {
    const out = execFileSync("ldd", [file], { encoding: "utf8" });
    for (const line of out.split("\n")) {
      // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
      const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
      if (m) libs.add(m[1]!);
    }
  }
  return [...libs].sort();
}

/**
 * The real Dockerfile with its base replaced: its `FROM` and the base's package installation go,
 * the scratch Node runtime comes first. Throws when the Dockerfile no longer has that shape, so a
 * change to it is noticed here instead of silently testing something else.
 */
export function scratchDockerfile(real: string, opts: { extraCaCerts?: string } = {}): string {
  // ARGs before FROM only parametrise the base, which is replaced.
  const lines = real.split("\n").filter((l, i, all) => !(/^ARG\s/i.test(l) && all.slice(i).some((x) => /^FROM\s/i.test(x))));
  const from = lines.findIndex((l) => /^FROM\s/i.test(l));
  if (from < 0 || lines.filter((l) => /^FROM\s/i.test(l)).length !== 1) throw new Error("docker/preview-base/Dockerfile: expected exactly one FROM");
  const rest = lines.slice(from + 1).filter((l) => !/^RUN\s+apk\s/i.test(l));
  if (rest.some((l) => /apk|apt-get/.test(l))) throw new Error("docker/preview-base/Dockerfile installs packages the scratch base cannot: update test/helpers/node-image.ts");
  return [
    "FROM scratch",
    "COPY rootfs/ /",
    // The busybox applets at their usual places (/bin/sh, /bin/rm, /usr/bin/env for `#!/usr/bin/env node` ...).
    'RUN ["/bin/busybox", "--install", "-s"]',
    // As in the node image: Docker fills the /tmp tmpfs from the image's /tmp, mode included, and
    // the build context's packing does not keep the sticky bit.
    'RUN ["/bin/busybox", "chmod", "1777", "/tmp"]',
    ...(opts.extraCaCerts ? [`ENV NODE_EXTRA_CA_CERTS=${opts.extraCaCerts}`] : []),
    ...rest,
  ].join("\n");
}

/**
 * Builds the image as `tag` with `labels` (inherited by its containers). `nativeModules`: native
 * addons the site loads (e.g. Next's SWC binary), whose libraries must be in the image too.
 */
export async function buildNodePreviewImage(docker: Docker, tag: string, labels: Record<string, string>, nativeModules: string[] = []): Promise<void> {
  const context = await mkdtemp(path.join(os.tmpdir(), "sbp-node-image-"));
  try {
    const rootfs = path.join(context, "rootfs");
    for (const dir of ["bin", "sbin", "usr/bin", "usr/sbin", "usr/lib/node_modules", "etc", "tmp", "app"]) await mkdir(path.join(rootfs, dir), { recursive: true });
    await copyFile(BUSYBOX, path.join(rootfs, "bin/busybox"));
    const node = await realpath(process.execPath);
    await copyFile(node, path.join(rootfs, "usr/bin/node"));
    // npm as the host has it (its own folder, no native code), linked as Debian and the node image link it.
    const npmCli = await realpath(execFileSync("sh", ["-c", "command -v npm"], { encoding: "utf8" }).trim());
    const npmDir = path.dirname(path.dirname(npmCli));
    await cp(npmDir, path.join(rootfs, "usr/lib/node_modules/npm"), { recursive: true, dereference: false });
    await symlink("../lib/node_modules/npm/bin/npm-cli.js", path.join(rootfs, "usr/bin/npm"));
    await symlink("../lib/node_modules/npm/bin/npx-cli.js", path.join(rootfs, "usr/bin/npx"));
    for (const lib of sharedLibraries([node, ...nativeModules])) {
      const target = path.join(rootfs, lib);
      await mkdir(path.dirname(target), { recursive: true });
      await copyFile(await realpath(lib), target); // the file, under the name the loader asks for
    }
    // The node image's users: root, and node (1000:1000, PREVIEW_USER's default).
    await writeFile(path.join(rootfs, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\n");
    await writeFile(path.join(rootfs, "etc/group"), "root:x:0:\nnode:x:1000:\n");
    // The host's Node trusts extra CAs (e.g. a TLS-intercepting proxy between this machine and the
    // npm registry): so does this copy of it, or `npm ci` in the preview fails on the certificate.
    const hostCa = process.env.NODE_EXTRA_CA_CERTS;
    const imageCa = "/etc/ssl/certs/host-extra-ca.crt";
    if (hostCa) {
      await mkdir(path.join(rootfs, "etc/ssl/certs"), { recursive: true });
      await copyFile(hostCa, path.join(rootfs, imageCa));
    }
    for (const file of ["entrypoint.sh", "next.config.fragment.mjs"]) await copyFile(path.join(PREVIEW_BASE_DIR, file), path.join(context, file));
    await writeFile(path.join(context, "Dockerfile"), scratchDockerfile(await readFile(path.join(PREVIEW_BASE_DIR, "Dockerfile"), "utf8"), hostCa ? { extraCaCerts: imageCa } : {}));

    const stream = await docker.buildImage({ context, src: ["Dockerfile", "entrypoint.sh", "next.config.fragment.mjs", "rootfs"] }, { t: tag, labels, rm: true, forcerm: true });
    const output = await new Promise<Array<{ error?: string; stream?: string }>>((resolve, reject) => {
      docker.modem.followProgress(stream, (err: Error | null, res: Array<{ error?: string }>) => (err ? reject(err) : resolve(res)));
    });
    const failed = output.find((o) => o.error);
    if (failed) throw new Error(`building ${tag} failed: ${failed.error}\n${output.map((o) => o.stream ?? "").join("")}`);
  } finally {
    await rm(context, { recursive: true, force: true });
  }
}
