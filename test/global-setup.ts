/**
 * Once per test run: checks the Docker engine answers (failing with a clear message, never
 * skipping), builds the stub preview image labelled with this run's id, and at the end removes
 * every container, network and image carrying that label.
 */
import { randomBytes } from "node:crypto";
import Docker from "dockerode";
import type { TestProject } from "vitest/node";
import { TEST_LABEL, stubImage, removeRun } from "./helpers/docker.js";
import { buildStubImage } from "./helpers/stub-image.js";

export default async function setup(project: TestProject) {
  const docker = new Docker();
  try {
    await docker.ping();
  } catch (err) {
    throw new Error(`tests need a Docker engine at /var/run/docker.sock (run scripts/provision.sh as root): ${(err as Error).message}`);
  }
  const runId = `${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
  await buildStubImage(docker, stubImage(runId), { [TEST_LABEL]: runId });
  project.provide("testRunId", runId);

  return async () => {
    const removed = await removeRun(docker, runId);
    const images = await docker.listImages({ filters: { label: [`${TEST_LABEL}=${runId}`] } });
    for (const image of images) await docker.getImage(image.Id).remove({ force: true }).catch(() => undefined);
    const leftover = await docker.listContainers({ all: true, filters: { label: [`${TEST_LABEL}=${runId}`] } });
    if (leftover.length) console.warn(`test teardown: ${leftover.length} labelled containers could not be removed`);
    if (removed.containers) console.info(`test teardown removed ${removed.containers} leftover containers, ${removed.networks} networks`);
  };
}
