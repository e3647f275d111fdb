/**
 * `DockerPreviewRuntime.environmentValues` (the `ContainerSecrets` port of diagnose-preview) on
 * the real engine: the values of a preview container's environment, including the generated
 * PAYLOAD_SECRET; nothing for a missing container or one this service does not own.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDockerTestEnv, TEST_LABEL, type DockerTestEnv } from "../helpers/docker.js";

let env: DockerTestEnv;
beforeAll(async () => {
  env = await createDockerTestEnv();
}, 120_000);
afterAll(() => env?.cleanup());

describe("environmentValues", () => {
  it("returns every value of the container's environment, the generated PAYLOAD_SECRET included", { timeout: 60_000 }, async () => {
    const id = env.projectId("env");
    await env.writeSite(id, "http");
    await env.runtime.ensureContainer(id);
    const values = await env.runtime.environmentValues(id);
    const spec = (await env.docker.getContainer(`preview-${id}`).inspect()).Config.Env;
    const secret = spec.find((e) => e.startsWith("PAYLOAD_SECRET="))!.slice("PAYLOAD_SECRET=".length);
    expect(values).toContain(secret);
    expect(values).toContain("3000");
    expect(values).toHaveLength(spec.filter((e) => !e.endsWith("=")).length);
  });

  it("nothing for a project without a container", async () => {
    expect(await env.runtime.environmentValues(env.projectId("none"))).toEqual([]);
  });

  it("nothing for a container of that name this service does not own (never read)", { timeout: 60_000 }, async () => {
    const id = env.projectId("foreign");
    const foreign = await env.docker.createContainer({
      name: `preview-${id}`,
      Image: env.image,
      Env: ["OTHER_SECRET=not-ours-to-read-0123456789"],
      Labels: { [TEST_LABEL]: env.runId },
    });
    try {
      expect(await env.runtime.environmentValues(id)).toEqual([]);
    } finally {
      await foreign.remove({ force: true });
    }
  });
});
