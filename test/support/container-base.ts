// The base image the container test builds on, made here since no image registry is reachable: a
// debootstrap minimal Debian (with tini and ca-certificates, from the machine's own mirror) plus the
// Node binary and npm this machine runs, laid out as in the official Node image (/usr/local).
// The root file system is cached as a tarball under os.tmpdir(), keyed by suite, architecture, Node and
// npm versions, and the imported image is kept in podman's store: later runs reuse one or the other.

import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { cp, mkdir, mkdtemp, rename, rm, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { machineMirror } from "./apt-sources.js";
import { CONTAINER_LIMITS, podman, podmanStatus } from "./podman.js";

const execFileP = promisify(execFile);

export const CACHE_DIR = path.join(os.tmpdir(), "xmpp-lb-container-base");

function suite(): string {
  const release = readFileSync("/etc/os-release", "utf8");
  const codename = /^VERSION_CODENAME="?([a-z]+)"?$/m.exec(release)?.[1];
  if (codename === undefined) throw new Error("no VERSION_CODENAME in /etc/os-release: cannot tell which Debian suite to debootstrap");
  return codename;
}

async function npmDir(): Promise<{ dir: string; version: string }> {
  const { stdout } = await execFileP("npm", ["root", "-g"]);
  const dir = path.join(stdout.trim(), "npm");
  const { version } = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8")) as { version: string };
  return { dir, version };
}

/** Runs a long command quietly; a failure shows the end of its output. */
async function quietly(cmd: string, args: string[], timeoutMs: number): Promise<void> {
  try {
    await execFileP(cmd, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    const out = `${e.stdout ?? ""}${e.stderr ?? ""}`.trim().split("\n").slice(-30).join("\n");
    throw new Error(`${cmd} ${args.join(" ")} failed: ${e.message.split("\n")[0]}\n${out}`);
  }
}

/** debootstrap, trimmed, plus Node and npm: the root file system as a tarball at `tarball`. */
async function makeRootfsTarball(debianSuite: string, npm: { dir: string }, tarball: string): Promise<void> {
  const mirror = machineMirror(debianSuite);
  if (mirror === null) throw new Error(`no deb entry for suite ${debianSuite} in /etc/apt/sources.list or /etc/apt/sources.list.d/: debootstrap needs a mirror`);
  const work = await mkdtemp(path.join(os.tmpdir(), "xmpp-lb-debootstrap-"));
  try {
    const rootfs = path.join(work, "rootfs");
    const keyring = mirror.keyring !== undefined && existsSync(mirror.keyring) ? [`--keyring=${mirror.keyring}`] : [];
    await quietly("debootstrap", ["--variant=minbase", "--include=tini,ca-certificates", ...keyring, debianSuite, rootfs, mirror.uri], 15 * 60_000);
    // The packages' archives and lists: 80 MB an image needs no more (apt-get update brings lists back).
    await rm(path.join(rootfs, "var/cache/apt/archives"), { recursive: true, force: true });
    await rm(path.join(rootfs, "var/lib/apt/lists"), { recursive: true, force: true });
    await mkdir(path.join(rootfs, "var/cache/apt/archives/partial"), { recursive: true });
    await mkdir(path.join(rootfs, "var/lib/apt/lists/partial"), { recursive: true });
    // Node and npm where the official image has them.
    await mkdir(path.join(rootfs, "usr/local/lib/node_modules"), { recursive: true });
    await cp(process.execPath, path.join(rootfs, "usr/local/bin/node"));
    await cp(npm.dir, path.join(rootfs, "usr/local/lib/node_modules/npm"), { recursive: true, verbatimSymlinks: true });
    await symlink("../lib/node_modules/npm/bin/npm-cli.js", path.join(rootfs, "usr/local/bin/npm"));
    await symlink("../lib/node_modules/npm/bin/npx-cli.js", path.join(rootfs, "usr/local/bin/npx"));
    const partial = `${tarball}.${process.pid}.partial`;
    await mkdir(path.dirname(tarball), { recursive: true });
    await quietly("tar", ["--numeric-owner", "-C", rootfs, "-cf", partial, "."], 5 * 60_000);
    await rename(partial, tarball); // whole or absent, for a run beside this one
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export interface BaseImage {
  tag: string;
  /** How it was had: kept in podman's store, imported from the cached tarball, or made from scratch. */
  source: "store" | "tarball" | "debootstrap";
}

/** The base image's tag, making whatever is not cached yet. */
export async function ensureBaseImage(): Promise<BaseImage> {
  const debianSuite = suite();
  const npm = await npmDir();
  const key = `${debianSuite}-${os.arch()}-node${process.versions.node}-npm${npm.version}`;
  const tag = `localhost/xmpp-lb-test-base:${key}`;
  if ((await podmanStatus(["image", "exists", tag])).code === 0) return { tag, source: "store" };

  const tarball = path.join(CACHE_DIR, `${key}.tar`);
  let source: BaseImage["source"] = "tarball";
  if (!existsSync(tarball)) {
    await makeRootfsTarball(debianSuite, npm, tarball);
    source = "debootstrap";
  }
  await podman(["import", "--change", "ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "--change", 'CMD=["node"]', tarball, tag], { timeoutMs: 5 * 60_000 });
  // The machine's Node must run on the suite's libraries: say so here rather than in the image build.
  const check = await podmanStatus(["run", "--rm", ...CONTAINER_LIMITS, tag, "node", "--version"]);
  if (check.code !== 0 || check.stdout.trim() !== process.version) {
    await podmanStatus(["rmi", tag]);
    throw new Error(`the base image's node does not run (${check.stdout.trim()} ${check.stderr.trim()}): this machine's Node needs libraries a minimal ${debianSuite} lacks`);
  }
  return { tag, source };
}
