import type { MetricsJson } from "../metrics.js";
import type { StoredNode } from "../store/store.js";

/**
 * What the primary and the worker processes of `--workers N` say to each
 * other over Node's cluster IPC: store calls (the embedded store lives in the
 * primary, so every worker's decisions meet in one directory), their answers,
 * the store's announcements (membership, up/down), and the metrics the
 * primary sums for /metrics.
 */
export type StoreOp = "listNodes" | "lookup" | "claim" | "release" | "connectionOpened" | "connectionClosed" | "redirected" | "loads" | "drain" | "undrain" | "waitUntilUp";

export type WorkerMessage =
  | { type: "xmpp-lb:store-call"; id: number; op: StoreOp; args: unknown[] }
  | { type: "xmpp-lb:stopped" }
  | { type: "xmpp-lb:metrics-ready" }
  | { type: "xmpp-lb:metrics-answer"; id: number; metrics: MetricsJson };

export type PrimaryMessage =
  | { type: "xmpp-lb:store-answer"; id: number; ok: true; value: unknown }
  | { type: "xmpp-lb:store-answer"; id: number; ok: false; error: string; code?: string }
  | { type: "xmpp-lb:nodes"; nodes: StoredNode[] }
  | { type: "xmpp-lb:status"; up: boolean; reason?: string }
  | { type: "xmpp-lb:stop"; drainMs: number }
  | { type: "xmpp-lb:metrics-request"; id: number };

export function isMessage<T extends { type: string }>(message: unknown, type: T["type"]): message is T {
  return typeof message === "object" && message !== null && (message as { type?: unknown }).type === type;
}
