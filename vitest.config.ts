import { defineConfig } from "vitest/config";

/**
 * Two tiers (vitest projects), one command each:
 *   unit         `npm run test:unit`: pure code, in-memory fakes of the ports, `app.request()`,
 *                `@inngest/test`; no Docker engine, no database server, seconds to run.
 *                Files: `test/**\/*.test.ts`.
 *   integration  the real things: Docker engine, Postgres server, PGlite, the Neon driver through
 *                a WebSocket proxy, the Inngest serve endpoint over HTTP. Files: `*.int.test.ts`
 *                (`test/isolation/` as its own project, `isolation`, run last and alone).
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
          // Run on their own, after: see the isolation project.
          exclude: ["test/isolation/**", "**/node_modules/**"],
          globalSetup: ["test/global-setup.ts"],
          // Real Docker, Postgres and PGlite (first open ~3 s): generous but bounded.
          testTimeout: 60_000,
          hookTimeout: 120_000,
          // 2 cores: a few files at a time keeps timing-sensitive tests honest.
          maxWorkers: 3,
          sequence: { groupOrder: 1 },
        },
      },
      {
        test: {
          // The isolation probes (real previews, real host firewall rules), one file at a time
          // with nothing else running: the engine deletes and re-inserts its FORWARD jump to
          // DOCKER-USER whenever ANY network is created, and a probe that lands in that instant
          // passes the egress-deny rules (README: Security, limits). Other files create networks
          // all the time, so these run after them, alone.
          name: "isolation",
          include: ["test/isolation/**/*.int.test.ts"],
          globalSetup: ["test/global-setup.ts"],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          maxWorkers: 1,
          sequence: { groupOrder: 2 },
        },
      },
    ],
  },
});
