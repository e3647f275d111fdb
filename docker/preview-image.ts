/**
 * The preview image (`PREVIEW_IMAGE`): whether the engine has it (readiness), and building it from
 * `docker/preview-base/` when it is missing (`npm run dev`). Previews cannot start without it:
 * a create fails with a 404 the containers module words as "image ... not found".
 */
import { readdir } from "node:fs/promises";
import path from "node:path";
import type Docker from "dockerode";
import type { Logger } from "pino";
import { DockerPermanentError, dockerError, statusOf } from "./errors.js";
import { traced } from "./trace.js";

/** The image's build context in this repository. */
export const PREVIEW_BASE_DIR = path.resolve(import.meta.dirname, "preview-base");

/** What to do about a missing image, in words an operator can act on. */
// Not "run npm run dev": this also shows under `npm run dev` after its own build failed (ops-fixes).
export const buildHint = (image: string): string =>
  `docker build -t ${image} docker/preview-base where its FROM image (PREVIEW_NODE_IMAGE) can be pulled (\`npm run dev\` tries that build at start-up and prints why it failed)`;

/** True when the engine has `image`; an unreachable engine throws (retryable). */
export async function imagePresent(docker: Docker, image: string, log?: Logger): Promise<boolean> {
  try {
    await traced(log, "image.inspect", { image }, () => docker.getImage(image).inspect());
    return true;
  } catch (err) {
    if (statusOf(err) === 404) return false;
    throw dockerError("inspect", `image ${image}`, err);
  }
}

/**
 * Readiness: resolves when the engine has `image`, else throws a `PermanentError` naming it and how
 * to build it (what `/readyz` shows).
 */
export async function assertImagePresent(docker: Docker, image: string, log?: Logger): Promise<void> {
  if (!(await imagePresent(docker, image, log))) throw new DockerPermanentError(`preview image ${image} not found: ${buildHint(image)}`, { status: 404 });
}

export type BuildOutcome = { outcome: "present" } | { outcome: "built"; ms: number } | { outcome: "failed"; reason: string };

/**
 * Builds `image` from `context` (default `docker/preview-base/`) unless the engine has it. Never
 * throws: a failed build (e.g. the base image cannot be pulled) or an unreachable engine is an
 * outcome with its reason, one line. `buildArgs` go to the Dockerfile's ARGs.
 */
export async function ensurePreviewImage(
  docker: Docker,
  image: string,
  opts: { context?: string; buildArgs?: Record<string, string>; log?: Logger } = {},
): Promise<BuildOutcome> {
  const context = opts.context ?? PREVIEW_BASE_DIR;
  try {
    if (await imagePresent(docker, image, opts.log)) return { outcome: "present" };
    const started = Date.now();
    const src = await readdir(context);
    const stream = await docker.buildImage({ context, src }, { t: image, rm: true, forcerm: true, ...(opts.buildArgs ? { buildargs: opts.buildArgs } : {}) });
    const output = await new Promise<Array<{ error?: string; errorDetail?: { message?: string } }>>((resolve, reject) => {
      docker.modem.followProgress(stream, (err: Error | null, res: Array<{ error?: string }>) => (err ? reject(err) : resolve(res)));
    });
    const failed = output.find((o) => o.error || o.errorDetail);
    if (failed) return { outcome: "failed", reason: oneLine(failed.error ?? failed.errorDetail?.message ?? "unknown error") };
    // A build that reports nothing wrong but left no image is a failure too.
    if (!(await imagePresent(docker, image, opts.log))) return { outcome: "failed", reason: "the build finished without an image" };
    return { outcome: "built", ms: Date.now() - started };
  } catch (err) {
    return { outcome: "failed", reason: oneLine(err instanceof Error ? err.message : String(err)) };
  }
}

const oneLine = (s: string): string => s.replace(/\s+/g, " ").trim().slice(0, 300);
