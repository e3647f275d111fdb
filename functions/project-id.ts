import * as v from "valibot";
import { PermanentError } from "./errors.js";

/**
 * A project id is a DNS label. It becomes a container name, a folder name and a Traefik
 * `Host()` rule, so anything outside this pattern (path separators, dots, back-ticks, upper
 * case, ...) is refused before any Docker, file or SQL call. The schema is the one definition:
 * events use it, and `assertProjectId` is derived from it.
 */
export const ProjectIdSchema = v.pipe(
  v.string("projectId must be a string"),
  v.regex(
    /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/,
    "projectId must be a DNS label: 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'",
  ),
);

export type ProjectId = v.InferOutput<typeof ProjectIdSchema>;

/** Permanent: the same id is refused every time. */
export class InvalidProjectIdError extends PermanentError {
  override name = "InvalidProjectIdError";
  constructor(
    readonly value: unknown,
    reason: string,
  ) {
    super(`invalid projectId ${show(value)}: ${reason}`);
  }
}

function show(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value); // BigInt, circular objects
  }
}

/** Whether `value` is a valid project id (no error: for input that may be anything, e.g. labels). */
export const isProjectId = (value: unknown): value is ProjectId => v.is(ProjectIdSchema, value);

/** Returns the id when the schema accepts it; throws `InvalidProjectIdError` naming the value otherwise. */
export function assertProjectId(value: unknown): ProjectId {
  const parsed = v.safeParse(ProjectIdSchema, value);
  if (parsed.success) return parsed.output;
  throw new InvalidProjectIdError(value, parsed.issues[0].message);
}
