/**
 * Builds the stub preview image `FROM scratch` (no registry here): the static busybox binary,
 * started as `/bin/busybox sh /app/start.sh`, so each test's site folder decides what the
 * "dev server" does. Labels given here are inherited by every container of the image.
 */
import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type Docker from "dockerode";

export const BUSYBOX = "/bin/busybox";

export async function buildStubImage(docker: Docker, tag: string, labels: Record<string, string>): Promise<void> {
  const context = await mkdtemp(path.join(os.tmpdir(), "sbp-image-"));
  try {
    await copyFile(BUSYBOX, path.join(context, "busybox"));
    await writeFile(
      path.join(context, "Dockerfile"),
      ["FROM scratch", "COPY busybox /bin/busybox", "WORKDIR /app", "EXPOSE 3000", 'CMD ["/bin/busybox", "sh", "/app/start.sh"]', ""].join("\n"),
    );
    const stream = await docker.buildImage({ context, src: ["Dockerfile", "busybox"] }, { t: tag, labels, rm: true, forcerm: true });
    const output = await new Promise<Array<{ error?: string }>>((resolve, reject) => {
      docker.modem.followProgress(stream, (err: Error | null, res: Array<{ error?: string }>) => (err ? reject(err) : resolve(res)));
    });
    const failed = output.find((o) => o.error);
    if (failed) throw new Error(`building ${tag} failed: ${failed.error}`);
  } finally {
    await rm(context, { recursive: true, force: true });
  }
}
