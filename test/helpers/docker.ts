/**
 * Docker fixtures for tests. Everything a test creates carries `TEST_LABEL=<run id>` (containers
 * inherit it from the stub image and get it from the runtime's extra labels; networks get it from
 * the runtime) and is removed by that label at the end. Nothing else is ever touched.
 */
import { chown, lstat, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import Docker from "dockerode";
import { inject } from "vitest";
import { DockerPreviewRuntime } from "../../docker/docker-runtime.js";
import { HostFirewall } from "../../docker/host-firewall.js";
import { BRIDGE_OPTIONS, bridgeName, previewUser } from "../../docker/isolation.js";
import type { PreviewSettings } from "../../docker/settings.js";
import { LocalSiteFiles } from "../../storage/site-files.js";
import type { ProbeResult, StartResult } from "../../functions/ports.js";

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
  /**
   * Writes the site folder of a project, then hands it to the preview user (`chown -R uid:gid`)
   * the way the storage side prepares it (pass `owner: "root"` to keep it root-owned).
   */
  writeSite(projectId: string, kind?: SiteKind, opts?: { owner?: "preview" | "root" }): Promise<string>;
  /** The identity (`device:inode`) of a project's site folder now; "0:0" when it has none. */
  folderOf(projectId: string): Promise<string>;
  /** `runtime.start` with the site folder as it is now (what a launch's check would pass). */
  start(projectId: string): Promise<StartResult>;
  /**
   * A container under the project's preview name that is not ours (only the test label: no
   * managed or owner label), created, not started, on this env's network.
   */
  createForeign(projectId: string): Promise<Docker.Container>;
  cleanup(): Promise<void>;
}

/** @param engine another engine than the shared one (a private dockerd of a fault test). */
export async function createDockerTestEnv(overrides: Partial<PreviewSettings> = {}, engine?: Docker): Promise<DockerTestEnv> {
  const docker = engine ?? testDocker();
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
    async writeSite(projectId, kind = "http", opts = {}) {
      const dir = path.join(storageRoot, "projects", projectId, "site");
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, "start.sh"), SITE_SCRIPTS[kind]);
      await writeFile(path.join(dir, "index.html"), `<h1>preview ${projectId}</h1>\n`);
      if ((opts.owner ?? "preview") === "preview" && process.getuid?.() === 0) {
        const { uid, gid } = previewUser(options);
        await chownTree(dir, uid, gid);
      }
      return dir;
    },
    async folderOf(projectId) {
      const stat = await lstat(path.join(storageRoot, "projects", projectId, "site"), { bigint: true }).catch(() => null);
      return stat ? `${stat.dev}:${stat.ino}` : "0:0";
    },
    async start(projectId) {
      return env.runtime.start(projectId, await env.folderOf(projectId));
    },
    createForeign(projectId) {
      return docker.createContainer({
        name: `preview-${projectId}`,
        Image: stubImage(runId),
        Cmd: ["/bin/busybox", "sleep", "3600"],
        Labels: { [TEST_LABEL]: runId },
        HostConfig: { NetworkMode: options.network, Init: true },
      });
    },
    async cleanup() {
      await removeEnv(docker, runId, options);
      await rm(storageRoot, { recursive: true, force: true });
    },
  };
  return env;
}

/** `chown -R` without following symbolic links (the test's own fresh folder). */
async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await chown(dir, uid, gid);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const child = path.join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(child, uid, gid);
    else if (entry.isFile()) await chown(child, uid, gid);
  }
}

/**
 * Removes this env's containers (those on its network that carry the run label), its network and
 * the host firewall rules of its bridge (only rules carrying that bridge's comment). Containers
 * are matched by the run label AND the network, so parallel test files sharing a run id do not
 * remove each other's containers.
 */
async function removeEnv(docker: Docker, runId: string, options: PreviewSettings): Promise<void> {
  const network = options.network;
  const containers = await docker.listContainers({ all: true, filters: { label: [`${TEST_LABEL}=${runId}`], network: [network] } });
  await Promise.all(containers.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
  const networks = await docker.listNetworks({ filters: { label: [`${TEST_LABEL}=${runId}`], name: [network] } });
  await Promise.all(networks.filter((n) => n.Name === network).map((n) => docker.getNetwork(n.Id).remove().catch(() => undefined)));
  if (options.hostFirewall === "iptables") await removeFirewallRules(bridgeName(options));
}

/** Deletes the firewall rules of one test bridge (by its comment); never fails the teardown. */
export async function removeFirewallRules(bridge: string): Promise<number> {
  return HostFirewall.forBridge(bridge, []).remove().catch(() => 0);
}

/** Removes everything a whole test run created (global teardown). */
export async function removeRun(docker: Docker, runId: string): Promise<{ containers: number; networks: number }> {
  const filter = { label: [`${TEST_LABEL}=${runId}`] };
  const containers = await docker.listContainers({ all: true, filters: filter });
  await Promise.all(containers.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
  const networks = await docker.listNetworks({ filters: filter });
  await Promise.all(networks.map((n) => docker.getNetwork(n.Id).remove().catch(() => undefined)));
  // Rules of this run's bridges (named by each network's bridge option), if any were left.
  if (process.getuid?.() === 0) {
    for (const n of networks) {
      const bridge = n.Options?.[BRIDGE_OPTIONS.NAME];
      if (bridge) await removeFirewallRules(bridge);
    }
  }
  return { containers: containers.length, networks: networks.length };
}

/** Probes in short slices, as the workflow does, until the result is not `waiting` (at most `maxSlices`). */
export async function probeUntilSettled(runtime: DockerPreviewRuntime, id: string, maxSlices = 60): Promise<ProbeResult> {
  for (let i = 0; i < maxSlices; i++) {
    const r = await runtime.probeReady(id, 250);
    if (r.state !== "waiting") return r;
  }
  return { state: "waiting" };
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command in a running container (as its configured user), bounded by `timeoutMs`. */
export async function execIn(docker: Docker, containerId: string, cmd: string[], timeoutMs = 10_000): Promise<ExecResult> {
  const exec = await docker.getContainer(containerId).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const sink = (into: Buffer[]) =>
    new Writable({
      write(chunk: Buffer, _enc, done) {
        into.push(chunk);
        done();
      },
    });
  docker.modem.demuxStream(stream, sink(out), sink(err));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.destroy();
      reject(new Error(`exec ${cmd.join(" ")} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    stream.once("end", done);
    stream.once("close", done);
    stream.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
  const info = await exec.inspect();
  return { code: info.ExitCode ?? -1, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") };
}

export interface TcpProbe {
  /** An HTTP status line came back. */
  answered: boolean;
  /** nc's exit code and what it printed (e.g. "Connection refused", "timed out"). */
  code: number;
  output: string;
  /** What came back on stdout (the HTTP answer, if any). */
  body: string;
  ms: number;
}

/**
 * `GET /` to host:port from inside a container with busybox nc (connect and idle timeout 2 s).
 * Host and port are passed as arguments, never interpolated into the shell text.
 */
export async function probeFromContainer(docker: Docker, containerId: string, host: string, port: number | string): Promise<TcpProbe> {
  const started = Date.now();
  const res = await execIn(docker, containerId, [
    "/bin/busybox",
    "sh",
    "-c",
    `printf 'GET / HTTP/1.0\r\n\r\n' | /bin/busybox nc -w 2 "$0" "$1"`,
    host,
    String(port),
  ]);
  const output = (res.stdout + res.stderr).trim();
  return { answered: /^HTTP\/1\.[01] \d{3}/m.test(res.stdout), code: res.code, output: output.slice(0, 200), body: res.stdout, ms: Date.now() - started };
}
