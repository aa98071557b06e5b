import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { tracked } from "./children.js";
import { waitFor } from "./wait.js";

const HAPROXY = process.env.HAPROXY_BIN ?? "/usr/sbin/haproxy";

export interface HaproxyRun {
  /** Everything HAProxy logged (its log goes to stdout). */
  log(): string;
  stop(): Promise<void>;
}

/**
 * Runs Debian's HAProxy in the foreground with `config` (its `global` and
 * `defaults` are added here: mode tcp, logs on stdout) and waits until
 * `readyPort` on 127.0.0.1 accepts connections.
 */
export async function startHaproxy(config: string, readyPort: number): Promise<HaproxyRun> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "xmpp-lb-haproxy-"));
  const file = path.join(dir, "haproxy.cfg");
  await writeFile(
    file,
    `global\n  log stdout format raw local0\n\ndefaults\n  mode tcp\n  log global\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\n${config}\n`,
  );
  const child: ChildProcess = spawn(HAPROXY, ["-f", file, "-db"], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  const exited = tracked(child);
  const accepts = (): Promise<boolean> =>
    new Promise((resolve) => {
      const s = net.connect(readyPort, "127.0.0.1", () => (s.destroy(), resolve(true)));
      s.once("error", () => resolve(false));
    });
  try {
    await waitFor(`HAProxy listening on ${readyPort}`, async () => child.exitCode === null && (await accepts()), 5000);
  } catch (err) {
    child.kill("SIGKILL");
    throw new Error(`${(err as Error).message}\n${output}`);
  }
  return {
    log: () => output,
    stop: async () => {
      child.kill("SIGTERM");
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
