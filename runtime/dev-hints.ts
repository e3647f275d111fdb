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
  const [site, follow] = demoSiteHints(opts);
  return [site!, ...inngestHints(opts), follow!];
}

type HintOptions = { config: Pick<Config, "inngest" | "host" | "apiToken">; port: number; projectId: string };

/** The service's API as a local user reaches it, and the curl option its token needs. */
function apiOf(opts: Pick<HintOptions, "config" | "port">): { api: string; auth: string } {
  const host = opts.config.host === "0.0.0.0" || opts.config.host === "::" ? "127.0.0.1" : opts.config.host;
  return { api: `http://${host.includes(":") ? `[${host}]` : host}:${opts.port}`, auth: opts.config.apiToken ? ` -H "Authorization: Bearer $API_TOKEN"` : "" };
}

/** What holds whether or not a dev server runs: where the site is, and how to follow the preview. */
export function demoSiteHints(opts: HintOptions & { siteDir: string; created: boolean }): string[] {
  const { api, auth } = apiOf(opts);
  return [
    `${opts.created ? "demo site written to" : "demo site already there (left as it is):"} ${opts.siteDir} (a tiny Next.js app; its first start installs its dependencies inside the preview: a minute or two)`,
    `follow it: curl -sS${auth} ${api}/previews/${opts.projectId}  (its URL is printed here once the preview answers)`,
  ];
}

/**
 * The dashboard and the curl that sends `pipeline.step7` to the dev server: printed only once a
 * dev server is known to answer there (a curl to a port nobody listens on helps nobody).
 */
export function inngestHints(opts: HintOptions): string[] {
  const server = devServerUrl(opts.config);
  const event = JSON.stringify({ name: "pipeline.step7", data: { projectId: opts.projectId } });
  return [
    `Inngest dashboard: ${server}`,
    `launch the ${opts.projectId} preview (sends pipeline.step7 to the Inngest dev server):`,
    `  curl -sS -X POST ${server}/e/dev -H 'Content-Type: application/json' -d ${shellQuote(event)}`,
  ];
}

/**
 * The line printed when the bundled dev server could not be started (`npx inngest-cli dev`
 * failed): nothing runs the functions until one does, and how to point this at one.
 */
export function devServerDownHint(why: string, serveUrl: string): string {
  return (
    `Inngest dev server is not running (${why}): nothing launches previews until one does. ` +
    `Start one where inngest-cli can be installed (\`npx inngest-cli@latest dev -u ${serveUrl}\`, or the inngest/inngest image) ` +
    `and put INNGEST_DEV=<its URL, e.g. ${DEFAULT_DEV_SERVER}> in .env, then run \`npm run dev\` again`
  );
}

/**
 * The line printed when the demo preview failed: its reason, and where its logs are only when
 * it left any (a failure before the container printed anything has an empty log tail).
 */
export function demoFailedHint(opts: Pick<HintOptions, "config" | "port"> & { projectId: string; reason: string | null; logTail: string | null }): string {
  const { api, auth } = apiOf(opts);
  const head = `${opts.projectId} preview failed: ${opts.reason ?? "no reason recorded"}`;
  if (opts.logTail && opts.logTail.trim() !== "") return `${head} (its log tail: curl -sS${auth} ${api}/previews/${opts.projectId}, field logTail)`;
  return `${head} (the preview left no log output: the reason above is all there is)`;
}
