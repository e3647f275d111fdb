/**
 * `ObjectSites` (hydration, deletion, log archive) on a real temporary directory over an in-memory
 * object store: when a site is downloaded, that nothing half-written is ever at the site folder's
 * path, that a hostile listing writes nothing, and that a link planted in storage is never
 * followed. The same against a real S3-compatible server: site-objects.int.test.ts.
 */
import { existsSync } from "node:fs";
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PermanentError, isPermanent } from "../../functions/ports.js";
import type { ProjectId } from "../../functions/project-id.js";
import { LocalSiteFiles } from "../../storage/site-files.js";
import { ObjectSites } from "../../storage/site-objects.js";
import { MemoryObjectStore } from "../fakes/memory-objects.js";

let tmp: string;
let root: string;
let store: MemoryObjectStore;
let sites: ObjectSites;
const id = "p1" as ProjectId;
const P = "projects/p1/site/";

beforeEach(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "sbp-site-objects-"));
  root = path.join(tmp, "storage");
  store = new MemoryObjectStore();
  sites = new ObjectSites(root, store, { concurrency: 4 });
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const project = () => path.join(root, "projects", "p1");
const site = () => path.join(project(), "site");
async function identity(p: string): Promise<string> {
  const s = await lstat(p, { bigint: true });
  return `${s.dev}:${s.ino}`;
}
/** Everything in the project folder (names only). */
const projectEntries = async () => (await readdir(project())).sort();

function seed(n = 3): void {
  store.set(`${P}index.html`, "<h1>hi</h1>");
  store.set(`${P}app/page.tsx`, "export default 1");
  for (let i = 0; i < n - 2; i++) store.set(`${P}public/f${i}.txt`, `file ${i}`);
}

describe("ObjectSites.hydrate", () => {
  it("downloads a missing site into place, with a manifest beside it (not inside)", async () => {
    seed(5);
    const result = await sites.hydrate(id);
    expect(result).toEqual({ outcome: "downloaded", objects: 5, bytes: expect.any(Number), replaced: false });
    expect(await readFile(path.join(site(), "index.html"), "utf8")).toBe("<h1>hi</h1>");
    expect(await readFile(path.join(site(), "public/f2.txt"), "utf8")).toBe("file 2");
    expect(await projectEntries()).toEqual([".site-manifest.json", "site"]);
    const manifest = JSON.parse(await readFile(path.join(project(), ".site-manifest.json"), "utf8"));
    expect(manifest.folder).toMatch(new RegExp(`^${await identity(site())}:\\d+$`));
    expect(Object.keys(manifest.objects)).toHaveLength(5);
    // What launch does next works on it: a real directory, no link.
    const check = await new LocalSiteFiles(root).check(id);
    expect(check).toEqual({ ok: true, folder: await identity(site()) });
  });

  it("downloads nothing when the site is unchanged (one listing, no read)", async () => {
    seed(5);
    await sites.hydrate(id);
    const before = await identity(site());
    store.calls.read = 0;
    store.calls.list = 0;
    expect(await sites.hydrate(id)).toEqual({ outcome: "unchanged", objects: 5 });
    expect(store.calls).toMatchObject({ list: 1, read: 0 });
    expect(await identity(site())).toBe(before);
  });

  it("replaces the folder when an object changed, atomically, and deletes the old one", async () => {
    seed(5);
    await sites.hydrate(id);
    const before = await identity(site());
    await writeFile(path.join(site(), "written-by-the-preview.txt"), "x");
    store.set(`${P}index.html`, "<h1>v2</h1>");
    expect(await sites.hydrate(id)).toMatchObject({ outcome: "downloaded", replaced: true, objects: 5 });
    expect(await readFile(path.join(site(), "index.html"), "utf8")).toBe("<h1>v2</h1>");
    expect(await identity(site())).not.toBe(before);
    expect(existsSync(path.join(site(), "written-by-the-preview.txt"))).toBe(false);
    expect(await projectEntries()).toEqual([".site-manifest.json", "site"]);
  });

  it("downloads again when an object is added or deleted", async () => {
    seed(3);
    await sites.hydrate(id);
    store.set(`${P}new.txt`, "new");
    expect(await sites.hydrate(id)).toMatchObject({ outcome: "downloaded", objects: 4 });
    store.objects.delete(`${P}new.txt`);
    expect(await sites.hydrate(id)).toMatchObject({ outcome: "downloaded", objects: 3 });
    expect(existsSync(path.join(site(), "new.txt"))).toBe(false);
  });

  it("downloads again when the site folder is not the one the manifest describes (replaced by hand)", async () => {
    seed(3);
    await sites.hydrate(id);
    await rm(site(), { recursive: true });
    await mkdir(site());
    await writeFile(path.join(site(), "stray.txt"), "x");
    expect(await sites.hydrate(id)).toMatchObject({ outcome: "downloaded", replaced: true });
    expect(existsSync(path.join(site(), "stray.txt"))).toBe(false);
    expect(existsSync(path.join(site(), "index.html"))).toBe(true);
  });

  it("downloads again when the manifest is missing or corrupt", async () => {
    seed(3);
    await sites.hydrate(id);
    await writeFile(path.join(project(), ".site-manifest.json"), "{not json");
    expect(await sites.hydrate(id)).toMatchObject({ outcome: "downloaded" });
    await rm(path.join(project(), ".site-manifest.json"));
    expect(await sites.hydrate(id)).toMatchObject({ outcome: "downloaded" });
    expect(await sites.hydrate(id)).toMatchObject({ outcome: "unchanged" });
  });

  it("leaves the local folder alone when the store holds no site for the project", async () => {
    await mkdir(site(), { recursive: true });
    await writeFile(path.join(site(), "local.txt"), "x");
    store.set("projects/p2/site/index.html", "other project");
    expect(await sites.hydrate(id)).toEqual({ outcome: "no-objects" });
    expect(await readdir(site())).toEqual(["local.txt"]);
  });

  it("creates folders for folder markers and nested paths", async () => {
    store.set(`${P}empty/`, "");
    store.set(`${P}a/b/c/d.txt`, "deep");
    await sites.hydrate(id);
    expect((await lstat(path.join(site(), "empty"))).isDirectory()).toBe(true);
    expect(await readFile(path.join(site(), "a/b/c/d.txt"), "utf8")).toBe("deep");
  });

  it("refuses a listing with hostile keys and writes nothing at all", async () => {
    seed(3);
    store.phantom.push(`${P}../../../../etc/cron.d/evil`, `${P}/abs`, `${P}a\\..\\..\\x`, `${P}nul\u0000`);
    const err = await sites.hydrate(id).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toMatch(/4 key\(s\) would not land inside the site folder, nothing was written/);
    expect((err as Error).message).toContain("etc/cron.d/evil");
    expect(store.calls.read).toBe(0);
    expect(existsSync(project())).toBe(false);
    expect(existsSync(path.join(tmp, "etc"))).toBe(false);
  });

  it("a hostile key also leaves an existing site exactly as it was", async () => {
    seed(3);
    await sites.hydrate(id);
    const before = await identity(site());
    store.phantom.push(`${P}../x`);
    await expect(sites.hydrate(id)).rejects.toBeInstanceOf(PermanentError);
    expect(await identity(site())).toBe(before);
    expect(await projectEntries()).toEqual([".site-manifest.json", "site"]);
  });

  it("a download that breaks half-way is retryable and leaves the site folder as it was, nothing half-written", async () => {
    seed(20);
    await sites.hydrate(id);
    const before = await identity(site());
    store.set(`${P}index.html`, "<h1>v2</h1>");
    store.calls.read = 0;
    store.breakReadsFrom = { n: 3, error: Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }) };
    const err = await sites.hydrate(id).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(isPermanent(err)).toBe(false);
    expect((err as Error).message).toMatch(/object store: read .* failed: .*ECONNRESET/);
    expect(await identity(site())).toBe(before);
    expect(await readFile(path.join(site(), "index.html"), "utf8")).toBe("<h1>hi</h1>");
    expect(await projectEntries()).toEqual([".site-manifest.json", "site"]);
    // The retry converges.
    store.breakReadsFrom = null;
    expect(await sites.hydrate(id)).toMatchObject({ outcome: "downloaded", replaced: true });
    expect(await readFile(path.join(site(), "index.html"), "utf8")).toBe("<h1>v2</h1>");
  });

  it("a first download that breaks leaves no site folder at all (never a partial one)", async () => {
    seed(10);
    store.breakReadsFrom = { n: 5, error: new Error("socket hang up") };
    await expect(sites.hydrate(id)).rejects.toThrow(/socket hang up/);
    expect(await projectEntries()).toEqual([]);
  });

  it("an unreachable store is retryable and touches nothing", async () => {
    seed(3);
    await sites.hydrate(id);
    store.failWith = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:9"), { code: "ECONNREFUSED" });
    const err = await sites.hydrate(id).catch((e: unknown) => e);
    expect(isPermanent(err)).toBe(false);
    expect(await projectEntries()).toEqual([".site-manifest.json", "site"]);
  });

  it("deletes what a crashed hydration left behind", async () => {
    seed(3);
    await mkdir(path.join(project(), ".site-incoming-dead"), { recursive: true });
    await writeFile(path.join(project(), ".site-incoming-dead", "half.txt"), "x");
    await mkdir(path.join(project(), ".site-outgoing-dead"));
    await writeFile(path.join(project(), ".site-manifest.json.abc"), "{");
    await sites.hydrate(id);
    expect(await projectEntries()).toEqual([".site-manifest.json", "site"]);
  });

  it("gives the new folder a mode the preview user can read before prepare hands it over", async () => {
    seed(3);
    await sites.hydrate(id);
    expect((await lstat(site())).mode & 0o777).toBe(0o755);
  });

  it("never follows a link planted at the site folder, the project folder or projects/", async () => {
    seed(3);
    const outside = path.join(tmp, "outside");
    await mkdir(outside);
    await mkdir(project(), { recursive: true });
    await symlink(outside, site());
    await expect(sites.hydrate(id)).rejects.toThrow(/refusing to hydrate .*site: it is a symbolic link/);
    await rm(site());
    await rm(project(), { recursive: true });
    await symlink(outside, project());
    await expect(sites.hydrate(id)).rejects.toThrow(/refusing to hydrate through .*p1: it is a symbolic link/);
    expect(await readdir(outside)).toEqual([]);
  });

  it("refuses an invalid project id before any listing", async () => {
    await expect(sites.hydrate("../x" as ProjectId)).rejects.toThrow(/invalid projectId/);
    expect(store.calls.list).toBe(0);
  });
});

describe("ObjectSites.removeAll", () => {
  it("deletes every object of the project, paging past 1,000 keys, and nothing of other projects", async () => {
    for (let i = 0; i < 2_500; i++) store.set(`projects/p1/site/f${i}`, "x");
    store.set("projects/p1/logs/abc.log", "log");
    store.set("projects/p10/site/keep.txt", "other project, same prefix start");
    store.set("projects/p2/site/keep.txt", "other project");
    expect(await sites.removeAll(id)).toEqual({ removed: 2_501 });
    expect([...store.objects.keys()].sort()).toEqual(["projects/p10/site/keep.txt", "projects/p2/site/keep.txt"]);
    expect(store.calls.remove).toBe(3);
    expect(await sites.removeAll(id)).toEqual({ removed: 0 });
  });
});

describe("ObjectSites.removeAll, local side", () => {
  it("after the site folder is deleted, deletes the manifest and leftovers, then the empty project folder", async () => {
    seed(3);
    await sites.hydrate(id);
    await mkdir(path.join(project(), ".site-incoming-dead"));
    await new LocalSiteFiles(root).remove(id);
    expect(await projectEntries()).toEqual([".site-incoming-dead", ".site-manifest.json"]);
    await sites.removeAll(id);
    expect(existsSync(project())).toBe(false);
    expect(store.objects.size).toBe(0);
  });

  it("leaves a project folder holding anything else, and never creates one", async () => {
    seed(3);
    await sites.hydrate(id);
    await sites.removeAll(id);
    expect(await projectEntries()).toEqual(["site"]);
    expect(await sites.removeAll("p2" as ProjectId)).toEqual({ removed: 0 });
    expect(existsSync(path.join(root, "projects", "p2"))).toBe(false);
  });
});

describe("ObjectSites.archiveLog", () => {
  it("stores the log under projects/{id}/logs/{containerId}.log (the same key on a retry)", async () => {
    const cid = "0123456789abcdef".repeat(4);
    expect(await sites.archiveLog(id, cid, "last lines\n")).toEqual({ key: `projects/p1/logs/${cid}.log` });
    await sites.archiveLog(id, cid, "last lines\n");
    expect([...store.objects.keys()]).toEqual([`projects/p1/logs/${cid}.log`]);
    expect(store.objects.get(`projects/p1/logs/${cid}.log`)!.toString()).toBe("last lines\n");
  });

  it("refuses a container id that is not one", async () => {
    await expect(sites.archiveLog(id, "../../x", "log")).rejects.toBeInstanceOf(PermanentError);
    expect(store.objects.size).toBe(0);
  });
});
