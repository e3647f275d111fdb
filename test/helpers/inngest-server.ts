/**
 * A stand-in for the Inngest server (its binary cannot be installed here) that speaks the public
 * SDK protocol (inngest/inngest docs/SDK_SPEC.md) over real HTTP:
 *   - receives syncs (`POST /fn/register`) and sent events (`POST /e/<event key>`), and keeps them;
 *   - drives a function run the way the executor does: call requests to the serve endpoint,
 *     memoizing each step's result in `steps` and the `stack` until the SDK answers 200.
 * Requests are signed as in cloud mode when a signing key is given.
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

export interface InngestStandIn {
  url: string;
  registrations: Array<Record<string, unknown>>;
  events: SentEvent[];
  eventsNamed(name: string): SentEvent[];
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

export async function startInngestStandIn(): Promise<InngestStandIn> {
  const registrations: Array<Record<string, unknown>> = [];
  const events: SentEvent[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString("utf8")) : null;
      const path = new URL(req.url ?? "/", "http://x").pathname;
      res.setHeader("content-type", "application/json");
      if (req.method === "POST" && path === "/fn/register") {
        registrations.push(body as Record<string, unknown>);
        res.end(JSON.stringify({ status: 200, modified: true }));
      } else if (req.method === "POST" && path.startsWith("/e/")) {
        const batch = (Array.isArray(body) ? body : [body]) as SentEvent[];
        events.push(...batch);
        res.end(JSON.stringify({ ids: batch.map(() => randomUUID()), status: 200 }));
      } else {
        res.statusCode = 404;
        res.end(JSON.stringify({ error: `stand-in: no route ${req.method} ${path}` }));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    registrations,
    events,
    eventsNamed: (name) => events.filter((e) => e.name === name),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** `t=<unix>&s=<hex HMAC-SHA256(canonical JSON body + t)>`, keyed by the key minus its prefix. */
export function signRequest(body: unknown, signingKey: string, at = new Date()): string {
  const t = Math.floor(at.getTime() / 1000);
  const key = signingKey.replace(/^signkey-\w+-/, "");
  const encoded = typeof body === "string" ? body : (canonicalize(body) ?? "");
  const s = createHmac("sha256", key).update(encoded + t).digest("hex");
  return `t=${t}&s=${s}`;
}

export const hashStepId = (id: string): string => createHash("sha1").update(id).digest("hex");

export interface CallOptions {
  serveUrl: string;
  /** `<app id>-<function id>` */
  fnId: string;
  event: { name: string; data: Record<string, unknown> };
  signingKey?: string;
  /** Pre-memoized step results by step id (not hashed), as a replay after a crash would have. */
  memoized?: Record<string, unknown>;
  maxRequests?: number;
}

export interface CallResult {
  status: number;
  body: unknown;
  /** Requests made, and the op codes the SDK answered with, in order. */
  requests: number;
  ops: string[];
  headers: Headers;
}

interface Op {
  id: string;
  op: string;
  data?: unknown;
  error?: unknown;
  displayName?: string;
}

/** Drives one run to its end: 200 (result), or a 4xx/5xx (function error). */
export async function runFunction(opts: CallOptions): Promise<CallResult> {
  const event = { ...opts.event, id: randomUUID(), ts: Date.now() };
  const steps: Record<string, unknown> = {};
  const stack: string[] = [];
  for (const [id, data] of Object.entries(opts.memoized ?? {})) {
    steps[hashStepId(id)] = { data };
    stack.push(hashStepId(id));
  }
  const runId = `run-${randomUUID()}`;
  const ops: string[] = [];
  let stepId = "step";
  for (let requests = 1; requests <= (opts.maxRequests ?? 50); requests++) {
    const body = {
      event,
      events: [event],
      steps,
      ctx: { run_id: runId, attempt: 0, disable_immediate_execution: false, use_api: false, stack: { stack, current: stack.length } },
      version: 1,
    };
    const url = `${opts.serveUrl}?fnId=${encodeURIComponent(opts.fnId)}&stepId=${encodeURIComponent(stepId)}`;
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (opts.signingKey) headers["x-inngest-signature"] = signRequest(body, opts.signingKey);
    const res = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
    const text = await res.text();
    const parsed: unknown = text ? JSON.parse(text) : null;
    if (res.status !== 206) return { status: res.status, body: parsed, requests, ops, headers: res.headers };
    stepId = "step";
    for (const op of parsed as Op[]) {
      ops.push(op.op);
      if (op.op === "StepRun" || op.op === "Step") {
        steps[op.id] = { data: op.data ?? null };
        stack.push(op.id);
      } else if (op.op === "StepError" || op.op === "StepFailed") {
        steps[op.id] = { error: op.error };
        stack.push(op.id);
      } else if (op.op === "StepPlanned") {
        stepId = op.id;
      } else {
        throw new Error(`stand-in: unexpected op ${op.op}`);
      }
    }
  }
  throw new Error("stand-in: run did not finish");
}
