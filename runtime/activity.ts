/**
 * Activity, recorded in memory on the hot path (forward-auth, heartbeat) and written out in the
 * background:
 *   - `touch` is a Map write: no I/O, no await; a forward-auth answer never waits for the
 *     database or Inngest;
 *   - every ACTIVITY_FLUSH_INTERVAL the latest use of each project touched since the last flush
 *     goes to the database in ONE statement (`last_activity_at`); a failed flush keeps its marks
 *     for the next one (a newer use replaces an older one);
 *   - `preview.activity` is sent at most once per project per ACTIVITY_EVENT_INTERVAL: at the
 *     first use (leading edge, so track-idle's debounce restarts at once) and, when the project
 *     was used again within the interval, once more when the interval ends (trailing edge). So
 *     the last event of a burst is never earlier than its last use, and track-idle, debounced
 *     for IDLE_TIMEOUT after that event, never finds a use inside its window because an event
 *     was coalesced away.
 */
import type { Logger } from "pino";
import type { ActivityStore, ProjectId } from "../functions/ports.js";

export interface ActivityEvent {
  name: "preview.activity";
  data: { projectId: ProjectId };
}

export interface ActivitySettings {
  /** ACTIVITY_EVENT_INTERVAL. */
  eventIntervalMs: number;
  /** ACTIVITY_FLUSH_INTERVAL. */
  flushIntervalMs: number;
}

interface ProjectActivity {
  /** Latest use not yet written to the database. */
  unflushed: number | null;
  /** When the last `preview.activity` for it was queued (ms). */
  lastEvent: number;
  /** Used since that event: a trailing event is due when the interval ends. */
  trailing: boolean;
}

export class ActivityTracker {
  readonly #projects = new Map<ProjectId, ProjectActivity>();
  #outbox: ProjectId[] = [];
  #sendScheduled = false;
  #timer: NodeJS.Timeout | null = null;
  #flushing: Promise<void> | null = null;
  #closed = false;

  constructor(
    private readonly store: Pick<ActivityStore, "recordActivity">,
    private readonly send: (events: ActivityEvent[]) => Promise<unknown>,
    private readonly settings: ActivitySettings,
    private readonly log?: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Starts the periodic flush (unref'd: it never keeps the process alive). */
  start(): this {
    if (this.#timer || this.#closed) return this;
    this.#timer = setInterval(() => void this.flush(), this.settings.flushIntervalMs);
    this.#timer.unref();
    return this;
  }

  /** Records one use of a project's preview: in memory only. */
  touch(projectId: ProjectId): void {
    const now = this.now();
    const entry = this.#projects.get(projectId);
    if (!entry) {
      this.#projects.set(projectId, { unflushed: now, lastEvent: now, trailing: false });
      this.#queue(projectId);
      return;
    }
    entry.unflushed = now;
    if (now - entry.lastEvent >= this.settings.eventIntervalMs) {
      entry.lastEvent = now;
      entry.trailing = false;
      this.#queue(projectId);
    } else {
      entry.trailing = true;
    }
  }

  /**
   * Writes the pending marks (one statement) and sends the trailing events that are due; forgets
   * projects that are quiet and flushed. One flush at a time; returns when this one is done.
   */
  flush(): Promise<void> {
    this.#flushing ??= this.#flushOnce().finally(() => {
      this.#flushing = null;
    });
    return this.#flushing;
  }

  /** Stops the timer and writes what is pending (best effort). */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.flush();
    await this.#sendOutbox();
  }

  /** What is held in memory (tests, metrics). */
  get size(): number {
    return this.#projects.size;
  }

  async #flushOnce(): Promise<void> {
    const now = this.now();
    const marks: Array<{ projectId: ProjectId; at: Date }> = [];
    for (const [projectId, entry] of this.#projects) {
      if (entry.unflushed !== null) marks.push({ projectId, at: new Date(entry.unflushed) });
      if (entry.trailing && now - entry.lastEvent >= this.settings.eventIntervalMs) {
        entry.lastEvent = now;
        entry.trailing = false;
        this.#outbox.push(projectId);
      }
    }
    await this.#sendOutbox();
    if (marks.length > 0) {
      marks.sort((a, b) => (a.projectId < b.projectId ? -1 : a.projectId > b.projectId ? 1 : 0));
      try {
        await this.store.recordActivity(marks);
        for (const m of marks) {
          const entry = this.#projects.get(m.projectId);
          // A use that came in during the write stays pending.
          if (entry && entry.unflushed === m.at.getTime()) entry.unflushed = null;
        }
      } catch (err) {
        this.log?.warn({ err, previews: marks.length }, "activity flush failed; kept for the next flush");
      }
    }
    // Forget what is quiet, flushed and has no event due: memory stays bounded by the previews
    // used within the last interval.
    for (const [projectId, entry] of this.#projects) {
      if (entry.unflushed === null && !entry.trailing && now - entry.lastEvent >= this.settings.eventIntervalMs) this.#projects.delete(projectId);
    }
  }

  #queue(projectId: ProjectId): void {
    this.#outbox.push(projectId);
    if (this.#sendScheduled || this.#closed) return;
    this.#sendScheduled = true;
    // After the current request is answered: leading events of one tick go out in one request.
    setImmediate(() => {
      this.#sendScheduled = false;
      void this.#sendOutbox();
    });
  }

  async #sendOutbox(): Promise<void> {
    if (this.#outbox.length === 0) return;
    const batch = this.#outbox;
    this.#outbox = [];
    try {
      await this.send(batch.map((projectId) => ({ name: "preview.activity" as const, data: { projectId } })));
    } catch (err) {
      // Not retried: the database still gets the time, the next use sends again, and a track-idle
      // run that fires early re-reads it. A preview whose very last event was lost is left to the
      // sweep's backstop (running previews idle past IDLE_TIMEOUT).
      this.log?.warn({ err, projectIds: batch }, "sending preview.activity failed");
    }
  }
}
