import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CLI = ["--import", "tsx", path.join(ROOT, "src/cli.ts")];

export interface CliRun {
  child: ChildProcess;
  /** Everything written to stdout so far. */
  stdout(): string;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** Runs `xmpp-lb ARGS` (the TypeScript source, through tsx) from the repository root. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): CliRun {
  const child = spawn(process.execPath, [...CLI, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.once("exit", (code) => resolve({ code, stdout, stderr })));
  return { child, stdout: () => stdout, done };
}

/** Waits for a balancer's "listening" log line and returns the bound port. */
export function listeningPort(child: ChildProcess): Promise<number> {
  let text = "";
  return new Promise((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => {
      text += d.toString();
      const m = /"address":\{"host":"[^"]+","port":(\d+)\},"msg":"listening"/.exec(text);
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", () => reject(new Error(`exited before listening: ${text}`)));
  });
}
