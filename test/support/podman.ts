// Debian's podman, run the way it works on the test machines: runc (crun fails on their hybrid cgroup
// layout), cgroupfs, host networking, and ulimits within the sandbox's own (podman's defaults exceed them).

import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

const GLOBAL = ["--runtime", "runc", "--cgroup-manager=cgroupfs"];
/** For `podman run` and `podman build` (whose RUN steps are containers too). */
export const CONTAINER_LIMITS = ["--network", "host", "--ulimit", "nofile=10000:10000", "--ulimit", "nproc=1024:1024"];

export interface PodmanResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs podman; never throws for a non-zero exit (see podman()). */
export async function podmanStatus(args: string[], opts: { timeoutMs?: number } = {}): Promise<PodmanResult> {
  try {
    const { stdout, stderr } = await execFileP("podman", [...GLOBAL, ...args], { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string; message: string };
    return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr || e.message };
  }
}

/** Runs podman and returns its stdout; throws with the command and its stderr on failure. */
export async function podman(args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  const r = await podmanStatus(args, opts);
  if (r.code !== 0) throw new Error(`podman ${args.join(" ")} exited ${r.code}:\n${r.stderr.trim().split("\n").slice(-40).join("\n")}`);
  return r.stdout;
}

/**
 * Why podman cannot run a container here, or null when it can: it runs `true` in a root file system made of
 * the host's own /bin/true and the libraries it links, so the answer needs no image and no registry.
 */
export async function whyPodmanCannotRun(): Promise<string | null> {
  try {
    await execFileP("podman", ["--version"]);
  } catch {
    return "podman is not installed (Debian: apt-get install podman runc)";
  }
  const rootfs = await mkdtemp(path.join(os.tmpdir(), "xmpp-lb-podman-probe-"));
  try {
    const { stdout } = await execFileP("ldd", ["/bin/true"]);
    const files = ["/bin/true", ...[...stdout.matchAll(/(\/\S+)/g)].map((m) => m[1]!)];
    for (const file of files) {
      await mkdir(path.join(rootfs, path.dirname(file)), { recursive: true });
      await copyFile(file, path.join(rootfs, file));
    }
    const r = await podmanStatus(["run", "--rm", ...CONTAINER_LIMITS, "--rootfs", rootfs, "/bin/true"]);
    return r.code === 0 ? null : `podman cannot run a container here: ${r.stderr.trim()}`;
  } finally {
    await rm(rootfs, { recursive: true, force: true });
  }
}
