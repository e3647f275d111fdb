/**
 * `op`, or a rejection with `new Error(message)` after `ms`, whichever settles first. The
 * operation itself is not cancelled: it finishes or fails on its own (bounded by its adapter's
 * own timeouts). The timer never outlives the race.
 */
export async function within<T>(op: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  try {
    return await Promise.race([op, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
