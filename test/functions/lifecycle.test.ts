/**
 * The transition table itself (pure). The SQL store walks every status x action against it on
 * all three drivers in test/sql/*.int.test.ts; the in-memory store of the unit tier applies it
 * the same way.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { LIFECYCLE, LIFECYCLE_ACTIONS, PREVIEW_STATUSES, allows, createsRow, fromStatuses, type PreviewStatus } from "../../functions/lifecycle.js";

const ALL: (PreviewStatus | null)[] = [null, ...PREVIEW_STATUSES];

describe("lifecycle table", () => {
  it("names every action the functions use, and only known statuses", () => {
    expect([...LIFECYCLE_ACTIONS].sort()).toEqual([
        "adopt",
        "adoptStopped",
        "evict",
        "expire",
        "fail",
        "launch",
        "ready",
        "reconcile",
        "remove",
        "removeFailed",
        "removed",
        "stop",
        "stopFailed",
        "stopped",
      ].sort(),
    );
    for (const action of LIFECYCLE_ACTIONS) {
      expect(PREVIEW_STATUSES).toContain(LIFECYCLE[action].to);
      for (const s of LIFECYCLE[action].from) if (s !== null) expect(PREVIEW_STATUSES).toContain(s);
    }
  });

  it("every action replays on its own target, except where that target is another action's claim", () => {
    // launch->starting, ready->running, ... all converge when applied twice.
    for (const action of LIFECYCLE_ACTIONS) expect(allows(action, LIFECYCLE[action].to), action).toBe(true);
  });

  it("only launch and the sweep's adoptions create a row", () => {
    expect(LIFECYCLE_ACTIONS.filter(createsRow)).toEqual(["launch", "adopt", "adoptStopped"]);
    expect(fromStatuses("launch")).not.toContain(null);
  });

  it("the sweep never overwrites an action under way: it expires only stopped previews, corrects only starting/running ones", () => {
    expect(ALL.filter((s) => allows("expire", s))).toEqual(["stopped"]);
    expect(ALL.filter((s) => allows("reconcile", s))).toEqual(["starting", "running", "stopped"]);
    expect(ALL.filter((s) => allows("adopt", s))).toEqual([null, "running"]);
    expect(ALL.filter((s) => allows("adoptStopped", s))).toEqual([null, "stopped"]);
  });

  it("a launch never overwrites a stop or remove that came after it", () => {
    for (const later of ["stopping", "stopped", "removing", "removed"] as const) {
      expect(allows("ready", later)).toBe(false);
      expect(allows("fail", later)).toBe(false);
    }
  });

  it("the failure of one action never overwrites another action under way", () => {
    expect(ALL.filter((s) => allows("stopFailed", s))).toEqual(["stopping", "failed"]);
    expect(ALL.filter((s) => allows("removeFailed", s))).toEqual(["removing", "failed"]);
    expect(ALL.filter((s) => allows("fail", s))).toEqual(["starting", "running", "failed"]);
  });

  it("no status blocks a project forever: from every status a launch or a remove applies, or the action under way can end", () => {
    for (const status of ALL) {
      const progress = allows("launch", status) || allows("remove", status);
      if (progress) continue;
      // Only a remove under way refuses both; it ends as removed or, failing, as failed.
      expect(status).toBe("removing");
      expect(allows("removed", status) && allows("removeFailed", status)).toBe(true);
      expect(allows("launch", LIFECYCLE.removeFailed.to)).toBe(true);
    }
    // Every status can be left again (nothing is terminal but by choice: removed relaunches).
    for (const status of PREVIEW_STATUSES) {
      expect(LIFECYCLE_ACTIONS.some((a) => allows(a, status) && LIFECYCLE[a].to !== status), status).toBe(true);
    }
  });
});

describe("the README's matrix", () => {
  it("is the table, rendered", () => {
    const cols: (PreviewStatus | null)[] = [null, ...PREVIEW_STATUSES];
    const lines = [
      `| action \\ from | ${cols.map((c) => c ?? "(no row)").join(" | ")} |`,
      `|${["", ...cols].map(() => "---").join("|")}|`,
      ...LIFECYCLE_ACTIONS.map((a) => `| \`${a}\` | ${cols.map((c) => (allows(a, c) ? LIFECYCLE[a].to : "·")).join(" | ")} |`),
    ];
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    expect(readme).toContain(lines.join("\n"));
  });
});
