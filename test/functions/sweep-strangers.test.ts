/**
 * Unit tier: strangers on the preview network (review F2) in the sweep plan. A container
 * attached to the network that is neither ours nor a trusted peer is listed in the plan and
 * recorded as a `warn` decision; it is never an item (nothing is done to it); a failed check is
 * recorded and does not fail the plan. The real engine: test/isolation/trusted-peers.int.test.ts.
 */
import { describe, expect, it } from "vitest";
import type { NetworkStranger, PreviewNetworkAudit } from "../../functions/ports.js";
import { planDecisions, planSweep } from "../../functions/sweep-plan.js";
import type { SweepDeps } from "../../functions/index.js";
import { FakeRuntime } from "../fakes/fake-runtime.js";
import { FakeInventory, FakeProjects, MemorySweepLog } from "../fakes/fake-sweep.js";
import { MemoryPreviewStore } from "../fakes/memory-store.js";

const NOW = Date.parse("2026-11-26T12:00:00Z");
const PROBER: NetworkStranger = { containerId: "a".repeat(64), name: "prober", address: "172.29.4.9" };

function sweepWith(network?: PreviewNetworkAudit): { store: MemoryPreviewStore; sweep: SweepDeps } {
  const runtime = new FakeRuntime();
  return {
    store: new MemoryPreviewStore(),
    sweep: {
      inventory: new FakeInventory(runtime),
      projects: new FakeProjects(),
      decisions: new MemorySweepLog(),
      settings: { cron: "*/15 * * * *", retentionMs: 86_400_000, graceMs: 600_000, maxOrphanFraction: 0.5, concurrency: 8 },
      now: () => NOW,
      ...(network ? { network } : {}),
    },
  };
}

describe("strangers on the preview network in the sweep plan", () => {
  it("lists them and records one warn decision naming each container; no item acts on them", async () => {
    const sidecar: NetworkStranger = { containerId: "b".repeat(64), name: "sidecar", address: "172.29.4.10" };
    const { store, sweep } = sweepWith({ network: "sitebuilder-previews", strangers: async () => [PROBER, sidecar] });
    const plan = await planSweep(store, sweep);
    expect(plan.strangers).toEqual({ network: "sitebuilder-previews", found: [PROBER, sidecar] });
    expect(plan.items).toEqual([]);
    // One decision per run (the audit log's key is run, pass, action, project), naming both.
    const warns = planDecisions(plan, "run-1").filter((d) => d.action === "warn");
    expect(warns).toHaveLength(1);
    expect(warns[0]).toMatchObject({ runId: "run-1", pass: "run", projectId: null });
    expect(warns[0]!.reason).toContain(`container prober (${"a".repeat(12)}) at 172.29.4.9 is attached to the preview network sitebuilder-previews`);
    expect(warns[0]!.reason).toContain(`container sidecar (${"b".repeat(12)}) at 172.29.4.10`);
    expect(warns[0]!.reason).toContain("left alone");
  });

  it("records a failed check as a warning and still plans", async () => {
    const { store, sweep } = sweepWith({ network: "sitebuilder-previews", strangers: () => Promise.reject(new Error("docker: inspect network sitebuilder-previews failed: boom")) });
    const plan = await planSweep(store, sweep);
    expect(plan.strangers).toMatchObject({ found: [], error: "docker: inspect network sitebuilder-previews failed: boom" });
    expect(planDecisions(plan, "run-2").filter((d) => d.action === "warn").map((d) => d.reason)).toEqual([
      "could not list the containers on the preview network sitebuilder-previews: docker: inspect network sitebuilder-previews failed: boom",
    ]);
  });

  it("without a network audit: nothing about strangers in the plan or the audit log", async () => {
    const { store, sweep } = sweepWith();
    const plan = await planSweep(store, sweep);
    expect(plan.strangers).toBeUndefined();
    expect(planDecisions(plan, "run-3").some((d) => d.action === "warn")).toBe(false);
    const empty = await planSweep(...Object.values(sweepWith({ network: "n", strangers: async () => [] })) as [MemoryPreviewStore, SweepDeps]);
    expect(planDecisions(empty, "run-4").some((d) => d.action === "warn")).toBe(false);
  });
});
