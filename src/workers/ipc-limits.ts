import type { AdmissionGate, AdmissionLimits, Refusal } from "../listener/admission.js";
import type { AuthFailureGate, AuthFailureLimits, AuthRefusal } from "../session/auth-failures.js";
import { IpcCaller } from "./ipc-calls.js";
import type { LimitsOp } from "./messages.js";

/** A connection accepted as the worker stops: the primary no longer answers, the client is told to come back. */
const STOPPING: Refusal = "max-connections";

/**
 * A worker's view of the primary's connection and failed-login counts, so the
 * limits hold over all workers together, not per worker. An admission waits
 * for the primary's verdict (one IPC round trip, beside the primary's own
 * hand-over of each accepted socket), and so does the failed-login check at a
 * decision; what only updates the counts is a message nobody waits for. With
 * a kind of limit unset nothing of it crosses IPC.
 */
export class IpcLimits implements AdmissionGate, AuthFailureGate {
  private readonly calls: IpcCaller<LimitsOp>;
  private readonly admitting: boolean;
  private readonly countingFailures: boolean;

  constructor(admission: AdmissionLimits, failures: AuthFailureLimits, channel: NodeJS.Process = process) {
    this.calls = new IpcCaller("limits", channel);
    this.admitting = Object.values(admission).some((limit) => limit > 0);
    this.countingFailures = failures.perAddress > 0 || failures.perJid > 0;
  }

  admit(address: string): Refusal | null | Promise<Refusal | null> {
    if (!this.admitting) return null;
    return this.calls.call<Refusal | null>("admit", [address]).catch(() => STOPPING);
  }

  leftPreAuth(): void {
    if (this.admitting) this.calls.tell("leftPreAuth", []);
  }

  closed(address: string, inPreAuth: boolean): void {
    if (this.admitting) this.calls.tell("closed", [address, inPreAuth]);
  }

  record(address: string, jid: string | null): void {
    if (this.countingFailures) this.calls.tell("record", [address, jid]);
  }

  blocked(address: string, jid: string | null): AuthRefusal | null | Promise<AuthRefusal | null> {
    if (!this.countingFailures) return null;
    // A stopping worker's last logins are not held up for want of an answer.
    return this.calls.call<AuthRefusal | null>("blocked", [address, jid]).catch(() => null);
  }

  close(): void {
    this.calls.close("the worker is stopping");
  }
}
