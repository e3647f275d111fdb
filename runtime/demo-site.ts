/**
 * The sample site of `npm run dev -- --demo`: a tiny Next.js app (next, react, react-dom pinned)
 * written where the site pipeline would write a project's site, `{STORAGE_PATH}/projects/{id}/site`
 * (storage/site-files.ts), with the preview image's next.config fragment. No node_modules: the
 * preview's entrypoint installs them on its first start.
 */
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import path from "node:path";
import { assertProjectId, type ProjectId } from "../functions/project-id.js";
import { PREVIEW_BASE_DIR } from "../docker/preview-image.js";
import { LocalSiteFiles } from "../storage/site-files.js";

export const DEMO_PROJECT_ID = "demo";

/** The text the demo's page shows. */
export const DEMO_TEXT = "Hello from your first sitebuilder preview";

const PACKAGE_JSON = {
  name: "sitebuilder-demo-site",
  version: "0.0.0",
  private: true,
  scripts: { dev: "next dev" },
  dependencies: { next: "15.5.29", react: "19.3.1", "react-dom": "19.3.1" },
};

const LAYOUT = `export const metadata = { title: "sitebuilder demo" };

export default function RootLayout({ children }) {
  return (
    <html lang="en">
      <body>{children}</body>
    </html>
  );
}
`;

const PAGE = `export default function Home() {
  return (
    <main style={{ fontFamily: "sans-serif", padding: "2rem" }}>
      <h1>${DEMO_TEXT}</h1>
      <p>Edit app/page.jsx in this site folder: next dev reloads it.</p>
    </main>
  );
}
`;

/**
 * Writes the demo site of `projectId` unless its site folder exists (an existing site, perhaps
 * edited, is left as it is). The files are written aside and renamed into place, so an
 * interrupted write never leaves half a site that would then be kept.
 */
export async function writeDemoSite(storagePath: string, projectId: ProjectId = DEMO_PROJECT_ID): Promise<{ dir: string; created: boolean }> {
  const dir = new LocalSiteFiles(storagePath).sitePath(assertProjectId(projectId));
  if (existsSync(dir)) return { dir, created: false };
  const staging = `${dir}.writing-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(path.join(staging, "app"), { recursive: true });
  await writeFile(path.join(staging, "package.json"), `${JSON.stringify(PACKAGE_JSON, null, 2)}\n`);
  await writeFile(path.join(staging, "next.config.mjs"), await readFile(path.join(PREVIEW_BASE_DIR, "next.config.fragment.mjs"), "utf8"));
  await writeFile(path.join(staging, "app", "layout.jsx"), LAYOUT);
  await writeFile(path.join(staging, "app", "page.jsx"), PAGE);
  try {
    await rename(staging, dir);
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    // Written meanwhile by another process: theirs stands.
    if (existsSync(dir)) return { dir, created: false };
    throw new Error(`demo site: writing ${dir} failed: ${(err as Error).message}`, { cause: err });
  }
  return { dir, created: true };
}
