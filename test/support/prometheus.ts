// Test fixture: Debian's Prometheus (the `prometheus` package, which ships
// `promtool` too), run by the tests on a free loopback port with its own temp
// dir for the config and the TSDB, and stopped (or killed at exit) afterwards.

import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { hookExit, liveDirs, tracked } from "./children.js";
import { freePort, waitFor } from "./wait.js";

export const PROMETHEUS = process.env.PROMETHEUS_BIN ?? "/usr/bin/prometheus";
export const PROMTOOL = process.env.PROMTOOL_BIN ?? "/usr/bin/promtool";

/** A describe()'s `skip` option: these tests need Debian's prometheus package. */
export const prometheusMissing: string | false = existsSync(PROMETHEUS) && existsSync(PROMTOOL) ? false : `no ${PROMETHEUS} or ${PROMTOOL} (apt-get install prometheus)`;

const execFileP = promisify(execFile);

/** Runs promtool in `cwd`; resolves with its exit code and output (a failing check is an answer, not an error). */
export async function promtool(args: string[], cwd: string): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await execFileP(PROMTOOL, args, { cwd, timeout: 60_000 });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string; message: string };
    if (typeof e.code !== "number") throw err;
    return { code: e.code, output: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

export interface PrometheusRun {
  /** http://127.0.0.1:PORT */
  url: string;
  /** GET on the HTTP API (`/api/v1/...`): the `data` of a `success` answer. */
  api<T>(pathAndQuery: string): Promise<T>;
  /** Everything Prometheus logged. */
  log(): string;
  stop(): Promise<void>;
}

/** Starts Prometheus with `files` (name → text, `prometheus.yml` among them) in a temp dir; resolves once it is ready. */
export async function startPrometheus(files: Record<string, string>): Promise<PrometheusRun> {
  hookExit();
  const dir = await mkdtemp(path.join(os.tmpdir(), "xmpp-lb-prometheus-"));
  liveDirs.add(dir);
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(PROMETHEUS, [`--config.file=${path.join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${path.join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`, "--log.level=warn"], {
    cwd: dir,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  child.once("error", () => {}); // ENOENT shows as an early exit below
  const exited = tracked(child);
  const stop = async (): Promise<void> => {
    child.kill("SIGTERM");
    const late = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(late);
    await rm(dir, { recursive: true, force: true });
    liveDirs.delete(dir);
  };
  try {
    await waitFor("Prometheus to be ready", async () => {
      if (child.exitCode !== null) throw new Error(`prometheus exited (${child.exitCode}):\n${output}`);
      return fetch(`${url}/-/ready`).then((r) => r.ok, () => false);
    }, 30_000);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url,
    async api<T>(pathAndQuery: string): Promise<T> {
      const answer = (await (await fetch(`${url}${pathAndQuery}`)).json()) as { status: string; data: T; error?: string };
      if (answer.status !== "success") throw new Error(`${pathAndQuery}: ${answer.error ?? answer.status}`);
      return answer.data;
    },
    log: () => output,
    stop,
  };
}
