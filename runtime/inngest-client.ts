/** Builds the Inngest client from the parsed config (never at import time). */
import { Inngest, type Logger } from "inngest";
import { APP_ID } from "../inngest.config.js";
import type { Config } from "./config.js";

/** The client's settings: the `inngest` group of the parsed config (described once, there). */
export type InngestSettings = Config["inngest"];

/**
 * Everything the SDK would otherwise read from `INNGEST_*` variables is passed explicitly, so
 * `runtime/config.ts` stays the one source of configuration.
 */
export function createInngest(settings: InngestSettings, logger?: Logger): Inngest {
  return new Inngest({
    id: APP_ID,
    isDev: settings.dev !== false,
    ...(typeof settings.dev === "string" ? { baseUrl: settings.dev } : {}),
    ...(settings.baseUrl ? { baseUrl: settings.baseUrl } : {}),
    ...(settings.eventKey ? { eventKey: settings.eventKey } : {}),
    ...(settings.signingKey ? { signingKey: settings.signingKey } : {}),
    ...(settings.signingKeyFallback ? { signingKeyFallback: settings.signingKeyFallback } : {}),
    ...(settings.env ? { env: settings.env } : {}),
    ...(logger ? { logger } : {}),
    checkpointing: settings.checkpointing,
  });
}

/**
 * A failure to send events to the Inngest server (down, unreachable, refusing the event key),
 * marked as an outage of a dependency: the HTTP routes that send (`POST /sweep`, the wake page)
 * answer 503 naming Inngest, as they do for Docker and the database, instead of a bare 500.
 */
export class InngestUnavailableError extends Error {
  override name = "InngestUnavailableError";
  readonly unavailable = "inngest";
  readonly publicReason = "events cannot be sent to the Inngest server; try again later";
}

/** `inngest.send(payload)`, its failure wrapped as `InngestUnavailableError` (with the cause). */
export async function sendEvents<T>(send: () => Promise<T>, what: string): Promise<T> {
  try {
    return await send();
  } catch (err) {
    throw new InngestUnavailableError(`inngest: send ${what} failed: ${(err as Error).message}`, { cause: err });
  }
}
