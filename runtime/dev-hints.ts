/**
 * What `npm run dev` prints for a newcomer (issue 10), as pure functions of the configuration: the
 * command-line flags it takes, and the next steps after `--demo`.
 */
import { isProjectId } from "../functions/project-id.js";
import type { Config } from "./config.js";
import { DEMO_PROJECT_ID } from "./demo-site.js";

/** Where the Inngest dev server listens unless INNGEST_DEV or INNGEST_BASE_URL say otherwise. */
export const DEFAULT_DEV_SERVER = "http://127.0.0.1:8288";

/** `--demo` or `--demo=<projectId>`; anything else is refused naming it. */
export function parseDevArgs(argv: readonly string[]): { demo: string | null } | { error: string } {
  let demo: string | null = null;
  for (const arg of argv) {
    const m = /^--demo(?:=(.*))?$/.exec(arg);
    if (!m) return { error: `npm run dev: unknown argument ${JSON.stringify(arg)} (takes --demo or --demo=<projectId>)` };
    const id = m[1] ?? DEMO_PROJECT_ID;
    if (!isProjectId(id)) return { error: `npm run dev: --demo=${JSON.stringify(id)}: a project id is a DNS label (a-z, 0-9, '-', at most 63)` };
    demo = id;
  }
  return { demo };
}

/** The dev server this service talks to: INNGEST_BASE_URL, else INNGEST_DEV's URL, else the default. */
export function devServerUrl(config: Pick<Config, "inngest">): string {
  const { baseUrl, dev } = config.inngest;
  return (baseUrl ?? (typeof dev === "string" ? dev : DEFAULT_DEV_SERVER)).replace(/\/+$/, "");
}

/** Single-quoted for a POSIX shell. */
const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The lines printed after the demo site is written: where it is, the dashboard, a ready-to-paste
 * curl that sends `pipeline.step7` for it to the dev server's event endpoint (`POST /e/<event
 * key>`; the dev server takes any key, so none of the configured secrets is printed), and how to
 * follow the preview.
 */
export function devHints(opts: { config: Pick<Config, "inngest" | "host" | "apiToken">; port: number; projectId: string; siteDir: string; created: boolean }): string[] {
  const server = devServerUrl(opts.config);
  const host = opts.config.host === "0.0.0.0" || opts.config.host === "::" ? "127.0.0.1" : opts.config.host;
  const api = `http://${host.includes(":") ? `[${host}]` : host}:${opts.port}`;
  const event = JSON.stringify({ name: "pipeline.step7", data: { projectId: opts.projectId } });
  const auth = opts.config.apiToken ? ` -H "Authorization: Bearer $API_TOKEN"` : "";
  return [
    `${opts.created ? "demo site written to" : "demo site already there (left as it is):"} ${opts.siteDir} (a tiny Next.js app; its first start installs its dependencies inside the preview: a minute or two)`,
    `Inngest dashboard: ${server}`,
    `launch the ${opts.projectId} preview (sends pipeline.step7 to the Inngest dev server):`,
    `  curl -sS -X POST ${server}/e/dev -H 'Content-Type: application/json' -d ${shellQuote(event)}`,
    `follow it: curl -sS${auth} ${api}/previews/${opts.projectId}  (its URL is printed here once the preview answers)`,
  ];
}
