/**
 * Pure unit tests (no engine) of the dockerode client a connection produces, read from the
 * client's modem: the connection is what the settings say, whatever DOCKER_* variables are set.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createDockerClient, dockerOptions } from "../../docker/client.js";

/** The modem fields that decide where requests go (docker-modem's own names). */
interface ModemFields {
  socketPath?: unknown;
  host?: string;
  port?: number | string;
  protocol?: string;
  username?: string;
  version?: string;
  ca?: unknown;
  cert?: unknown;
  key?: unknown;
  sshOptions?: Record<string, unknown>;
}
const modemOf = (conn: Parameters<typeof createDockerClient>[0]) => createDockerClient(conn).modem as unknown as ModemFields;

const pem = (label: string, body: string) => `-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`;
const PEMS = { "ca.pem": pem("CERTIFICATE", "Q0E="), "cert.pem": pem("CERTIFICATE", "Q0VSVA=="), "key.pem": pem("PRIVATE KEY", "S0VZ") };

let certDir: string;
beforeAll(async () => {
  certDir = await mkdtemp(path.join(os.tmpdir(), "sbp-certs-"));
  // Not parsed until a TLS connection is made: PEM-shaped markers are enough (docker-modem's
  // own DOCKER_CERT_PATH reading insists on the BEGIN/END lines).
  for (const [file, body] of Object.entries(PEMS)) await writeFile(path.join(certDir, file), body);
});
afterAll(async () => {
  await rm(certDir, { recursive: true, force: true });
});

const ENV_KEYS = ["DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CLIENT_TIMEOUT"] as const;
const savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
afterEach(() => {
  for (const k of ENV_KEYS) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
});

describe("createDockerClient", () => {
  it("unix: talks to the socket, plain HTTP, no host, no API version pinned", () => {
    const m = modemOf({ protocol: "unix", socketPath: "/run/user/1000/docker.sock" });
    expect(m.socketPath).toBe("/run/user/1000/docker.sock");
    expect(m.host).toBeUndefined();
    expect(m.protocol).toBe("http");
    expect(m.version).toBeUndefined();
    expect(m.ca).toBeUndefined();
  });

  it("tcp without TLS: plain HTTP to host:port", () => {
    const m = modemOf({ protocol: "tcp", host: "10.0.0.5", port: 2375, tlsVerify: false, certPath: null });
    expect(m).toMatchObject({ host: "10.0.0.5", port: 2375, protocol: "http" });
    expect(m.socketPath).toBeUndefined();
    expect(m.ca).toBeUndefined();
    expect(m.cert).toBeUndefined();
    expect(m.key).toBeUndefined();
    expect(m.version).toBeUndefined();
  });

  it("tcp with tlsVerify: HTTPS with ca.pem, cert.pem and key.pem from certPath", () => {
    const m = modemOf({ protocol: "tcp", host: "docker.internal", port: 2376, tlsVerify: true, certPath: certDir });
    expect(m).toMatchObject({ host: "docker.internal", port: 2376, protocol: "https" });
    expect(String(m.ca)).toBe(PEMS["ca.pem"]);
    expect(String(m.cert)).toBe(PEMS["cert.pem"]);
    expect(String(m.key)).toBe(PEMS["key.pem"]);
    expect(m.version).toBeUndefined();
  });

  it("tcp with tlsVerify fails at creation, naming the file, when a certificate is missing", () => {
    expect(() => createDockerClient({ protocol: "tcp", host: "h", port: 2376, tlsVerify: true, certPath: path.join(certDir, "nope") })).toThrow(
      `docker: TLS to h:2376 needs ${path.join(certDir, "nope", "ca.pem")}`,
    );
  });

  it("ssh: protocol ssh with host, port, user and the agent socket", () => {
    const m = modemOf({ protocol: "ssh", host: "builder.example", port: 2222, username: "deploy", agent: "/tmp/agent.sock" });
    expect(m).toMatchObject({ host: "builder.example", port: 2222, protocol: "ssh", username: "deploy" });
    expect(m.sshOptions).toMatchObject({ agent: "/tmp/agent.sock" });
    expect(m.socketPath).toBeUndefined();
    expect(m.version).toBeUndefined();
  });

  it("ssh without user or agent leaves them to ssh2", () => {
    const options = dockerOptions({ protocol: "ssh", host: "h", port: 22, username: null });
    expect(options.username).toBeUndefined();
    expect(options.sshOptions).toEqual({});
  });

  it("ignores DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH: the settings decide", () => {
    process.env.DOCKER_HOST = "tcp://elsewhere.example:2376";
    process.env.DOCKER_TLS_VERIFY = "1";
    process.env.DOCKER_CERT_PATH = certDir;
    process.env.DOCKER_CLIENT_TIMEOUT = "5";
    const unix = modemOf({ protocol: "unix", socketPath: "/var/run/docker.sock" });
    expect(unix.socketPath).toBe("/var/run/docker.sock");
    expect(unix.host).toBeUndefined();
    expect(unix.protocol).toBe("http");
    expect(unix.ca).toBeUndefined();
    expect(unix.cert).toBeUndefined();
    const tcp = modemOf({ protocol: "tcp", host: "10.0.0.5", port: 2375, tlsVerify: false, certPath: null });
    expect(tcp).toMatchObject({ host: "10.0.0.5", port: 2375, protocol: "http" });
    expect(tcp.key).toBeUndefined();
    expect((tcp as { timeout?: unknown }).timeout).toBeUndefined();
  });
});
