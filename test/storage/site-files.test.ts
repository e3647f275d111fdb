/**
 * `LocalSiteFiles` on a real temporary directory: what launch checks before mounting a site, and
 * what remove deletes (and, as importantly, what it must leave alone).
 */
import { existsSync } from "node:fs";
import { link, lstat, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { PermanentError } from "../../functions/ports.js";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { InvalidProjectIdError } from "../../functions/project-id.js";
import { LocalSiteFiles } from "../../storage/site-files.js";

let tmp: string;
let root: string;
let outside: string;
let files: LocalSiteFiles;

beforeEach(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "sbp-site-files-"));
  root = path.join(tmp, "storage");
  outside = path.join(tmp, "outside");
  await mkdir(root);
  await mkdir(outside);
  files = new LocalSiteFiles(root);
});

afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const projectDir = (id: string) => path.join(root, "projects", id);
const siteDir = (id: string) => path.join(projectDir(id), "site");

async function writeSite(id: string): Promise<string> {
  await mkdir(siteDir(id), { recursive: true });
  await writeFile(path.join(siteDir(id), "package.json"), "{}\n");
  await mkdir(path.join(siteDir(id), "src"));
  await writeFile(path.join(siteDir(id), "src", "page.tsx"), "export default 1\n");
  return siteDir(id);
}

/** A folder outside storage with content that must survive everything. */
async function victim(): Promise<string> {
  const dir = path.join(outside, "precious");
  await mkdir(path.join(dir, "site"), { recursive: true });
  await writeFile(path.join(dir, "site", "keep.txt"), "keep me\n");
  await writeFile(path.join(dir, "keep.txt"), "keep me too\n");
  return dir;
}

async function victimIntact(dir: string): Promise<void> {
  expect(await readFile(path.join(dir, "site", "keep.txt"), "utf8")).toBe("keep me\n");
  expect(await readFile(path.join(dir, "keep.txt"), "utf8")).toBe("keep me too\n");
}

describe("sitePath", () => {
  it("is {root}/projects/{id}/site, absolute even for a relative root", () => {
    expect(files.sitePath("site-1")).toBe(siteDir("site-1"));
    const relative = new LocalSiteFiles("rel/storage");
    expect(relative.sitePath("a")).toBe(path.resolve("rel/storage", "projects", "a", "site"));
  });
});

describe("check", () => {
  it("is ok for a real site folder", async () => {
    await writeSite("site-1");
    await expect(files.check("site-1")).resolves.toEqual({ ok: true });
  });

  it("is ok for an empty site folder", async () => {
    await mkdir(siteDir("site-1"), { recursive: true });
    await expect(files.check("site-1")).resolves.toEqual({ ok: true });
  });

  it("reports a missing site folder, naming its path", async () => {
    await mkdir(projectDir("site-1"), { recursive: true });
    const result = await files.check("site-1");
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toContain(siteDir("site-1"));
  });

  it("reports a missing project folder (and storage without projects/), naming the site path", async () => {
    const result = await files.check("nothing-here");
    expect(result).toEqual({ ok: false, reason: expect.stringContaining(siteDir("nothing-here")) });
  });

  it("refuses a site that is a file", async () => {
    await mkdir(projectDir("site-1"), { recursive: true });
    await writeFile(siteDir("site-1"), "not a folder");
    const result = await files.check("site-1");
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toContain("not a directory");
    expect(!result.ok && result.reason).toContain(siteDir("site-1"));
  });

  it("refuses a project folder that is a file", async () => {
    await mkdir(path.join(root, "projects"), { recursive: true });
    await writeFile(projectDir("site-1"), "not a folder");
    const result = await files.check("site-1");
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toContain("not a directory");
  });

  it("refuses a site folder that is a symbolic link", async () => {
    const target = await victim();
    await mkdir(projectDir("site-1"), { recursive: true });
    await symlink(path.join(target, "site"), siteDir("site-1"));
    const result = await files.check("site-1");
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toMatch(/symbolic link/);
    expect(!result.ok && result.reason).toContain(siteDir("site-1"));
  });

  it("refuses a project folder that is a symbolic link", async () => {
    const target = await victim();
    await mkdir(path.join(root, "projects"), { recursive: true });
    await symlink(target, projectDir("site-1"));
    const result = await files.check("site-1");
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toMatch(/symbolic link/);
    expect(!result.ok && result.reason).toContain(projectDir("site-1"));
  });

  it("refuses a projects folder that is a symbolic link (the whole tree swapped)", async () => {
    const target = await victim();
    await mkdir(path.join(target, "site-1", "site"), { recursive: true });
    await symlink(target, path.join(root, "projects"));
    const result = await files.check("site-1");
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toMatch(/projects folder .* is a symbolic link/);
    await victimIntact(target);
  });

  it("refuses a dangling site link", async () => {
    await mkdir(projectDir("site-1"), { recursive: true });
    await symlink(path.join(outside, "does-not-exist"), siteDir("site-1"));
    const result = await files.check("site-1");
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toMatch(/symbolic link/);
  });
});

describe("prepare (the unprivileged preview's folder)", () => {
  const owner = { uid: 4321, gid: 4322 };
  const isRoot = process.getuid?.() === 0;

  it("gives every entry to the preview user, links changed themselves and never followed", async () => {
    const target = await victim();
    await writeSite("own-1");
    await symlink(path.join(target, "keep.txt"), path.join(siteDir("own-1"), "link-out"));
    const prepared = new LocalSiteFiles(root, owner).prepare("own-1");
    if (!isRoot) {
      // Only root (or the preview user itself) may hand files over: the refusal names it.
      await expect(prepared).rejects.toThrow(/give .* to the preview user 4321:4322 failed: EPERM: run the service as root/);
      return;
    }
    await prepared;
    for (const p of [siteDir("own-1"), path.join(siteDir("own-1"), "package.json"), path.join(siteDir("own-1"), "src"), path.join(siteDir("own-1"), "src", "page.tsx"), path.join(siteDir("own-1"), "link-out")]) {
      expect(await lstat(p), p).toMatchObject({ uid: 4321, gid: 4322 });
    }
    // The link's target, outside storage, is untouched.
    expect((await lstat(path.join(target, "keep.txt"))).uid).toBe(0);
    await victimIntact(target);
  });

  it("never hands over a file hard-linked from outside storage (its inode is the host file's)", async () => {
    const target = await victim();
    await writeSite("own-3");
    await link(path.join(target, "keep.txt"), path.join(siteDir("own-3"), "hard-link"));
    const before = await lstat(path.join(target, "keep.txt"));
    await new LocalSiteFiles(root, owner).prepare("own-3").catch(() => undefined);
    const after = await lstat(path.join(target, "keep.txt"));
    expect({ uid: after.uid, gid: after.gid }).toEqual({ uid: before.uid, gid: before.gid });
    await victimIntact(target);
  });

  it("without an owner (no PREVIEW_USER mapping) changes nothing", async () => {
    await writeSite("own-2");
    const before = await lstat(siteDir("own-2"));
    await files.prepare("own-2");
    expect((await lstat(siteDir("own-2"))).uid).toBe(before.uid);
  });
});

describe("verifyRoot (start-up)", () => {
  it("creates a missing projects folder and accepts a real one", async () => {
    await files.verifyRoot();
    expect((await lstat(path.join(root, "projects"))).isDirectory()).toBe(true);
    await files.verifyRoot();
  });

  it("refuses a projects folder that is a symbolic link, naming it", async () => {
    await symlink(outside, path.join(root, "projects"));
    const err = await files.verifyRoot().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toBe(`storage: ${path.join(root, "projects")} is a symbolic link; point STORAGE_PATH at the real folder`);
  });

  it("refuses a projects path that is a file", async () => {
    await writeFile(path.join(root, "projects"), "not a folder\n");
    await expect(files.verifyRoot()).rejects.toThrow(/is not a directory/);
  });

  it("accepts a STORAGE_PATH that itself sits behind an operator's link, and checks sites against the real path", async () => {
    const real = path.join(tmp, "real-storage");
    await mkdir(real);
    const linked = path.join(tmp, "linked-storage");
    await symlink(real, linked);
    const behind = new LocalSiteFiles(linked);
    await behind.verifyRoot();
    await mkdir(path.join(real, "projects", "p-1", "site"), { recursive: true });
    expect(await behind.check("p-1")).toEqual({ ok: true });
  });
});

describe("remove", () => {
  it("deletes the site and the project folder it leaves empty", async () => {
    await writeSite("site-1");
    await files.remove("site-1");
    expect(existsSync(siteDir("site-1"))).toBe(false);
    expect(existsSync(projectDir("site-1"))).toBe(false);
    // The storage root and projects/ stay.
    expect(existsSync(path.join(root, "projects"))).toBe(true);
    expect(await files.check("site-1")).toMatchObject({ ok: false });
  });

  it("keeps a project folder that holds other files", async () => {
    await writeSite("site-1");
    await writeFile(path.join(projectDir("site-1"), "brief.md"), "# owned by the orchestrator\n");
    await files.remove("site-1");
    expect(existsSync(siteDir("site-1"))).toBe(false);
    expect(await readdir(projectDir("site-1"))).toEqual(["brief.md"]);
  });

  it("touches only its own project", async () => {
    await writeSite("site-1");
    await writeSite("site-10");
    await writeSite("site");
    await files.remove("site-1");
    expect(await files.check("site-10")).toEqual({ ok: true });
    expect(await files.check("site")).toEqual({ ok: true });
    expect(existsSync(path.join(siteDir("site-10"), "src", "page.tsx"))).toBe(true);
  });

  it("is idempotent: a missing site or project folder is success", async () => {
    await writeSite("site-1");
    await files.remove("site-1");
    await expect(files.remove("site-1")).resolves.toBeUndefined();
    await expect(files.remove("never-existed")).resolves.toBeUndefined();
    // Even with no projects/ folder at all.
    await expect(new LocalSiteFiles(path.join(tmp, "empty-root")).remove("a")).resolves.toBeUndefined();
    expect(existsSync(path.join(tmp, "empty-root"))).toBe(false);
  });

  it("removes a site that is a plain file", async () => {
    await mkdir(projectDir("site-1"), { recursive: true });
    await writeFile(siteDir("site-1"), "oops");
    await files.remove("site-1");
    expect(existsSync(projectDir("site-1"))).toBe(false);
  });

  it("removes a linked site folder's link, never the link's target", async () => {
    const target = await victim();
    await mkdir(projectDir("site-1"), { recursive: true });
    await symlink(path.join(target, "site"), siteDir("site-1"));
    await files.remove("site-1");
    await expect(lstat(siteDir("site-1"))).rejects.toMatchObject({ code: "ENOENT" });
    await victimIntact(target);
  });

  it("refuses to delete through a linked project folder and leaves the target intact", async () => {
    const target = await victim();
    await mkdir(path.join(root, "projects"), { recursive: true });
    await symlink(target, projectDir("site-1"));
    const attempt = files.remove("site-1");
    await expect(attempt).rejects.toBeInstanceOf(PermanentError);
    await expect(files.remove("site-1")).rejects.toThrow(/symbolic link/);
    await victimIntact(target);
    expect((await lstat(projectDir("site-1"))).isSymbolicLink()).toBe(true);
  });
});

describe("invalid project ids", () => {
  const BAD = ["../outside/precious", "..", "../x", "A", "a_b", "a.b", "a/b", "", "-a", "a".repeat(64), "a`b"];

  it.each(BAD)("%j: check and remove throw before touching the disk", async (id) => {
    const target = await victim();
    // A folder an unchecked id would reach: {root}/projects/../outside/precious/site etc.
    await mkdir(path.join(root, "projects"), { recursive: true });
    await symlink(path.join(tmp, "outside"), path.join(root, "outside"));
    await expect(files.check(id)).rejects.toBeInstanceOf(InvalidProjectIdError);
    await expect(files.remove(id)).rejects.toBeInstanceOf(InvalidProjectIdError);
    expect(() => files.sitePath(id)).toThrow(InvalidProjectIdError);
    await victimIntact(target);
  });

  it("refuses a traversal id even when the traversal target exists, keeping it", async () => {
    const target = await victim();
    await mkdir(path.join(root, "projects"), { recursive: true });
    // From {root}/projects, "../../outside/precious" is the victim folder.
    await expect(files.remove("../../outside/precious")).rejects.toThrow(InvalidProjectIdError);
    await victimIntact(target);
    expect(existsSync(target)).toBe(true);
  });
});
