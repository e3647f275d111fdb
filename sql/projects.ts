/**
 * `ProjectDirectory` over the orchestrator's projects table (read only): `PROJECTS_TABLE`
 * (default `projects`), column `id`, and a `deleted_at` column honoured when the table has one
 * (a row with `deleted_at` set is a deleted project). The table name is validated by the config
 * and quoted here; ids are always parameters.
 */
import type { ProjectDirectory, ProjectId, ProjectLookup } from "../functions/ports.js";
import type { Database } from "./database.js";
import { databaseError } from "./errors.js";

/** `name` or `schema.name`, each an unquoted SQL identifier: what PROJECTS_TABLE accepts. */
export const PROJECTS_TABLE_PATTERN = /^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?$/;

export class SqlProjectDirectory implements ProjectDirectory {
  readonly source: string;
  private readonly quoted: string;

  /** @param where for messages: which database (never its URL, which may carry a password). */
  constructor(
    private readonly db: Database,
    private readonly table: string,
    where: string,
  ) {
    if (!PROJECTS_TABLE_PATTERN.test(table)) throw new Error(`projects: table name ${JSON.stringify(table)} is not [schema.]name`);
    this.quoted = table
      .split(".")
      .map((part) => `"${part}"`)
      .join(".");
    this.source = `table ${table} (${where})`;
  }

  async lookup(projectIds: readonly ProjectId[]): Promise<ProjectLookup> {
    const action = `read projects from ${this.source}`;
    try {
      // One statement: whether the table exists and has deleted_at is read first (a missing
      // table is an error here, never "no projects").
      // (`soft_type` is null when there is no deleted_at column.)
      const [shape] = await this.db.query<{ present: boolean; soft_type: string | null }>(
        `select to_regclass($1::text) is not null as present,
                (select format_type(atttypid, null) from pg_attribute where attrelid = to_regclass($1::text) and attname = 'deleted_at' and not attisdropped) as soft_type`,
        [this.quoted],
      );
      if (!shape?.present) throw new MissingProjectsTableError(`database: ${action} failed: table ${this.table} does not exist`);
      const soft = shape.soft_type !== null;
      // Only a time says when a project was deleted; a boolean or text column would be guessed at
      // (false or '' read as "set"), so it is refused: the sweep then skips the orphan pass.
      if (soft && !SOFT_DELETE_TYPES.has(shape.soft_type ?? "")) {
        throw new MissingProjectsTableError(`database: ${action} failed: column deleted_at of table ${this.table} is ${shape.soft_type}, not a timestamp or date; refusing to guess which projects are deleted`);
      }
      const live = soft ? "deleted_at is null" : "true";
      const [any] = await this.db.query<{ any: boolean }>(`select exists (select 1 from ${this.quoted} where ${live}) as any`);
      // Compared without case: preview ids are lower-case DNS labels, and an orchestrator that
      // stores `Proj-A1` but sends `proj-a1` must not have its preview read as an orphan. The
      // error this allows is keeping a preview whose project differs only in case: the safe side.
      // (A scan rather than the id index: once per sweep, and once per orphan item.)
      const existing = projectIds.length
        ? await this.db.query<{ id: string }>(`select distinct lower(id::text) as id from ${this.quoted} where lower(id::text) = any($1::text[]) and ${live}`, [projectIds])
        : [];
      return { anyProject: any?.any === true, existing: existing.map((r) => r.id) };
    } catch (err) {
      if (err instanceof MissingProjectsTableError) throw err;
      throw databaseError(action, err);
    }
  }
}

/** The types a `deleted_at` column may have to be honoured. */
const SOFT_DELETE_TYPES = new Set(["timestamp with time zone", "timestamp without time zone", "date"]);

/** The configured projects table is not there, or not usable (wrong PROJECTS_TABLE or PROJECTS_DATABASE_URL). */
export class MissingProjectsTableError extends Error {
  override name = "MissingProjectsTableError";
}
