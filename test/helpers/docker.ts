/**
 * Docker fixtures for tests. Everything a test creates carries `TEST_LABEL=<run id>` (containers
 * inherit it from the stub image and get it from the runtime's extra labels; networks get it from
 * the runtime) and is removed by that label at the end. Nothing else is ever touched.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import Docker from "dockerode";
import { inject } from "vitest";
import { DockerPreviewRuntime } from "../../docker/docker-runtime.js";
import type { PreviewSettings } from "../../docker/settings.js";
import { LocalSiteFiles } from "../../storage/site-files.js";

export const TEST_LABEL = "sitebuilder.test-run";
/** The stub image of a test run: tagged by run id, so concurrent runs never remove each other's. */
export const stubImage = (runId: string): string => `sitebuilder-previews-test/stub:${runId}`;

declare module "vitest" {
  export interface ProvidedContext {
    testRunId: string;
  }
}

export const testDocker = (): Docker => new Docker();

/** What the stub image does at start: it runs `/app/start.sh` from the bind-mounted site. */
export const SITE_SCRIPTS = {
  /** Serves the site folder over HTTP on 3000 (the stand-in for `next dev`). */
  http: "exec /bin/busybox httpd -f -p 3000 -h /app\n",
  /** Prints to both streams and exits 3 before listening. */
  exit: "echo 'booting preview'\necho 'Error: Cannot find module next' >&2\nexit 3\n",
  /** Runs but never listens. */
  silent: "echo 'compiling...'\nexec /bin/busybox sleep 3600\n",
  /** Listens after a delay. */
  slow: "/bin/busybox sleep 1\nexec /bin/busybox httpd -f -p 3000 -h /app\n",
} as const;

export type SiteKind = keyof typeof SITE_SCRIPTS;

export interface DockerTestEnv {
  docker: Docker;
  /** The stub preview image of this run. */
  image: string;
  runId: string;
  storageRoot: string;
  /** The runtime's settings (stub image, this env's own network, the run label). */
  options: PreviewSettings;
  runtime: DockerPreviewRuntime;
  site: LocalSiteFiles;
  /** A fresh project id unique to this run. */
  projectId(prefix?: string): string;
  writeSite(projectId: string, kind?: SiteKind): Promise<string>;
  cleanup(): Promise<void>;
}

export async function createDockerTestEnv(overrides: Partial<PreviewSettings> = {}): Promise<DockerTestEnv> {
  const docker = testDocker();
  const runId = inject("testRunId");
  const suffix = randomBytes(3).toString("hex");
  const storageRoot = await mkdtemp(path.join(os.tmpdir(), "sbp-storage-"));
  const options: PreviewSettings = {
    instanceId: "previews",
    image: stubImage(runId),
    network: `sbp-test-${suffix}`,
    domain: "preview.localhost",
    routing: "traefik",
    memoryBytes: 64 * 1024 * 1024,
    nanoCpus: 500_000_000,
    pidsLimit: 64,
    storageHostPath: storageRoot,
    stopTimeoutSeconds: 5,
    extraLabels: { [TEST_LABEL]: runId },
    ...overrides,
  };
  let counter = 0;
  const env: DockerTestEnv = {
    docker,
    image: stubImage(runId),
    runId,
    storageRoot,
    options,
    runtime: new DockerPreviewRuntime(docker, options),
    site: new LocalSiteFiles(storageRoot),
    projectId: (prefix = "p") => `${prefix}-${suffix}-${++counter}`,
    async writeSite(projectId, kind = "http") {
      const dir = path.join(storageRoot, "projects", projectId, "site");
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, "start.sh"), SITE_SCRIPTS[kind]);
      await writeFile(path.join(dir, "index.html"), `<h1>preview ${projectId}</h1>\n`);
      return dir;
    },
    async cleanup() {
      await removeEnv(docker, runId, options.network);
      await rm(storageRoot, { recursive: true, force: true });
    },
  };
  return env;
}

/**
 * Removes this env's containers (those on its network that carry the run label) and its network.
 * Containers are matched by the run label AND the network, so parallel test files sharing a run
 * id do not remove each other's containers.
 */
async function removeEnv(docker: Docker, runId: string, network: string): Promise<void> {
  const containers = await docker.listContainers({ all: true, filters: { label: [`${TEST_LABEL}=${runId}`], network: [network] } });
  await Promise.all(containers.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
  const networks = await docker.listNetworks({ filters: { label: [`${TEST_LABEL}=${runId}`], name: [network] } });
  await Promise.all(networks.filter((n) => n.Name === network).map((n) => docker.getNetwork(n.Id).remove().catch(() => undefined)));
}

/** Removes everything a whole test run created (global teardown). */
export async function removeRun(docker: Docker, runId: string): Promise<{ containers: number; networks: number }> {
  const filter = { label: [`${TEST_LABEL}=${runId}`] };
  const containers = await docker.listContainers({ all: true, filters: filter });
  await Promise.all(containers.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
  const networks = await docker.listNetworks({ filters: filter });
  await Promise.all(networks.map((n) => docker.getNetwork(n.Id).remove().catch(() => undefined)));
  return { containers: containers.length, networks: networks.length };
}
