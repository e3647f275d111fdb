/**
 * `npm run bench:hydrate` (also run by `npm run bench`): hydrating a site folder from object
 * storage against the obvious way to do it, same S3-compatible server, same objects, same run.
 *
 *   1. hydrating 1,000 small files (`ObjectSites.hydrate`: one listing, bounded parallel
 *      downloads into a temporary folder, rename into place, manifest) vs a sequential
 *      `fGetObject` loop over the same listing                                 (target <= 0.5x)
 *   2. re-launch with nothing changed: `hydrate` on an up-to-date folder (listing + manifest
 *      comparison; nothing downloaded)                                        (target < 100 ms)
 *      with the listing alone timed beside it: the server's share of that figure
 *
 * The server is s3rver (npm) as a child process on a free port (no MinIO server package here):
 * its own costs (it reads a metadata file per key on every listing) are in both sides' figures.
 * Both sides list the prefix first (a loop needs the keys too). Runs alternate A/B to spread
 * machine noise; medians are reported. Everything lives under a temporary folder and the child
 * process, both removed at the end.
 *
 * BENCH_HYDRATE_RUNS (default 5) samples per measure; BENCH_HYDRATE_FILES (default 1000) files;
 * BENCH_HYDRATE_CONCURRENCY (default 16, as MINIO_CONCURRENCY) downloads at once.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { ProjectId } from "../functions/project-id.js";
import { listAll } from "../storage/object-store.js";
import { ObjectSites } from "../storage/site-objects.js";
import { startS3rver } from "../test/helpers/s3rver.js";
import { median } from "./common.js";

const RUNS = Number(process.env.BENCH_HYDRATE_RUNS ?? 5);
const FILES = Number(process.env.BENCH_HYDRATE_FILES ?? 1000);
const CONCURRENCY = Number(process.env.BENCH_HYDRATE_CONCURRENCY ?? 16);

async function main(): Promise<void> {
  const s3 = await startS3rver({ timeoutMs: 60_000 });
  const work = await mkdtemp(path.join(os.tmpdir(), "bench-hydrate-"));
  try {
    const projectId = "bench-site" as ProjectId;
    const prefix = ObjectSites.sitePrefix(projectId);
    // A small site: 1,000 files of 0.5-4 KB across 20 folders, 3 levels deep.
    const objects = Array.from({ length: FILES }, (_, i) => ({
      key: `${prefix}src/part${i % 4}/dir${i % 20}/file-${i}.tsx`,
      body: randomBytes(512 + ((i * 37) % 3584)),
    }));
    for (let i = 0; i < objects.length; i += 32) {
      await Promise.all(objects.slice(i, i + 32).map((o) => s3.store.client.putObject(s3.bucket, o.key, o.body, o.body.length)));
    }
    const totalKb = objects.reduce((n, o) => n + o.body.length, 0) / 1024;
    console.log(`hydrate bench: ${FILES} files (${totalKb.toFixed(0)} KB) on s3rver 127.0.0.1:${s3.port}, ${RUNS} runs, concurrency ${CONCURRENCY}`);

    const loop: number[] = [];
    const hydrate: number[] = [];
    const unchanged: number[] = [];
    const listing: number[] = [];
    for (let run = 1; run <= RUNS; run++) {
      // A: list, then fGetObject one key after the other.
      const loopDir = path.join(work, `loop-${run}`);
      let t = performance.now();
      const listed = await listAll(s3.store, prefix);
      for (const o of listed) await s3.store.client.fGetObject(s3.bucket, o.key, path.join(loopDir, o.key.slice(prefix.length)));
      loop.push(performance.now() - t);

      // B: hydrate into an empty storage folder (the site is missing: all downloaded).
      const sites = new ObjectSites(path.join(work, `hydrate-${run}`), s3.store, { concurrency: CONCURRENCY });
      t = performance.now();
      const result = await sites.hydrate(projectId);
      hydrate.push(performance.now() - t);
      if (result.outcome !== "downloaded" || result.objects !== FILES) throw new Error(`unexpected hydration: ${JSON.stringify(result)}`);

      // C: the same again, nothing changed (a re-launch): the storage work of a launch.
      t = performance.now();
      const again = await sites.hydrate(projectId);
      unchanged.push(performance.now() - t);
      if (again.outcome !== "unchanged") throw new Error(`expected unchanged, got ${JSON.stringify(again)}`);

      // D: the listing alone (the server's share of C: what any change detection must ask).
      t = performance.now();
      await listAll(s3.store, prefix);
      listing.push(performance.now() - t);
      console.log(`  run ${run}: loop ${loop.at(-1)!.toFixed(0)} ms, hydrate ${hydrate.at(-1)!.toFixed(0)} ms, unchanged ${unchanged.at(-1)!.toFixed(1)} ms (listing alone ${listing.at(-1)!.toFixed(1)} ms)`);
      await rm(loopDir, { recursive: true, force: true });
    }
    const ratio = median(hydrate) / median(loop);
    console.log(`hydrate ${FILES} files:       median ${median(hydrate).toFixed(0)} ms vs sequential fGetObject loop ${median(loop).toFixed(0)} ms -> ratio ${ratio.toFixed(2)} (target <= 0.50) ${ratio <= 0.5 ? "OK" : "MISSED"}`);
    const still = median(unchanged);
    console.log(`re-launch, nothing changed: median ${still.toFixed(1)} ms of storage work (target < 100 ms) ${still < 100 ? "OK" : "MISSED"}`);
    console.log(`  of which the listing of ${FILES} keys (server): median ${median(listing).toFixed(1)} ms; this service's own work (manifest, folder, comparison): ~${Math.max(0, still - median(listing)).toFixed(1)} ms`);
  } finally {
    await s3.close();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
