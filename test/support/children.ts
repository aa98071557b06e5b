import type { ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";

/**
 * Server processes (Prosody, redis-server) and temp dirs that tests start:
 * killed and removed when the test process exits, even after a failure or an
 * interrupt, so a run never leaves one behind.
 */
export const liveChildren = new Set<ChildProcess>();
export const liveDirs = new Set<string>();

/** Tracks a server process for the exit clean-up; resolves once it has exited. */
export function tracked(child: ChildProcess): Promise<void> {
  hookExit();
  liveChildren.add(child);
  return new Promise((resolve) => {
    child.once("exit", () => {
      liveChildren.delete(child);
      resolve();
    });
  });
}

let exitHooked = false;
export function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  const killAll = (): void => {
    for (const child of liveChildren) {
      child.kill("SIGCONT"); // a stopped (SIGSTOP) process must be able to die
      child.kill("SIGKILL");
    }
    for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
  };
  process.on("exit", killAll);
  // 'exit' does not run on a fatal signal; kill the children, then re-raise if nobody else handles it.
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const onSignal = (): void => {
      killAll();
      if (process.listenerCount(sig) === 1) {
        process.removeListener(sig, onSignal);
        process.kill(process.pid, sig);
      }
    };
    process.on(sig, onSignal);
  }
}
