/**
 * One debug line per Docker call, so a run can be followed call by call (`LOG_LEVEL=debug`):
 * which call, for which project and container, how long it took and what status it failed with.
 * The container id is often only known from the answer (inspect by name, create), hence `idOf`.
 */
import type { Logger } from "pino";
import { statusOf } from "./errors.js";

export interface CallContext {
  projectId?: string;
  /** The container's name when it is addressed by name. */
  container?: string;
  containerId?: string;
  network?: string;
  image?: string;
}

export async function traced<T>(
  log: Logger | undefined,
  call: string,
  context: CallContext,
  run: () => Promise<T>,
  idOf?: (result: T) => string | undefined,
): Promise<T> {
  if (!log?.isLevelEnabled("debug")) return run();
  const started = performance.now();
  try {
    const result = await run();
    const containerId = idOf?.(result) ?? context.containerId;
    log.debug({ call, ...context, ...(containerId ? { containerId } : {}), ms: elapsed(started) }, "docker call");
    return result;
  } catch (err) {
    log.debug({ call, ...context, ms: elapsed(started), status: statusOf(err) ?? null, error: (err as Error)?.message }, "docker call failed");
    throw err;
  }
}

const elapsed = (started: number): number => Math.round((performance.now() - started) * 10) / 10;
