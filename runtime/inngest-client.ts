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
