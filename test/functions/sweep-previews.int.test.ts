/**
 * sweep-previews and sweep-item against the real engine and a real Postgres (state and the
 * orchestrator's `projects` table): each pass with seeded containers and rows, the negative cases
 * (unlabelled `preview-*` containers, another owner's, running and starting previews, a container
 * younger than the grace period: none touched), the guards, and the dry run.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LABELS } from "../../docker/labels.js";
import { openPg } from "../../sql/drivers/pg.js";
import { SqlProjectDirectory } from "../../sql/projects.js";
import { sweepActions } from "../../functions/sweep-item.js";
import { TEST_LABEL } from "../helpers/docker.js";
import { HOUR, createSweepTestEnv, type SweepTestEnv } from "../helpers/sweep-env.js";

// A fresh engine network, database and stand-in per test: no test sees another's previews.
// Grace 0 unless a test says otherwise: every container counts as older than the grace period.
let env: SweepTestEnv;
beforeEach(async () => {
  env = await createSweepTestEnv({ settings: { graceMs: 0 } });
});
afterEach(async () => {
  await env?.cleanup();
});

const docker = () => env.docker.docker;
const exists = async (nameOrId: string) =>
  docker()
    .getContainer(nameOrId)
    .inspect()
    .then(
      () => true,
      (err: { statusCode?: number }) => {
        if (err.statusCode === 404) return false;
        throw err;
      },
    );
const containerIdOf = async (projectId: string) => (await docker().getContainer(`preview-${projectId}`).inspect()).Id;

/** A container under a preview's name that the sweep must never touch (labels as given). */
async function plantContainer(projectId: string, labels: Record<string, string>): Promise<string> {
  const c = await docker().createContainer({
    name: `preview-${projectId}`,
    Image: env.docker.image,
    Labels: { [TEST_LABEL]: env.docker.runId, ...labels },
    HostConfig: { NetworkMode: env.docker.options.network },
  });
  return c.id;
}

/** A project whose preview stopped long ago, its container replaced by one with `labels`. */
async function expiredRowWithContainer(prefix: string, labels: Record<string, string>) {
  const id = await env.stoppedPreview(prefix);
  await env.backdateStop(id, 25 * HOUR);
  await docker().getContainer(`preview-${id}`).remove({ force: true });
  const planted = await plantContainer(id, labels);
  return { id, planted };
}

const decisionsOf = async (runId: string) => (await env.decisions.list({ runId })).map((d) => `${d.pass}/${d.action}/${d.projectId ?? "-"}`);

describe("forged item events", () => {
  it("an expire naming another container's id never removes it: only this instance's preview of that project, under its name", async () => {
    const id = await env.stoppedPreview("forged");
    await env.backdateStop(id, 25 * HOUR);
    // Someone else's stopped container, with an anonymous volume.
    const victim = await docker().createContainer({
      Image: env.docker.image,
      Labels: { [TEST_LABEL]: env.docker.runId, app: "someone-else" },
      HostConfig: { NetworkMode: env.docker.options.network },
      Volumes: { "/data": {} },
    });
    const actions = sweepActions(env.deps, env.sweepDeps);
    const outcome = await actions.expire(id, "forged-run", victim.id);
    expect(outcome).toMatchObject({ done: false });
    expect(await exists(victim.id)).toBe(true);
    // The preview's own container is still there too: the item names another id.
    expect(await exists(`preview-${id}`)).toBe(true);
    await victim.remove({ force: true, v: true });
  });

  it("an expire of the row's own container (removed by id, no ownership inspect) still never removes it once it runs again", async () => {
    const id = await env.stoppedPreview("again");
    await env.backdateStop(id, 25 * HOUR);
    const recorded = (await env.store.get(id))!.containerId!;
    expect(recorded).toMatch(/^[0-9a-f]{64}$/);
    // Started behind the row's back (by hand, or a resume racing the sweep): the engine refuses
    // the removal without force, and the refusal is classified as "runs again".
    await docker().getContainer(recorded).start();
    const actions = sweepActions(env.deps, env.sweepDeps);
    const outcome = await actions.expire(id, "again-run", recorded);
    expect(outcome).toEqual({ done: false, reason: "container runs again; left alone" });
    expect((await docker().getContainer(recorded).inspect()).State.Running).toBe(true);
    expect(await env.store.get(id)).toMatchObject({ status: "stopped", containerId: recorded });

    // Stopped again: the same item now removes it by that id, and the row records it.
    await docker().getContainer(recorded).stop({ t: 1 });
    expect(await actions.expire(id, "again-run-2", recorded)).toMatchObject({ done: true, action: "removed" });
    expect(await exists(recorded)).toBe(false);
    expect(await env.store.get(id)).toMatchObject({ status: "stopped", containerId: null });
  });
});

describe("expired pass", () => {
  it("removes the containers of previews stopped longer than STOPPED_RETENTION, keeps their files and rows; touches nothing else", async () => {
    const old = await env.stoppedPreview("old");
    await env.backdateStop(old, 25 * HOUR);
    const oldContainer = await containerIdOf(old);
    const recent = await env.stoppedPreview("recent");
    await env.backdateStop(recent, 1 * HOUR);
    const running = env.docker.projectId("run");
    await env.docker.writeSite(running);
    await env.launch(running);
    const starting = env.docker.projectId("start");
    await env.docker.writeSite(starting);
    await env.launch(starting);
    await env.database.db.query("update previews set status = 'starting' where project_id = $1", [starting]);
    const unlabelled = await expiredRowWithContainer("nolabel", {});
    const otherOwner = await expiredRowWithContainer("other", { [LABELS.MANAGED]: "true", [LABELS.OWNER]: "someone-else" });
    await env.addProjects(old, recent, running, starting, unlabelled.id, otherOwner.id);
    const before = new Map(await Promise.all([recent, running, starting, unlabelled.id, otherOwner.id].map(async (id) => [id, await env.store.get(id)] as const)));

    const run = await env.sweep();
    expect(run.error).toBeUndefined();
    // Expiries are batched in the run's own expire steps: no item event.
    expect(run.result).toMatchObject({ dryRun: false, expired: { remove: 1, removed: 1, left: 0, failed: 0 }, orphans: { remove: 0, guard: null } });
    expect(run.items).toEqual([]);

    expect(await exists(oldContainer)).toBe(false);
    expect(existsSync(env.docker.site.sitePath(old))).toBe(true); // the project exists: files stay
    const row = await env.store.get(old);
    expect(row).toMatchObject({ status: "stopped", containerId: null, url: null, reason: expect.stringMatching(/^sweep: container removed, stopped since .* \(longer than STOPPED_RETENTION 24h\)/) });
    expect(row?.stoppedAt?.getTime()).toBeLessThan(Date.now() - 24 * HOUR); // the stop time is kept
    // Nothing else moved: containers still there, rows unchanged.
    for (const id of [recent, running, starting]) expect(await exists(`preview-${id}`)).toBe(true);
    expect(await exists(unlabelled.planted)).toBe(true);
    expect(await exists(otherOwner.planted)).toBe(true);
    for (const [id, was] of before) expect(await env.store.get(id), id).toEqual(was);
    expect((await docker().getContainer(`preview-${running}`).inspect()).State.Running).toBe(true);
    expect(await decisionsOf(run.runId)).toEqual(expect.arrayContaining([`expired/remove/${old}`, `expired/removed/${old}`, "run/summary/-"]));

    // A launch afterwards brings it back with a new container.
    const relaunch = await env.launch(old);
    expect(relaunch.error).toBeUndefined();
    expect(await env.store.get(old)).toMatchObject({ status: "running", containerId: expect.not.stringMatching(oldContainer) });

    // The next sweep has nothing to do for these.
    const again = await env.sweep();
    expect(again.items).toEqual([]);
    expect(again.result).toMatchObject({ expired: { remove: 0, removed: 0 } });
  });

  it("never removes a container younger than SWEEP_GRACE: skipped and recorded", async () => {
    env.sweepDeps.settings.graceMs = 10 * 60_000;
    const young = await env.stoppedPreview("young");
    await env.backdateStop(young, 25 * HOUR);
    await env.addProjects(young);
    const run = await env.sweep();
    expect(run.items).toEqual([]);
    expect(run.result).toMatchObject({ expired: { remove: 0, skip: 1 } });
    expect(await exists(`preview-${young}`)).toBe(true);
    const skips = await env.decisions.list({ runId: run.runId, projectId: young });
    expect(skips).toEqual([expect.objectContaining({ pass: "expired", action: "skip", reason: expect.stringMatching(/younger than SWEEP_GRACE 10m/) })]);
  });

  it("a managed container without a row expires by its State.FinishedAt", async () => {
    const id = await env.stoppedPreview("rowless");
    await env.database.db.query("delete from previews where project_id = $1", [id]);
    await env.addProjects(id);
    // 25 hours later, as far as the sweep can tell.
    env.clock.offsetMs = 25 * HOUR;
    const recentRow = await env.stoppedPreview("rowkept");
    await env.backdateStop(recentRow, -25 * HOUR); // stopped "now" on the shifted clock
    await env.addProjects(recentRow);
    const run = await env.sweep();
    expect(run.result).toMatchObject({ expired: { remove: 1, removed: 1 } });
    const decided = await env.decisions.list({ runId: run.runId, projectId: id });
    expect(decided.map((d) => [d.action, d.reason])).toEqual([
      ["remove", expect.stringMatching(/^no row; container exited /)],
      ["removed", expect.stringMatching(/^sweep: container removed, exited .*\(container removed\)$/)],
    ]);
    expect(await exists(`preview-${id}`)).toBe(false);
    expect(await env.store.get(id)).toBeNull();
    expect(await exists(`preview-${recentRow}`)).toBe(true);
  });
});

describe("orphan pass", () => {
  it("removes previews whose project is gone (or soft-deleted) with their site folders; foreign containers of missing projects stay", async () => {
    const kept = await Promise.all([1, 2, 3].map(() => env.stoppedPreview("keep")));
    const gone = await env.stoppedPreview("gone");
    const softDeleted = env.docker.projectId("soft");
    await env.docker.writeSite(softDeleted);
    await env.launch(softDeleted); // running: an orphan is removed running or not
    const unlabelled = env.docker.projectId("foreign");
    const unlabelledId = await plantContainer(unlabelled, {});
    const otherOwner = env.docker.projectId("theirs");
    const otherOwnerId = await plantContainer(otherOwner, { [LABELS.MANAGED]: "true", [LABELS.OWNER]: "someone-else", [LABELS.PROJECT_ID]: otherOwner });
    await env.addProjects(...kept, { id: softDeleted, deletedAt: new Date() });

    const run = await env.sweep();
    expect(run.result).toMatchObject({ orphans: { remove: 2, guard: null } });
    expect(run.items.map((i) => i.event.data.projectId).sort()).toEqual([gone, softDeleted].sort());
    for (const item of run.items) expect(item.error).toBeUndefined();
    for (const id of [gone, softDeleted]) {
      expect(await exists(`preview-${id}`)).toBe(false);
      expect(existsSync(path.dirname(env.docker.site.sitePath(id)))).toBe(false);
      expect(await env.store.get(id)).toMatchObject({ status: "removed", containerId: null, reason: expect.stringMatching(/^sweep: orphan removed \(project .* not found in table projects/) });
      expect((await env.store.events(id)).slice(-2).map((e) => e.type)).toEqual(["removing", "removed"]);
      expect(env.emitted("preview.removed", id)).toHaveLength(1);
    }
    for (const id of kept) expect(await exists(`preview-${id}`)).toBe(true);
    expect(await exists(unlabelledId)).toBe(true);
    expect(await exists(otherOwnerId)).toBe(true);
    expect(await decisionsOf(run.runId)).toEqual(expect.arrayContaining([`orphans/remove/${gone}`, `orphans/removed/${gone}`, `orphans/removed/${softDeleted}`]));
  });

  it("an item re-checks the project before removing: a project created since the plan is kept (skip recorded)", async () => {
    const late = await env.stoppedPreview("late");
    const kept = await Promise.all([1, 2].map(() => env.stoppedPreview("k")));
    await env.addProjects(...kept);
    const run = await env.sweep({
      beforeItem: async () => {
        await env.addProjects(late); // the orchestrator created it after the plan
      },
    });
    expect(run.items.map((i) => [i.event.data.projectId, i.event.data.action])).toEqual([[late, "orphan"]]);
    expect(run.items[0]!.result).toMatchObject({ done: false, reason: `project ${late} exists` });
    expect(await exists(`preview-${late}`)).toBe(true);
    expect(existsSync(env.docker.site.sitePath(late))).toBe(true);
    expect((await env.store.get(late))?.status).toBe("stopped");
    expect(await env.decisions.list({ runId: run.runId, projectId: late })).toEqual([
      expect.objectContaining({ action: "remove" }),
      expect.objectContaining({ action: "skip", reason: `project ${late} exists` }),
    ]);
  });

  it("a project stored in another case (Proj-A1 for the preview proj-a1) exists: never an orphan", async () => {
    const ids = await Promise.all([1, 2, 3].map(() => env.stoppedPreview("case")));
    await env.database.db.query("create table cased_projects (id text primary key)");
    await env.database.db.query("insert into cased_projects (id) select upper(unnest($1::text[]))", [ids]);
    env.useProjects(new SqlProjectDirectory(env.database.db, "cased_projects", "test database"));
    const run = await env.sweep();
    expect(run.result?.orphans).toMatchObject({ remove: 0, guard: null });
    expect(run.items.filter((i) => i.event.data.action === "orphan")).toEqual([]);
    for (const id of ids) expect(await exists(`preview-${id}`), id).toBe(true);
  });

  it("without a project source, a managed container without a row is the orphan; its files stay", async () => {
    env.useProjects(null);
    const rowless = await env.stoppedPreview("norow");
    await env.database.db.query("delete from previews where project_id = $1", [rowless]);
    const others = await Promise.all([1, 2].map(() => env.stoppedPreview("withrow")));
    const run = await env.sweep();
    const orphanItems = run.items.filter((i) => i.event.data.action === "orphan");
    expect(orphanItems.map((i) => i.event.data.projectId)).toEqual([rowless]);
    expect(await exists(`preview-${rowless}`)).toBe(false);
    expect(existsSync(env.docker.site.sitePath(rowless))).toBe(true);
    for (const id of others) expect(await exists(`preview-${id}`)).toBe(true);
  });
});

describe("guards: zero removals and a recorded guard event", () => {
  /** Five previews of existing projects... */
  async function fleet(n: number) {
    return Promise.all(Array.from({ length: n }, () => env.stoppedPreview("fleet")));
  }
  async function expectGuard(run: Awaited<ReturnType<SweepTestEnv["sweep"]>>, reason: RegExp, ids: string[]) {
    expect(run.error).toBeUndefined();
    expect(run.items.filter((i) => i.event.data.action === "orphan")).toEqual([]);
    expect(run.result?.orphans).toMatchObject({ remove: 0, guard: expect.stringMatching(reason) });
    for (const id of ids) expect(await exists(`preview-${id}`), id).toBe(true);
    const guards = await env.decisions.list({ runId: run.runId, pass: "orphans" });
    expect(guards).toEqual([expect.objectContaining({ action: "guard", projectId: null, reason: expect.stringMatching(reason) })]);
  }

  it("the project table unreachable", async () => {
    const ids = await fleet(2);
    const unreachable = openPg("postgres://nobody:nothing@127.0.0.1:1/none", 2_000);
    try {
      env.useProjects(new SqlProjectDirectory(unreachable, "projects", "an unreachable server"));
      await expectGuard(await env.sweep(), /^orphan pass skipped: project query failed: database: read projects from table projects \(an unreachable server\) failed/, ids);
    } finally {
      await unreachable.close();
    }
  });

  it("the project table missing", async () => {
    const ids = await fleet(1);
    env.useProjects(new SqlProjectDirectory(env.database.db, "no_such_projects", "test database"));
    await expectGuard(await env.sweep(), /table no_such_projects does not exist/, ids);
  });

  it("the project table empty while previews exist", async () => {
    const ids = await fleet(2);
    await env.database.db.query("create table empty_projects (id text primary key)");
    env.useProjects(new SqlProjectDirectory(env.database.db, "empty_projects", "test database"));
    await expectGuard(await env.sweep(), /returned no project at all while \d+ previews exist/, ids);
  });

  it("a deleted_at column that is not a time (boolean, text): refused rather than guessed", async () => {
    const ids = await fleet(2);
    await env.database.db.query("create table flag_projects (id text primary key, deleted_at boolean)");
    await env.database.db.query("insert into flag_projects (id, deleted_at) select unnest($1::text[]), false", [ids]);
    env.useProjects(new SqlProjectDirectory(env.database.db, "flag_projects", "test database"));
    await expectGuard(await env.sweep(), /column deleted_at of table flag_projects is boolean, not a timestamp or date; refusing to guess/, ids);
  });

  it("90 % of the projects missing", async () => {
    const ids = await fleet(10);
    await env.database.db.query("create table few_projects (id text primary key)");
    await env.database.db.query("insert into few_projects (id) values ($1)", [ids[0]]);
    env.useProjects(new SqlProjectDirectory(env.database.db, "few_projects", "test database"));
    await expectGuard(await env.sweep(), /would remove \d+ of \d+ managed previews, more than SWEEP_MAX_ORPHAN_FRACTION 0.5/, ids);
  });
});

describe("reconcile pass", () => {
  it("corrects rows that say running while the container is gone or exited; leaves a fresh starting row alone; adopts a container without a row", async () => {
    const gone = env.docker.projectId("gone");
    const exited = env.docker.projectId("exited");
    const fresh = env.docker.projectId("fresh");
    const adopted = env.docker.projectId("adopt");
    for (const id of [gone, exited, fresh, adopted]) {
      await env.docker.writeSite(id);
      await env.launch(id);
    }
    await docker().getContainer(`preview-${gone}`).remove({ force: true });
    const exitedId = await containerIdOf(exited);
    await docker().getContainer(exitedId).stop({ t: 1 });
    await docker().getContainer(`preview-${fresh}`).stop({ t: 1 });
    await env.database.db.query("update previews set status = 'starting' where project_id = $1", [fresh]);
    await env.database.db.query("delete from previews where project_id = $1", [adopted]);
    for (const id of [gone, exited]) await env.backdateUpdate(id, 20 * 60_000);
    env.sweepDeps.settings.graceMs = 10 * 60_000;
    await env.addProjects(gone, exited, fresh, adopted);
    const adoptedId = await containerIdOf(adopted);

    const run = await env.sweep();
    expect(run.result?.reconcile).toMatchObject({ correct: 2, adopt: 1, guard: null });
    for (const item of run.items) expect(item.error, String(item.event.data.projectId)).toBeUndefined();
    expect(await env.store.get(gone)).toMatchObject({ status: "stopped", containerId: null, reason: "sweep: recorded running but its container is gone" });
    expect(await env.store.get(exited)).toMatchObject({ status: "stopped", containerId: exitedId, reason: "sweep: recorded running but its container is exited" });
    expect(await exists(exitedId)).toBe(true); // corrected, not removed
    expect(await env.store.get(fresh)).toMatchObject({ status: "starting" });
    expect(await env.store.get(adopted)).toMatchObject({ status: "running", containerId: adoptedId, url: `http://${adopted}.preview.localhost` });
    expect(env.emitted("preview.stopped", gone).length).toBeGreaterThanOrEqual(1);
    const skips = await env.decisions.list({ runId: run.runId, pass: "reconcile" });
    expect(skips).toEqual(expect.arrayContaining([expect.objectContaining({ action: "skip", projectId: fresh, reason: expect.stringMatching(/updated within SWEEP_GRACE/) })]));
  });
});

describe("dry run", () => {
  it("changes nothing and reports what it would do", async () => {
    const expired = await env.stoppedPreview("dry-exp");
    await env.backdateStop(expired, 25 * HOUR);
    const orphan = await env.stoppedPreview("dry-orphan");
    const others = await Promise.all([1, 2, 3].map(() => env.stoppedPreview("dry-keep")));
    await env.addProjects(expired, ...others);
    const rowsBefore = await env.store.list();
    const containersBefore = await env.containerNames();
    const eventsBefore = env.inngestServer.events.length;

    const run = await env.sweep({ dryRun: true });
    expect(run.error).toBeUndefined();
    expect(run.result).toMatchObject({ dryRun: true, expired: { remove: 1 }, orphans: { remove: 1, guard: null } });
    expect(run.result?.items).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ projectId: expired, action: "expire", reason: expect.stringMatching(/STOPPED_RETENTION 24h/) }),
        expect.objectContaining({ projectId: orphan, action: "orphan", reason: expect.stringMatching(/not found in table projects/) }),
      ]),
    );
    expect(run.items).toEqual([]);
    expect(env.inngestServer.events.length).toBe(eventsBefore);
    expect(await env.store.list()).toEqual(rowsBefore);
    expect(await env.containerNames()).toEqual(containersBefore);
    expect(existsSync(env.docker.site.sitePath(orphan))).toBe(true);
    expect(await env.decisions.list({ runId: run.runId })).toEqual([]);
  });

  it("refuses an invalid request before any step", async () => {
    const run = await env.sweep({ dryRun: "yes" as unknown as boolean });
    expect(run.error).toMatchObject({ message: expect.stringMatching(/dryRun/) });
  });
});
