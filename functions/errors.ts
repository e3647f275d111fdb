/**
 * The error contract between the adapters and the workflow. An adapter throws `PermanentError`
 * (or a subclass) for a failure that will be the same on every retry (a foreign container holds
 * the name, the image is missing, the database refused the statement); anything else it throws is
 * retryable. `functions/deps.ts` (`permanent`) maps the former to Inngest's `NonRetriableError`
 * in one place, so no adapter imports the Inngest SDK.
 */
export class PermanentError extends Error {
  override name = "PermanentError";
}

export const isPermanent = (err: unknown): err is PermanentError => err instanceof PermanentError;
