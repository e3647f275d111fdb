/**
 * Whether a started preview answers HTTP, probed in bounded slices: a slice never outlasts its
 * budget (or its abort signal), so a durable step that probes stays short and the workflow
 * decides how long to keep trying. The container is re-inspected while probing, so a dev server
 * that exits (or a container removed meanwhile) is reported as down at once, not at the deadline.
 */
import http from "node:http";
import type { ContainerInspectInfo } from "dockerode";
import { PREVIEW_PORT } from "./container-spec.js";
import type { PreviewSettings } from "./settings.js";

/** Where this process can reach a dev server. */
export interface ProbeTarget {
  host: string;
  port: number;
}

export type SliceOutcome =
  | { state: "ready"; info: ContainerInspectInfo }
  | { state: "waiting" }
  /** `info` is the last inspect (null: the container is gone), for the log tail. */
  | { state: "down"; reason: string; info: ContainerInspectInfo | null };

/** Longest single HTTP attempt: a dev server that accepts but stalls is retried, not waited on. */
const ATTEMPT_MAX_MS = 2_000;
/** How often the container state is re-read while its target answers nothing. */
const INSPECT_EVERY_MS = 250;
const PAUSE_FIRST_MS = 5;
const PAUSE_MAX_MS = 100;

/** The published loopback port of the dev server (port routing), if any. */
export const hostPortOf = (info: ContainerInspectInfo): string | undefined => info.NetworkSettings.Ports?.[`${PREVIEW_PORT}/tcp`]?.[0]?.HostPort || undefined;

/**
 * The published port in port mode; otherwise the container's address on the preview network
 * (on a user-defined network the top-level `IPAddress` is empty). Null until the engine has
 * assigned it.
 */
export function probeTarget(info: ContainerInspectInfo, settings: Pick<PreviewSettings, "routing" | "network">): ProbeTarget | null {
  if (settings.routing === "port") {
    const hostPort = hostPortOf(info);
    return hostPort ? { host: "127.0.0.1", port: Number(hostPort) } : null;
  }
  const ip = info.NetworkSettings.Networks?.[settings.network]?.IPAddress;
  return ip ? { host: ip, port: PREVIEW_PORT } : null;
}

/** One `GET /`: true when the server answers with a status below 500 within `timeoutMs`. */
export function httpAnswers(target: ProbeTarget, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    let settled = false;
    const finish = (answered: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      req.destroy();
      resolve(answered);
    };
    const onAbort = () => finish(false);
    const req = http.get({ host: target.host, port: target.port, path: "/", agent: false }, (res) => {
      res.resume();
      finish((res.statusCode ?? 500) < 500);
    });
    req.on("error", () => finish(false));
    // One timer for connect and response together (the `timeout` option only covers idleness).
    const timer = setTimeout(() => finish(false), timeoutMs);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Resolves after `ms`, or as soon as `signal` aborts. */
function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

export interface SliceInput {
  /** Container name, for reasons. */
  name: string;
  sliceMs: number;
  signal?: AbortSignal | undefined;
  /** Inspects the container (null: gone). Its failures propagate: only the engine being unreachable throws. */
  inspect(): Promise<ContainerInspectInfo | null>;
  target(info: ContainerInspectInfo): ProbeTarget | null;
}

/**
 * Probes for at most `sliceMs` (plus the duration of one inspect), or until `signal` aborts:
 * `ready` as soon as the server answers, `down` as soon as the container is seen not running
 * or gone, `waiting` when the slice ran out or was aborted. An already-aborted signal returns
 * `waiting` without any call.
 */
export async function probeSlice(input: SliceInput): Promise<SliceOutcome> {
  const { name, signal } = input;
  if (signal?.aborted) return { state: "waiting" };
  // A non-finite budget (NaN, Infinity) would never run out: treat it as "no time to wait".
  const deadline = Date.now() + (Number.isFinite(input.sliceMs) ? Math.max(0, input.sliceMs) : 0);
  let info = await input.inspect();
  let inspectedAt = Date.now();
  let delay = PAUSE_FIRST_MS;
  for (;;) {
    if (!info) return { state: "down", reason: `container ${name} is gone`, info: null };
    if (!info.State.Running) return { state: "down", reason: notRunning(name, info), info };
    const target = input.target(info);
    if (target && (await httpAnswers(target, Math.max(1, Math.min(ATTEMPT_MAX_MS, deadline - Date.now())), signal))) {
      return { state: "ready", info };
    }
    if (signal?.aborted || Date.now() >= deadline) return { state: "waiting" };
    await pause(Math.min(delay, Math.max(0, deadline - Date.now())), signal);
    delay = Math.min(delay * 2, PAUSE_MAX_MS);
    if (signal?.aborted) return { state: "waiting" };
    // Without a target yet (address not assigned) every round re-reads it; otherwise the state is
    // re-read often enough to notice an exit quickly.
    if (!target || Date.now() - inspectedAt >= INSPECT_EVERY_MS) {
      info = await input.inspect();
      inspectedAt = Date.now();
    }
  }
}

function notRunning(name: string, info: ContainerInspectInfo): string {
  const state = info.State;
  if (state.Status === "created") return `container ${name} has not been started`;
  const oom = state.OOMKilled ? " (killed: out of memory)" : "";
  return `container ${name} exited with code ${state.ExitCode}${oom} before answering HTTP on port ${PREVIEW_PORT}`;
}
