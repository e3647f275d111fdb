/**
 * Concurrent creates converge (reported: "twenty rounds of ten concurrent launches gave 48 of
 * 200 runs failed"). Each round launches a NEW project ten times at once over the `/api/inngest`
 * seam with no concurrency limit at all (the stand-in enforces none, as if the per-project key,
 * singleton and the server were all bypassed): every run must succeed (no 409 surfacing as a
 * failure, no spurious `preview.failed`), and the project ends with one container, running, and
 * one row `running` on it. Runs with checkpointing off and on.
 *
 * Rounds: `TEST_CREATE_ROUNDS` (default 5 per mode, well under 30 s on 2 cores); the reported
 * case is `TEST_CREATE_ROUNDS=20`.
 */
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFunctions } from "../../functions/index.js";
import { createApp } from "../../runtime/app.js";
import { createInngest } from "../../runtime/inngest-client.js";
import { listen } from "../helpers/http.js";
import { inngestSettings, type RunResult } from "../helpers/inngest-server.js";
import { createPreviewTestEnv, type PreviewTestEnv } from "../helpers/preview-env.js";

const ROUNDS = Math.max(1, Number.parseInt(process.env.TEST_CREATE_ROUNDS ?? "5", 10) || 5);
const CONCURRENT = 10;

let env: PreviewTestEnv;
beforeAll(async () => {
  env = await createPreviewTestEnv();
});
afterAll(async () => {
  await env?.cleanup();
});

describe.each([{ checkpointing: false }, { checkpointing: true }])("concurrent creates, checkpointing $checkpointing", ({ checkpointing }) => {
  let serveUrl: string;
  let close: () => Promise<void>;
  beforeAll(async () => {
    const inngest = createInngest(inngestSettings({ dev: env.inngestServer.url, checkpointing }), pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }));
    const host = await listen(createApp({ inngest, functions: createFunctions(inngest, env.deps), store: env.store, runtime: env.docker.runtime, apiToken: null }));
    serveUrl = `${host.url}/api/inngest`;
    close = host.close;
  });
  afterAll(async () => {
    await close?.();
  });

  it(
    `${ROUNDS} round(s) of ${CONCURRENT} concurrent launches of a new project all succeed on one container`,
    async () => {
      const problems: string[] = [];
      let runs = 0;
      let failed = 0;
      let overtaken = 0;
      for (let round = 1; round <= ROUNDS; round++) {
        const id = env.docker.projectId(`crowd${round}`);
        await env.docker.writeSite(id);
        const results: RunResult[] = await Promise.all(
          Array.from({ length: CONCURRENT }, (_, i) =>
            env.inngestServer.run({
              serveUrl,
              fnId: "previews-launch-preview",
              event: { name: i % 2 ? "preview.requested" : "pipeline.step7", data: { projectId: id } },
              checkpointing,
              onFailure: true,
            }),
          ),
        );
        runs += results.length;
        let superseded = 0;
        const countSuperseded = () => (overtaken += superseded);
        for (const r of results) {
          if (r.outcome !== "completed") {
            failed++;
            problems.push(`round ${round}: run failed: ${(r.error as { message?: string })?.message ?? JSON.stringify(r.error)}`);
          } else if ((r.result as { superseded?: boolean }).superseded) {
            // Overtaken by a duplicate that took the preview after it: allowed, never a failure.
            superseded++;
            const status = (r.result as { status?: string }).status;
            if (status !== "starting" && status !== "running") problems.push(`round ${round}: superseded by ${status}`);
          }
        }
        if (superseded === results.length) problems.push(`round ${round}: every run superseded`);
        countSuperseded();
        const containers = (await env.docker.docker.listContainers({ all: true, filters: { name: [`preview-${id}`] } })).filter((c) =>
          c.Names.includes(`/preview-${id}`),
        );
        const row = await env.store.get(id);
        const reported = new Set(
          results.filter((r) => r.outcome === "completed" && !(r.result as { superseded?: boolean }).superseded).map((r) => (r.result as { containerId?: string }).containerId),
        );
        if (containers.length !== 1) problems.push(`round ${round}: ${containers.length} containers`);
        else {
          const [only] = containers;
          if (only!.State !== "running") problems.push(`round ${round}: container ${only!.State}`);
          if (row?.status !== "running" || row.containerId !== only!.Id) problems.push(`round ${round}: row ${row?.status} on ${row?.containerId}`);
          if (reported.size !== 1 || !reported.has(only!.Id)) problems.push(`round ${round}: runs reported containers ${[...reported].join(", ")}`);
        }
        const spurious = env.emitted("preview.failed", id);
        if (spurious.length) problems.push(`round ${round}: ${spurious.length} preview.failed (${String(spurious[0]!.reason)})`);
        if (env.emitted("preview.ready", id).length === 0) problems.push(`round ${round}: no preview.ready`);
        // Keep the engine light across many rounds (the env removes anything left at the end).
        await Promise.all(containers.map((c) => env.docker.docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
      }
      console.info(
        `concurrent creates (checkpointing ${checkpointing}): ${failed} of ${runs} runs failed, ${overtaken} overtaken by a duplicate, over ${ROUNDS} round(s) of ${CONCURRENT}`,
      );
      expect(problems).toEqual([]);
      expect(env.inngestServer.unhandled).toEqual([]);
    },
    60_000 + ROUNDS * 20_000,
  );
});
