import type { Worker } from "node:cluster";
import { StoreError } from "../errors.js";
import { isMessage, type Call, type PrimaryMessage } from "./messages.js";

type Answer = Extract<PrimaryMessage, { type: "xmpp-lb:answer" }>;

/**
 * A worker's calls to one of the primary's services over cluster IPC: each a
 * message, its answer matched by id (the service name keeps the answers of
 * several callers apart). A failed call rejects with a StoreError.
 */
export class IpcCaller<Op extends string> {
  private nextId = 0;
  /** Why calls fail now that close() was called. */
  private closedBecause: string | undefined;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (err: Error) => void }>();

  constructor(
    private readonly service: string,
    private readonly channel: NodeJS.Process = process,
  ) {
    channel.on("message", this.onMessage);
  }

  private readonly onMessage = (message: unknown): void => {
    if (!isMessage<Answer>(message, "xmpp-lb:answer") || message.service !== this.service) return;
    const waiting = this.pending.get(message.id);
    this.pending.delete(message.id);
    if (message.ok) waiting?.resolve(message.value);
    else waiting?.reject(new StoreError(message.error));
  };

  call<T>(op: Op, args: unknown[]): Promise<T> {
    if (this.closedBecause !== undefined || !this.channel.connected) return Promise.reject(new StoreError(this.closedBecause ?? "the primary is gone"));
    const id = ++this.nextId;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.channel.send!({ type: "xmpp-lb:call", service: this.service, id, op, args } satisfies Call);
    });
  }

  /** A call nobody waits for (still sent after close(): a stopping worker's connections close too). */
  tell(op: Op, args: unknown[]): void {
    if (this.channel.connected) this.channel.send!({ type: "xmpp-lb:call", service: this.service, op, args } satisfies Call);
  }

  /** Stops listening: calls still waiting, and later ones, reject. */
  close(reason: string): void {
    this.closedBecause = reason;
    this.channel.off("message", this.onMessage);
    for (const waiting of this.pending.values()) waiting.reject(new StoreError(reason));
    this.pending.clear();
  }
}

/**
 * Answers one worker's calls to `service` with `handle` (its value, or what
 * its promise gives); calls without an id get no answer. Returns what stops it.
 */
export function answerCalls<Op extends string>(worker: Worker, service: string, handle: (op: Op, args: unknown[]) => unknown): () => void {
  const send = (message: PrimaryMessage): void => {
    if (worker.isConnected()) worker.send(message);
  };
  const onMessage = (message: unknown): void => {
    if (!isMessage<Call>(message, "xmpp-lb:call") || message.service !== service) return;
    const { id } = message;
    // Started at once, so one worker's calls reach the service in the order it sent them.
    const result = new Promise((resolve) => resolve(handle(message.op as Op, message.args)));
    result.then(
      (value) => id !== undefined && send({ type: "xmpp-lb:answer", service, id, ok: true, value }),
      (err: Error) => id !== undefined && send({ type: "xmpp-lb:answer", service, id, ok: false, error: err.message }),
    );
  };
  worker.on("message", onMessage);
  return () => worker.off("message", onMessage);
}
