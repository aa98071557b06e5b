import type { MetricsJson } from "../metrics.js";
import type { StoredNode } from "../store/store.js";

/**
 * What the primary and the worker processes of `--workers N` say to each
 * other over Node's cluster IPC: calls to the primary's services and their
 * answers (the embedded store, and the connection and failed-login counts,
 * live in the primary, so every worker's decisions meet in one place), the
 * store's announcements (membership, up/down), and the metrics the primary
 * sums for /metrics and the status page.
 */
export type StoreOp = "listNodes" | "lookup" | "tokenIssued" | "tokenNode" | "claim" | "release" | "connectionOpened" | "connectionClosed" | "redirected" | "loads" | "drain" | "undrain" | "waitUntilUp";
export type LimitsOp = "admit" | "leftPreAuth" | "closed" | "blocked" | "record";

/** A call to one of the primary's services; without an id nobody waits for its answer. */
export type Call<S extends string = string, Op extends string = string> = { type: "xmpp-lb:call"; service: S; id?: number; op: Op; args: unknown[] };

export type WorkerMessage =
  | Call<"store", StoreOp>
  | Call<"limits", LimitsOp>
  | { type: "xmpp-lb:stopped" }
  | { type: "xmpp-lb:metrics-ready" }
  | { type: "xmpp-lb:metrics-answer"; id: number; metrics: MetricsJson };

export type PrimaryMessage =
  | { type: "xmpp-lb:answer"; service: string; id: number; ok: true; value: unknown }
  | { type: "xmpp-lb:answer"; service: string; id: number; ok: false; error: string }
  | { type: "xmpp-lb:nodes"; nodes: StoredNode[] }
  | { type: "xmpp-lb:status"; up: boolean; reason?: string }
  | { type: "xmpp-lb:stop"; drainMs: number }
  | { type: "xmpp-lb:metrics-request"; id: number };

export function isMessage<T extends { type: string }>(message: unknown, type: T["type"]): message is T {
  return typeof message === "object" && message !== null && (message as { type?: unknown }).type === type;
}
