/** `npm start`: parse the environment, start the service, stop cleanly on SIGTERM/SIGINT. */
import { ConfigError, loadConfig } from "./config.js";
import { startService, type RunningService } from "./service.js";

export async function main(env: Record<string, string | undefined> = process.env): Promise<RunningService> {
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

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
