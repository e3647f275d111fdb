/** `npm start`: parse the environment, start the service, stop cleanly on SIGTERM/SIGINT. */
import { existsSync, realpathSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { ConfigError, loadConfig } from "./config.js";
import { startService, type RunningService } from "./service.js";

export async function main(env: Record<string, string | undefined> = process.env): Promise<RunningService> {
  // A local .env fills in what the environment does not set (it never overrides).
  if (env === process.env && existsSync(".env")) process.loadEnvFile(".env");
  let config;
  try {
    config = loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
  const service = await startService(config);
  const shutdown = (signal: string) => {
    service.log.info({ signal }, "shutting down");
    service.close().then(
      () => process.exit(0),
      (err: unknown) => {
        service.log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", shutdown);
  process.once("SIGINT", shutdown);
  return service;
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
if (invokedDirectly) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
