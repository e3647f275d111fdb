import { defineConfig } from "vitest/config";

/**
 * Two tiers (vitest projects), one command each:
 *   unit         `npm run test:unit`: pure code, in-memory fakes of the ports, `app.request()`,
 *                `@inngest/test`; no Docker engine, no database server, seconds to run.
 *                Files: `test/**\/*.test.ts`.
 *   integration  the real things: Docker engine, Postgres server, PGlite, the Neon driver through
 *                a WebSocket proxy, the Inngest serve endpoint over HTTP. Files: `*.int.test.ts`.
 * `npm test` type-checks, then runs both.
 */
export default defineConfig({
  test: {
    reporters: ["default", "./test/summary-reporter.ts"],
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/**/*.test.ts"],
          exclude: ["test/**/*.int.test.ts", "**/node_modules/**"],
          testTimeout: 20_000,
          // Unit files first; the integration tier then gets the machine to itself.
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: "integration",
          include: ["test/**/*.int.test.ts"],
          globalSetup: ["test/global-setup.ts"],
          // Real Docker, Postgres and PGlite (first open ~3 s): generous but bounded.
          testTimeout: 60_000,
          hookTimeout: 120_000,
          // 2 cores: a few files at a time keeps timing-sensitive tests honest.
          maxWorkers: 3,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
