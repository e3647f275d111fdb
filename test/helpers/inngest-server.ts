/**
 * A stand-in for the Inngest server (its binary cannot be installed here) that speaks the public
 * SDK protocol (inngest/inngest docs/SDK_SPEC.md) and the SDK's checkpointing API over real HTTP:
 *   - receives syncs (`POST /fn/register`) and sent events (`POST /e/<event key>`), and keeps them;
 *   - drives a function run the way the executor does (`run`): call requests to the serve
 *     endpoint, memoizing each step's result in `steps` and the `stack` until the run ends;
 *     `Sleep` ops are memoized as `{ data: null }` (at once, or after the duration); retriable
 *     errors are retried with `ctx.attempt` + 1 up to the attempts the function was synced with;
 *     a run that fails for good can be followed by its failure handler, called the way the
 *     server calls it (`<fn>-failure` on `inngest/function.failed`);
 *   - with checkpointing on (as production: the SDK default), the call request carries
 *     `ctx.fn_id` and `ctx.qi_id`; the SDK then runs the steps inside that one request and
 *     reports each to `POST /v1/checkpoint/<run_id>/async` (handled here: the steps are memoized
 *     and recorded, and the hooks of the test run before the SDK's next step), and ends the
 *     request with a 206 whose last op is `RunComplete` (the return value), or an async op
 *     (`Sleep`) after which the server calls again.
 * Requests are signed as in cloud mode when a signing key is given; a stand-in started with a
 * signing key also checks the `Authorization: Bearer <hashed key>` of the SDK's API calls.
 *
 * Not modelled (server-side flow control): concurrency limits, singleton, cancelOn, debounce.
 */
import { createHash, createHmac, randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import canonicalizeModule from "canonicalize";
import type { InngestSettings } from "../../runtime/inngest-client.js";

// A CommonJS module typed as an ES default export: at run time the import is the function itself.
const canonicalize = canonicalizeModule as unknown as (input: unknown) => string | undefined;

export interface SentEvent {
  name: string;
  data: Record<string, unknown>;
  id?: string;
  ts?: number;
}

/** One `POST /v1/checkpoint/<run_id>/async` the SDK made. */
export interface CheckpointCall {
  runId: string;
  body: {
    run_id: string;
    fn_id: string;
    qi_id: string;
    request_id?: string;
    generation_id?: number;
    request_started_at?: number;
    steps: Op[];
    ts: number;
  };
}

export interface InngestStandIn {
  url: string;
  registrations: Array<Record<string, unknown>>;
  events: SentEvent[];
  eventsNamed(name: string): SentEvent[];
  /** Every async checkpoint received, in order. */
  checkpoints: CheckpointCall[];
  /** Requests the stand-in refused or has no route for (unknown run, bad auth, sync checkpoints ...). */
  unhandled: string[];
  /** Drives one run to its end through the serve endpoint (see `RunOptions`). */
  run(opts: RunOptions): Promise<RunResult>;
  /** Runs the failure handler of `fnId` the way the server does after a run failed for good. */
  runFailureHandler(opts: FailureHandlerOptions): Promise<RunResult>;
  close(): Promise<void>;
}

/** Client settings for tests: cloud mode, no checkpointing, unless overridden. */
export function inngestSettings(overrides: Partial<InngestSettings> = {}): InngestSettings {
  return {
    dev: false,
    baseUrl: null,
    signingKey: null,
    signingKeyFallback: null,
    eventKey: null,
    env: null,
    serveOrigin: null,
    checkpointing: false,
    ...overrides,
  };
}

/** The active runs of a stand-in, by run id: where its checkpoints go. */
interface ActiveRun {
  fnId: string;
  qiId: string;
  absorb(ops: Op[], via: StepSource): Promise<void>;
}

export async function startInngestStandIn(opts: { signingKey?: string } = {}): Promise<InngestStandIn> {
  const registrations: Array<Record<string, unknown>> = [];
  const events: SentEvent[] = [];
  const checkpoints: CheckpointCall[] = [];
  const unhandled: string[] = [];
  const active = new Map<string, ActiveRun>();
  const expectedAuth = opts.signingKey ? `Bearer ${hashSigningKey(opts.signingKey)}` : null;

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      void (async () => {
        const path = new URL(req.url ?? "/", "http://x").pathname;
        const reply = (status: number, payload: unknown) => {
          res.statusCode = status;
          res.setHeader("content-type", "application/json");
          res.end(JSON.stringify(payload));
        };
        const refuse = (status: number, why: string) => {
          unhandled.push(`${req.method} ${path}: ${why}`);
          reply(status, { error: `stand-in: ${why}` });
        };
        let body: unknown = null;
        try {
          body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString("utf8")) : null;
        } catch {
          return refuse(400, "body is not JSON");
        }
        if (req.method === "POST" && path === "/fn/register") {
          registrations.push(body as Record<string, unknown>);
          return reply(200, { ok: true, modified: true });
        }
        if (req.method === "POST" && path.startsWith("/e/")) {
          const batch = (Array.isArray(body) ? body : [body]) as SentEvent[];
          events.push(...batch);
          return reply(200, { ids: batch.map(() => randomUUID()), status: 200 });
        }
        const checkpoint = /^\/v1\/checkpoint\/([^/]+)\/async$/.exec(path);
        if (req.method === "POST" && checkpoint) {
          if (expectedAuth && req.headers.authorization !== expectedAuth) return refuse(401, "checkpoint without the hashed signing key");
          const runId = decodeURIComponent(checkpoint[1]!);
          const call = { runId, body: body as CheckpointCall["body"] };
          const run = active.get(runId);
          if (!run) return refuse(404, `checkpoint for unknown or finished run ${runId}`);
          if (call.body.run_id !== runId || call.body.fn_id !== run.fnId || call.body.qi_id !== run.qiId) {
            return refuse(400, `checkpoint of run ${runId} names another run, function or queue item`);
          }
          checkpoints.push(call);
          // The test's hooks run here, while the SDK waits: between two steps of the run.
          await run.absorb(call.body.steps ?? [], "checkpoint");
          return reply(200, {});
        }
        return refuse(404, "no route");
      })().catch((err: unknown) => {
        unhandled.push(`${req.method} ${req.url}: stand-in error ${String(err)}`);
        if (!res.headersSent) res.statusCode = 500;
        res.end();
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const standIn: InngestStandIn = {
    url: `http://127.0.0.1:${port}`,
    registrations,
    events,
    eventsNamed: (name) => events.filter((e) => e.name === name),
    checkpoints,
    unhandled,
    run: (runOpts) => drive(runOpts, { active, registrations }),
    runFailureHandler: (failOpts) => runFailureHandler(failOpts, { active, registrations }),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return standIn;
}

/** `t=<unix>&s=<hex HMAC-SHA256(canonical JSON body + t)>`, keyed by the key minus its prefix. */
export function signRequest(body: unknown, signingKey: string, at = new Date()): string {
  const t = Math.floor(at.getTime() / 1000);
  const key = signingKey.replace(/^signkey-\w+-/, "");
  const encoded = typeof body === "string" ? body : (canonicalize(body) ?? "");
  const s = createHmac("sha256", key).update(encoded + t).digest("hex");
  return `t=${t}&s=${s}`;
}

/** What the SDK sends as `Authorization: Bearer ...` to the API: prefix + SHA-256 of the hex key. */
export function hashSigningKey(signingKey: string): string {
  const prefix = /^signkey-\w+-/.exec(signingKey)?.[0] ?? "";
  return prefix + createHash("sha256").update(Buffer.from(signingKey.slice(prefix.length), "hex")).digest("hex");
}

export const hashStepId = (id: string): string => createHash("sha1").update(id).digest("hex");

type EventInput = { name: string; data: Record<string, unknown> };

export interface RunOptions {
  serveUrl: string;
  /** `<app id>-<function id>` */
  fnId: string;
  event: EventInput;
  /**
   * The call request's `events` list; default `[event]`. The SDK validates schemas on this list
   * only, so a request whose `event` is not in it reaches the handler unchecked.
   */
  events?: EventInput[];
  signingKey?: string;
  /** Pre-memoized step results by step id (not hashed), as a replay after a crash would have. */
  memoized?: Record<string, unknown>;
  /** The run's id (default: a new one); a replay after a crash is the same run. */
  runId?: string;
  /**
   * Checkpointing as production runs it: `ctx.fn_id` and `ctx.qi_id` are sent, so an SDK whose
   * client has checkpointing on runs the steps in one request and checkpoints each to this
   * stand-in. (An SDK with checkpointing off ignores them.)
   */
  checkpointing?: boolean;
  /**
   * Called with every step the server learns of (from a 206 or a checkpoint), before the run
   * goes on: the place for a test to slip another action in between two steps.
   */
  onStep?: (step: RecordedStep) => void | Promise<void>;
  /** Run the function's failure handler when the run fails for good (as the server does). */
  onFailure?: boolean;
  /** Wait out `Sleep` ops (default: resume at once, as if the time had passed). */
  honourSleeps?: boolean;
  /** Attempts per step and per run; default: the function's synced `retries` + 1 (sync if needed). */
  maxAttempts?: number;
  maxRequests?: number;
}

export interface FailureHandlerOptions {
  serveUrl: string;
  /** `<app id>-<function id>` of the function that failed (the handler is `<fnId>-failure`). */
  fnId: string;
  /** The failed run's triggering event. */
  event: SentEvent;
  /** The failed run's final error (the body of its last response). */
  error: unknown;
  runId?: string;
  signingKey?: string;
  checkpointing?: boolean;
  honourSleeps?: boolean;
}

export type StepSource = "response" | "checkpoint";

export interface RecordedStep {
  /** Hashed step id. */
  id: string;
  /** The step id as written in code (`displayName`), e.g. `wait-ready-1`. */
  name: string;
  op: string;
  data?: unknown;
  error?: unknown;
  /** Whether the SDK reported it in a call request's response or in a checkpoint. */
  via: StepSource;
}

export interface RunResult {
  runId: string;
  /** The event the run was triggered with (as sent, with id and ts). */
  event: SentEvent;
  outcome: "completed" | "failed";
  /** The function's return value (completed). */
  result?: unknown;
  /** The final error (failed): the body of the last response. */
  error?: unknown;
  /** The last response. */
  status: number;
  body: unknown;
  headers: Headers;
  /** Call requests made, the op codes the responses carried, and every step the server learned of. */
  requests: number;
  ops: string[];
  steps: RecordedStep[];
  /** Checkpoint calls the SDK made for this run. */
  checkpoints: number;
  /** The failure handler's run (with `onFailure`, when the run failed for good). */
  failure?: RunResult;
}

/** Back-compatible entry point: drives a run without a stand-in behind it (no checkpointing). */
export async function runFunction(opts: RunOptions): Promise<RunResult> {
  if (opts.checkpointing) throw new Error("stand-in: checkpointing needs a stand-in to receive checkpoints: use standIn.run()");
  return drive(opts, { active: new Map(), registrations: null });
}

interface Op {
  id: string;
  op: string;
  name?: string;
  data?: unknown;
  error?: unknown;
  displayName?: string;
  opts?: Record<string, unknown>;
}

interface Context {
  active: Map<string, ActiveRun>;
  /** The syncs the stand-in received; null without a stand-in (then one attempt by default). */
  registrations: Array<Record<string, unknown>> | null;
}

/** Attempts the function was synced with (`retries` + 1); syncs the app first when needed. */
async function syncedAttempts(registrations: Array<Record<string, unknown>>, serveUrl: string, fnId: string): Promise<number> {
  const find = () => {
    for (const reg of [...registrations].reverse()) {
      const fn = (reg.functions as Array<{ id: string; steps?: { step?: { retries?: { attempts?: number } } } }> | undefined)?.find((f) => f.id === fnId);
      if (fn) return (fn.steps?.step?.retries?.attempts ?? 3) + 1;
    }
    return null;
  };
  const known = find();
  if (known !== null) return known;
  const res = await fetch(serveUrl, { method: "PUT" });
  if (res.status !== 200) throw new Error(`stand-in: sync of ${serveUrl} failed: ${res.status} ${await res.text()}`);
  const synced = find();
  if (synced === null) throw new Error(`stand-in: ${fnId} is not served at ${serveUrl}`);
  return synced;
}

function sleepMs(duration: string): number {
  const date = Date.parse(duration);
  if (!/^\d/.test(duration) || duration.includes("T")) return Number.isNaN(date) ? 0 : Math.max(0, date - Date.now());
  let total = 0;
  for (const [, n, unit] of duration.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)) {
    total += Number(n) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[unit as "ms"];
  }
  return total;
}

async function drive(opts: RunOptions, ctx: Context): Promise<RunResult> {
  const stamp = (e: EventInput): SentEvent => ({ ...e, id: randomUUID(), ts: Date.now() });
  const event = stamp(opts.event);
  const events = opts.events ? opts.events.map(stamp) : [event];
  const maxAttempts = opts.maxAttempts ?? (ctx.registrations ? await syncedAttempts(ctx.registrations, opts.serveUrl, opts.fnId) : 1);
  const steps: Record<string, { data: unknown } | { error: unknown }> = {};
  const stack: string[] = [];
  const names = new Map<string, string>();
  for (const [name, data] of Object.entries(opts.memoized ?? {})) {
    steps[hashStepId(name)] = { data };
    stack.push(hashStepId(name));
    names.set(hashStepId(name), name);
  }
  const runId = opts.runId ?? `run-${randomUUID()}`;
  const internalFnId = `fn-${createHash("sha1").update(opts.fnId).digest("hex").slice(0, 12)}`;
  const recorded: RecordedStep[] = [];
  const ops: string[] = [];
  let checkpointCount = 0;
  let hookError: unknown;

  // What the server does with each op it is told of.
  let attempt = 0;
  let stepId = "step";
  const end: { completed: { result: unknown } | null } = { completed: null };
  const absorb = async (batch: Op[], via: StepSource) => {
    if (via === "checkpoint") checkpointCount++;
    for (const op of batch) {
      const name = op.displayName ?? op.name ?? names.get(op.id) ?? op.id;
      names.set(op.id, name);
      switch (op.op) {
        case "StepRun":
        case "Step":
          steps[op.id] = { data: op.data ?? null };
          stack.push(op.id);
          attempt = 0;
          stepId = "step";
          break;
        case "StepFailed":
          steps[op.id] = { error: op.error };
          stack.push(op.id);
          attempt = 0;
          stepId = "step";
          break;
        case "StepError":
          // Retriable: the same step is tried again, as the next attempt.
          attempt++;
          break;
        case "StepPlanned":
          // Planned, not run yet (the SDK stopped checkpointing, e.g. past its max runtime): the
          // next call request asks for it by id.
          stepId = op.id;
          continue;
        case "Sleep":
          if (opts.honourSleeps) await new Promise((r) => setTimeout(r, sleepMs(String(op.name ?? op.opts?.duration ?? "0s"))));
          steps[op.id] = { data: null };
          stack.push(op.id);
          attempt = 0;
          stepId = "step";
          break;
        case "RunComplete":
          end.completed = { result: op.data ?? null };
          continue; // not a step
        default:
          throw new Error(`stand-in: unexpected op ${op.op} (${name})`);
      }
      const step: RecordedStep = { id: op.id, name, op: op.op, via, ...("data" in op ? { data: op.data } : {}), ...(op.error !== undefined ? { error: op.error } : {}) };
      recorded.push(step);
      if (opts.onStep) {
        try {
          await opts.onStep(step);
        } catch (err) {
          hookError ??= err;
        }
      }
    }
  };

  const runState: ActiveRun = { fnId: internalFnId, qiId: "", absorb };
  if (opts.checkpointing) ctx.active.set(runId, runState);
  try {
    for (let requests = 1; requests <= (opts.maxRequests ?? 200); requests++) {
      runState.qiId = `qi-${randomUUID()}`;
      const body = {
        event,
        events,
        steps,
        ctx: {
          run_id: runId,
          attempt,
          max_attempts: maxAttempts,
          disable_immediate_execution: false,
          use_api: false,
          stack: { stack, current: stack.length },
          ...(opts.checkpointing ? { fn_id: internalFnId, qi_id: runState.qiId } : {}),
        },
        version: 2,
      };
      const url = `${opts.serveUrl}?fnId=${encodeURIComponent(opts.fnId)}&stepId=${encodeURIComponent(stepId)}`;
      const headers: Record<string, string> = { "content-type": "application/json" };
      if (opts.signingKey) headers["x-inngest-signature"] = signRequest(body, opts.signingKey);
      const res = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch {
        // not JSON: kept as text
      }
      if (hookError) throw hookError;
      const base = { runId, event, status: res.status, body: parsed, headers: res.headers, requests, ops, steps: recorded, checkpoints: checkpointCount };
      if (res.status === 200) return { ...base, outcome: "completed", result: parsed };
      if (res.status === 206) {
        const batch = parsed as Op[];
        ops.push(...batch.map((o) => o.op));
        await absorb(batch, "response");
        if (hookError) throw hookError;
        if (end.completed) return { ...base, checkpoints: checkpointCount, outcome: "completed", result: end.completed.result };
        continue;
      }
      // A function error: retried while attempts remain and the SDK allows it, else final.
      const retriable = res.status >= 500 && res.headers.get("x-inngest-no-retry") !== "true";
      if (retriable && attempt + 1 < maxAttempts) {
        attempt++;
        continue;
      }
      const result: RunResult = { ...base, checkpoints: checkpointCount, outcome: "failed", error: parsed };
      if (opts.onFailure && (res.status === 400 || res.status >= 500)) {
        result.failure = await runFailureHandler(
          { serveUrl: opts.serveUrl, fnId: opts.fnId, event, error: parsed, runId, signingKey: opts.signingKey, checkpointing: opts.checkpointing, honourSleeps: opts.honourSleeps },
          ctx,
        );
      }
      return result;
    }
    throw new Error(`stand-in: run of ${opts.fnId} did not finish`);
  } finally {
    ctx.active.delete(runId);
  }
}

async function runFailureHandler(opts: FailureHandlerOptions, ctx: Context): Promise<RunResult> {
  return drive(
    {
      serveUrl: opts.serveUrl,
      fnId: `${opts.fnId}-failure`,
      event: {
        name: "inngest/function.failed",
        data: { function_id: opts.fnId, run_id: opts.runId ?? `run-${randomUUID()}`, error: opts.error, event: opts.event },
      },
      signingKey: opts.signingKey,
      checkpointing: opts.checkpointing,
      honourSleeps: opts.honourSleeps,
    },
    ctx,
  );
}
