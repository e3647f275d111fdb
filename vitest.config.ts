import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    // Real Docker, Postgres and PGlite (first open ~3 s): generous but bounded.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // 2 cores: a few files at a time keeps timing-sensitive tests honest.
    maxWorkers: 3,
    reporters: ["default", "./test/summary-reporter.ts"],
  },
});
