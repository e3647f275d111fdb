/**
 * A local HTTP server speaking the Anthropic Messages API (`POST /v1/messages`), for the SDK's
 * `baseURL`: it keeps every request (headers and JSON body) and answers from a script, one
 * behaviour per request (the last one repeats): a text answer, an API error with its status
 * (401, 529, ...) in the API's error shape, or `hang` (never answers: the client times out).
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export type MessagesBehaviour =
  | { text: string }
  | { status: number; type: string; message?: string }
  | "hang";

export interface MessagesRequest {
  headers: http.IncomingHttpHeaders;
  body: {
    model: string;
    max_tokens: number;
    system?: string;
    messages: Array<{ role: string; content: string }>;
  };
  /** The raw body as received. */
  raw: string;
}

export interface MessagesApi {
  /** The SDK's `baseURL` (ANTHROPIC_BASE_URL). */
  url: string;
  requests: MessagesRequest[];
  /** What the next requests get, in order; the last one repeats. */
  script: MessagesBehaviour[];
  close(): Promise<void>;
}

export async function startMessagesApi(script: MessagesBehaviour[] = [{ text: "It failed." }]): Promise<MessagesApi> {
  const requests: MessagesRequest[] = [];
  const hanging = new Set<http.ServerResponse>();
  const api: MessagesApi = { url: "", requests, script, close: async () => undefined };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks).toString("utf8");
      if (req.method !== "POST" || new URL(req.url ?? "/", "http://x").pathname !== "/v1/messages") {
        res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ type: "error", error: { type: "not_found_error", message: "no route" } }));
        return;
      }
      requests.push({ headers: req.headers, body: JSON.parse(raw) as MessagesRequest["body"], raw });
      const behaviour = api.script.length > 1 ? api.script.shift()! : api.script[0]!;
      if (behaviour === "hang") {
        hanging.add(res);
        res.on("close", () => hanging.delete(res));
        return;
      }
      if ("text" in behaviour) {
        const body = {
          id: `msg_${requests.length}`,
          type: "message",
          role: "assistant",
          model: (JSON.parse(raw) as { model: string }).model,
          content: [{ type: "text", text: behaviour.text }],
          stop_reason: "end_turn",
          stop_sequence: null,
          usage: { input_tokens: Math.ceil(raw.length / 4), output_tokens: Math.ceil(behaviour.text.length / 4) },
        };
        res.writeHead(200, { "content-type": "application/json", "request-id": `req_${requests.length}` }).end(JSON.stringify(body));
        return;
      }
      const error = { type: "error", error: { type: behaviour.type, message: behaviour.message ?? behaviour.type } };
      // x-should-retry: false, so that an SDK left with its own retries on would still not hide
      // the step's retries behind its own.
      res.writeHead(behaviour.status, { "content-type": "application/json", "x-should-retry": "false" }).end(JSON.stringify(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  api.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  api.close = () =>
    new Promise<void>((resolve) => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return api;
}
