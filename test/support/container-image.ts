// Builds the repository's Containerfile with podman, reaching the npm registry the way this machine's npm
// does: its registry (a build argument), its CA file (the npm-ca build secret) and its proxy (the
// builder's predefined proxy arguments). Nothing about a registry is written into the repository.

import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { promisify } from "node:util";
import { ROOT } from "./cli.js";
import { CONTAINER_LIMITS, podman } from "./podman.js";

const execFileP = promisify(execFile);

/** `--build-arg` and `--secret` options from the machine's effective npm configuration. */
export async function npmBuildOptions(): Promise<string[]> {
  const { stdout } = await execFileP("npm", ["config", "ls", "--json"], { cwd: ROOT });
  const config = JSON.parse(stdout) as Record<string, unknown>;
  const text = (key: string): string | undefined => (typeof config[key] === "string" && config[key] !== "" ? (config[key] as string) : undefined);
  const options: string[] = [];
  const registry = text("registry");
  if (registry !== undefined) options.push("--build-arg", `NPM_REGISTRY=${registry}`);
  const ca = text("cafile") ?? process.env.NODE_EXTRA_CA_CERTS;
  if (ca !== undefined && existsSync(ca)) options.push("--secret", `id=npm-ca,src=${ca}`);
  // A proxy set in the environment reaches the build by itself (podman's --http-proxy); one set in npm's config is passed on.
  const httpsProxy = text("https-proxy");
  const proxy = text("proxy");
  if (httpsProxy !== undefined) options.push("--build-arg", `HTTPS_PROXY=${httpsProxy}`);
  if (proxy !== undefined) options.push("--build-arg", `HTTP_PROXY=${proxy}`);
  return options;
}

/** Builds the image on `baseImage` under a tag of its own; the caller removes it. */
export async function buildImage(baseImage: string): Promise<string> {
  const tag = `localhost/xmpp-lb-test:${randomBytes(4).toString("hex")}`;
  await podman(
    [
      "build",
      // Docker format: an OCI image would drop the HEALTHCHECK.
      "--format",
      "docker",
      "--pull=never",
      "--layers=false",
      ...CONTAINER_LIMITS,
      "--build-arg",
      `BASE_IMAGE=${baseImage}`,
      ...(await npmBuildOptions()),
      "--tag",
      tag,
      "--file",
      path.join(ROOT, "Containerfile"),
      ROOT,
    ],
    { timeoutMs: 15 * 60_000 },
  );
  return tag;
}
