/**
 * Opening a database: picks the driver named by the settings. The only module that imports
 * every driver; the caller owns (and closes) what it returns. Nothing here is a singleton.
 */
import path from "node:path";
import type { Database } from "./database.js";
import { openNeon } from "./drivers/neon.js";
import { openPg } from "./drivers/pg.js";
import { openPglite } from "./drivers/pglite.js";
import { migrate } from "./migrate.js";
import type { DatabaseSettings } from "./settings.js";

/** Connects without migrating. pg and Neon connect lazily (on the first query); PGlite opens now. */
export async function connect(settings: DatabaseSettings): Promise<Database> {
  switch (settings.driver) {
    case "pglite":
      return openPglite(path.join(settings.dataPath, "pglite"));
    case "pg":
    case "neon": {
      if (!settings.url) throw new Error(`database: the ${settings.driver} driver needs a DATABASE_URL`);
      return settings.driver === "pg" ? openPg(settings.url) : openNeon(settings.url, settings.neonWsProxy);
    }
  }
}

/** Connects and applies pending migrations; closes the connection again if migrating fails. */
export async function openDatabase(settings: DatabaseSettings): Promise<Database> {
  const db = await connect(settings);
  try {
    await migrate(db);
    return db;
  } catch (err) {
    await db.close().catch(() => {});
    throw err;
  }
}
