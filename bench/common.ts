/** What the Docker benchmarks share: the run's label and id, the stub image name, the preview settings, medians. */
import { randomBytes } from "node:crypto";
import type { PreviewSettings } from "../docker/settings.js";

/** Every container, network and image a bench creates carries it (value: the bench id). */
export const BENCH_LABEL = "sitebuilder.bench-run";

export const newBenchId = (): string => `${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;

export const benchImage = (benchId: string): string => `sitebuilder-previews-bench/stub:${benchId}`;

/** Production-like preview settings for a bench run (its own network, storage and label). */
export function benchSettings(benchId: string, opts: { instanceId: string; network: string; storageRoot: string }): PreviewSettings {
  return {
    instanceId: opts.instanceId,
    image: benchImage(benchId),
    network: opts.network,
    domain: "preview.localhost",
    routing: "traefik",
    memoryBytes: 256 * 1024 * 1024,
    nanoCpus: 1_000_000_000,
    pidsLimit: 128,
    storageHostPath: opts.storageRoot,
    stopTimeoutSeconds: 5,
    extraLabels: { [BENCH_LABEL]: benchId },
  };
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
