import type { Worker } from "node:cluster";
import type { Admission } from "../listener/admission.js";
import type { AuthFailures } from "../session/auth-failures.js";
import { answerCalls } from "./ipc-calls.js";
import type { LimitsOp } from "./messages.js";
import { Tally } from "./tally.js";

/**
 * Serves the primary's connection and failed-login counts to one worker, so
 * every worker's clients count against the same limits. Returns what stops
 * serving it, for when the worker has exited: the connections it still held
 * are given back then, since no close will ever come for them.
 */
export function serveLimits(admission: Admission, authFailures: AuthFailures, worker: Worker): () => void {
  // What this worker holds, and only that is taken off the counts: its open connections by address, and how many are still logging in.
  const open = new Tally<string>();
  let preAuth = 0;
  const leavePreAuth = (): void => {
    if (preAuth === 0) return;
    preAuth -= 1;
    admission.leftPreAuth();
  };
  const stopAnswering = answerCalls<LimitsOp>(worker, "limits", (op, args) => {
    const [address, second] = args as [string, unknown];
    switch (op) {
      case "admit": {
        const refusal = admission.admit(address);
        if (refusal === null) {
          open.add(address);
          preAuth += 1;
        }
        return refusal;
      }
      case "leftPreAuth":
        return leavePreAuth();
      case "closed":
        if (!open.remove(address)) return;
        admission.closed(address, false);
        if (second === true) leavePreAuth();
        return;
      case "blocked":
        return authFailures.blocked(address, second as string | null);
      case "record":
        return authFailures.record(address, second as string | null);
    }
  });
  return () => {
    stopAnswering();
    for (const address of open.takeAll()) admission.closed(address, false);
    while (preAuth > 0) leavePreAuth();
  };
}
