/**
 * `LocalSiteFiles` on a real temporary directory: what launch checks before mounting a site, and
 * what remove deletes (and, as importantly, what it must leave alone).
 */
import { existsSync } from "node:fs";
import { chown, link, lstat, mkdir, mkdtemp, readFile, readdir, rename, rm, symlink, unlink, writeFile } from "node:fs/promises";
import { spawn } from "node:child_process";
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
/** `device:inode` of a site folder, as `check` reports it. */
async function folderOf(id: string, projects = path.join(root, "projects")): Promise<string> {
  const stat = await lstat(path.join(projects, id, "site"), { bigint: true });
  return `${stat.dev}:${stat.ino}`;
}
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
    await expect(files.check("site-1")).resolves.toEqual({ ok: true, folder: await folderOf("site-1") });
  });

  it("is ok for an empty site folder", async () => {
    await mkdir(siteDir("site-1"), { recursive: true });
    await expect(files.check("site-1")).resolves.toEqual({ ok: true, folder: await folderOf("site-1") });
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

  it("gives every file and folder to the preview user; links are neither followed nor changed", async () => {
    const target = await victim();
    await writeSite("own-1");
    await symlink(path.join(target, "keep.txt"), path.join(siteDir("own-1"), "link-out"));
    const prepared = new LocalSiteFiles(root, owner).prepare("own-1", await folderOf("own-1"));
    if (!isRoot) {
      // Only root (or the preview user itself) may hand files over: the refusal names it.
      await expect(prepared).rejects.toThrow(/give .* to the preview user 4321:4322 failed: EPERM: run the service as root/);
      return;
    }
    await prepared;
    for (const p of [siteDir("own-1"), path.join(siteDir("own-1"), "package.json"), path.join(siteDir("own-1"), "src"), path.join(siteDir("own-1"), "src", "page.tsx")]) {
      expect(await lstat(p), p).toMatchObject({ uid: 4321, gid: 4322 });
    }
    expect((await lstat(path.join(siteDir("own-1"), "link-out"))).uid).toBe(0);
    // The link's target, outside storage, is untouched.
    expect((await lstat(path.join(target, "keep.txt"))).uid).toBe(0);
    await victimIntact(target);
  });

  it("never hands over a file hard-linked from outside storage (its inode is the host file's)", async () => {
    const target = await victim();
    await writeSite("own-3");
    await link(path.join(target, "keep.txt"), path.join(siteDir("own-3"), "hard-link"));
    const before = await lstat(path.join(target, "keep.txt"));
    await new LocalSiteFiles(root, owner).prepare("own-3", await folderOf("own-3")).catch(() => undefined);
    const after = await lstat(path.join(target, "keep.txt"));
    expect({ uid: after.uid, gid: after.gid }).toEqual({ uid: before.uid, gid: before.gid });
    await victimIntact(target);
  });

  it("without an owner (no PREVIEW_USER mapping) changes nothing", async () => {
    await writeSite("own-2");
    const before = await lstat(siteDir("own-2"));
    await files.prepare("own-2", await folderOf("own-2"));
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
    expect(await behind.check("p-1")).toEqual({ ok: true, folder: await folderOf("p-1", path.join(real, "projects")) });
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
    expect(await files.check("site-10")).toEqual({ ok: true, folder: await folderOf("site-10") });
    expect(await files.check("site")).toEqual({ ok: true, folder: await folderOf("site") });
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

describe("walks raced by an attacker who plants links while they run", () => {
  const owner = { uid: 4321, gid: 4322 };
  const DIRS = 24;

  /** A site of DIRS folders with a few files each; the victim: a folder outside storage. */
  /** The same names in every folder of the site and in the victim: a path that meets a link lands on one. */
  const NAMES = [...Array.from({ length: 12 }, (_, i) => `f${i}`), "inner/x"];

  async function racedSite(id: string): Promise<{ site: string; target: string }> {
    const site = siteDir(id);
    const target = path.join(outside, "victim");
    for (const dir of [...Array.from({ length: DIRS }, (_, i) => path.join(site, `d${i}`)), target]) {
      await mkdir(path.join(dir, "inner"), { recursive: true });
      await Promise.all(NAMES.map((f) => writeFile(path.join(dir, f), "precious\n")));
    }
    return { site, target };
  }

  /**
   * Until `stop`, swaps a folder of the site for a link to the victim and back, over and over
   * (what a preview, or anyone writing the storage, can do while the service walks the folder).
   */
  function swapper(site: string, target: string, targets = DIRS): { stop: () => Promise<number> } {
    let running = true;
    let swaps = 0;
    const loop = (async () => {
      for (let i = 0; running; i = (i + 1) % Math.min(DIRS, targets)) {
        const dir = path.join(site, `d${i}`);
        const aside = `${dir}.aside`;
        try {
          await rename(dir, aside);
          await symlink(target, dir);
          // Hold the link for a while (alternately a tick and a millisecond): the walk must meet it.
          await new Promise((r) => (swaps % 2 ? setImmediate(r) : setTimeout(r, 2)));
          await unlink(dir);
          await rename(aside, dir);
          swaps++;
        } catch {
          // The walk deleted or moved it meanwhile: go on with the next one.
        }
      }
    })();
    return {
      stop: async () => {
        running = false;
        await loop;
        return swaps;
      },
    };
  }

  async function victimUntouched(target: string): Promise<void> {
    for (const f of NAMES) {
      const stat = await lstat(path.join(target, f));
      expect(await readFile(path.join(target, f), "utf8")).toBe("precious\n");
      expect({ uid: stat.uid, gid: stat.gid }, f).toEqual({ uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 });
    }
    expect((await lstat(target)).uid).toBe(process.getuid?.() ?? 0);
  }

  it("prepare never hands over anything through a planted link", async () => {
    const { site, target } = await racedSite("race-1");
    const prepare = new LocalSiteFiles(root, owner);
    const swaps = swapper(site, target);
    for (let round = 0; round < 30; round++) {
      const check = await prepare.check("race-1");
      if (!check.ok) throw new Error(check.reason);
      await prepare.prepare("race-1", check.folder).catch((err: Error) => {
        // Without root, handing over is refused (EPERM): the victim must be untouched all the same.
        if (!/EPERM/.test(err.message)) throw err;
      });
    }
    expect(await swaps.stop()).toBeGreaterThan(10);
    await victimUntouched(target);
  });

  it("remove never deletes anything through a planted link", async () => {
    for (let round = 0; round < 10; round++) {
      const id = `race-${round}`;
      const { site, target } = await racedSite(id);
      // The deletion meets each folder once: a few folders swapped again and again.
      const swaps = swapper(site, target, 2);
      await files.remove(id).catch((err: Error) => {
        // A folder that kept changing is reported, never followed.
        if (!/kept changing/.test(err.message)) throw err;
      });
      await swaps.stop();
      await victimUntouched(target);
      await rm(target, { recursive: true, force: true });
    }
  });

  it("prepare refuses a site folder replaced since it was checked", async () => {
    await writeSite("moved-1");
    const check = await files.check("moved-1");
    if (!check.ok) throw new Error(check.reason);
    await rename(siteDir("moved-1"), `${siteDir("moved-1")}.old`);
    await mkdir(siteDir("moved-1"));
    await expect(new LocalSiteFiles(root, owner).prepare("moved-1", check.folder)).rejects.toThrow(/the site folder changed since it was checked/);
  });

  it("an unprivileged storage writer racing hard links of a root file in and out never gets it handed over", async () => {
    // The kernel's fs.protected_hardlinks (on here; the README says what it means when off) stops
    // a user from linking a file it cannot read and write; prepare skips files with other links.
    expect((await readFile("/proc/sys/fs/protected_hardlinks", "utf8")).trim()).toBe("1");
    await writeSite("hard-1");
    const shadow = path.join(outside, "shadow");
    await writeFile(shadow, "root:secret\n", { mode: 0o600 });
    const site = siteDir("hard-1");
    // The writer is the preview user itself (uid 2000 here): the site stays writable to it.
    const asWriter = process.getuid?.() === 0 ? { uid: 2000, gid: 2000 } : {};
    if (process.getuid?.() === 0) await chown(site, 2000, 2000);
    const planted = path.join(site, "planted");
    // A separate process: link the host file in, unlink it, put a plain file back, forever.
    const racer = spawn(
      process.execPath,
      [
        "-e",
        `const fs = require("node:fs"); const [f, h] = process.argv.slice(1); process.stdout.write("ready\\n");
         for (;;) { try { fs.unlinkSync(f); } catch {} try { fs.linkSync(h, f); } catch {} try { fs.unlinkSync(f); } catch {} try { fs.writeFileSync(f, "x"); } catch {} }`,
        planted,
        shadow,
      ],
      { stdio: ["ignore", "pipe", "ignore"], ...asWriter },
    );
    await new Promise((resolve) => racer.stdout.once("data", resolve));
    try {
      const prepare = new LocalSiteFiles(root, { uid: 2000, gid: 2000 });
      let rounds = 0;
      for (const until = Date.now() + 1_500; Date.now() < until; rounds++) {
        const check = await prepare.check("hard-1");
        if (!check.ok) throw new Error(check.reason);
        await prepare.prepare("hard-1", check.folder).catch((err: Error) => {
          if (!/EPERM/.test(err.message)) throw err;
        });
      }
      expect(rounds).toBeGreaterThan(10);
    } finally {
      racer.kill("SIGKILL");
    }
    const stat = await lstat(shadow);
    expect({ uid: stat.uid, gid: stat.gid, nlink: stat.nlink }).toEqual({ uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, nlink: 1 });
    expect(await readFile(shadow, "utf8")).toBe("root:secret\n");
  });
});

describe("hostile names and shapes in a site", () => {
  const owner = { uid: 4321, gid: 4322 };
  const isRoot = process.getuid?.() === 0;
  const raw = (id: string, name: Buffer) => Buffer.concat([Buffer.from(`${siteDir(id)}/`), name]);

  it("names that are not UTF-8, up to 255 bytes: handed over and deleted like any other", async () => {
    await writeSite("bytes-1");
    const names = [Buffer.alloc(255, 0xff), Buffer.from([0xff]), Buffer.from([0x66, 0x0a, 0xc3])];
    for (const name of names) await writeFile(raw("bytes-1", name), "x");
    await mkdir(raw("bytes-1", Buffer.from([0xfe, 0x64])));
    await writeFile(Buffer.concat([raw("bytes-1", Buffer.from([0xfe, 0x64])), Buffer.from("/inner")]), "y");
    const check = await files.check("bytes-1");
    if (!check.ok) throw new Error(check.reason);
    if (isRoot) {
      await new LocalSiteFiles(root, owner).prepare("bytes-1", check.folder);
      for (const name of names) expect((await lstat(raw("bytes-1", name))).uid).toBe(4321);
    }
    await files.remove("bytes-1");
    expect(existsSync(projectDir("bytes-1"))).toBe(false);
  });

  it("a tree nested deeper than the walks go: refused for good, naming it, nothing outside touched", async () => {
    await writeSite("deep-1");
    const deep = path.join(siteDir("deep-1"), ...Array.from({ length: 300 }, () => "d"));
    await mkdir(deep, { recursive: true });
    const check = await files.check("deep-1");
    if (!check.ok) throw new Error(check.reason);
    if (isRoot) {
      const err = await new LocalSiteFiles(root, owner).prepare("deep-1", check.folder).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PermanentError);
      expect((err as Error).message).toMatch(/nested more than 256 folders deep/);
    }
    const err = await files.remove("deep-1").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toMatch(/storage: delete site folder .* failed: .* nested more than 256 folders deep/);
  });
});

