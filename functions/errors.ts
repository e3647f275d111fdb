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

/**
 * The container a verb was asked to act on no longer exists under its name (removed by hand, or
 * expired by a sweep, since it was found). Permanent for the adapter, which never re-creates
 * behind a caller's back; the workflow decides whether creating it again is right (launch-preview
 * does so while its run holds the preview). `PreviewRuntime.start` throws it.
 */
export class ContainerGoneError extends PermanentError {
  override name = "ContainerGoneError";
}
