import { NonRetriableError } from "inngest";
import * as v from "valibot";

/**
 * A project id is a DNS label. It becomes a container name, a folder name and a Traefik
 * `Host()` rule, so anything outside this pattern (path separators, dots, back-ticks, upper
 * case, ...) is refused before any Docker, file or SQL call.
 */
export const PROJECT_ID_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export const ProjectIdSchema = v.pipe(
  v.string("projectId must be a string"),
  v.regex(
    PROJECT_ID_PATTERN,
    "projectId must be a DNS label: 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'",
  ),
);

export type ProjectId = v.InferOutput<typeof ProjectIdSchema>;

/** Not retriable: the same id is refused every time. */
export class InvalidProjectIdError extends NonRetriableError {
  override readonly name = "InvalidProjectIdError";
  constructor(readonly value: unknown) {
    super(`invalid projectId ${show(value)}: ${ProjectIdSchema.pipe[1].message as string}`);
  }
}

function show(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value); // BigInt, circular objects
  }
}

/** Returns the id when valid; throws `InvalidProjectIdError` naming the value otherwise. */
export function assertProjectId(value: unknown): ProjectId {
  if (typeof value === "string" && PROJECT_ID_PATTERN.test(value)) return value;
  throw new InvalidProjectIdError(value);
}
