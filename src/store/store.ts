import type { NodeSpec } from "../cluster/node.js";

/**
 * The cluster membership store: nodes, their load and the session directory
 * (bare JID -> node id). Every method is async so a networked store (Redis)
 * fits the same interface as the embedded memory store.
 */
export interface ClusterStore {
  readonly kind: string;
  /** The nodes the store knows. */
  listNodes(): Promise<NodeSpec[]>;
  /** The node that holds `jid`'s sessions, or null. */
  lookup(jid: string): Promise<string | null>;
  /**
   * Atomically makes `nodeId` the owner of `jid` unless another node owns it
   * already and is not listed in `replace` (stale owners: down or draining).
   * Returns the owner after the call.
   */
  claim(jid: string, nodeId: string, replace: readonly string[]): Promise<string>;
  /** A forwarded connection opened (jid null: anonymous): keeps the entry while any is open. */
  connectionOpened(jid: string | null, nodeId: string): Promise<void>;
  /** ...and closed: after the last one the entry lives on for the affinity grace period. */
  connectionClosed(jid: string | null, nodeId: string): Promise<void>;
  /** `jid` was redirected to `nodeId`: keep the entry and count the load for the grace period. */
  redirected(jid: string | null, nodeId: string): Promise<void>;
  /** Load per node: open forwarded connections plus redirects within the grace period. */
  loads(): Promise<ReadonlyMap<string, number>>;
  close(): Promise<void>;
}

export interface StoreOptions {
  /** How long a JID stays pinned to its node after its last connection (ms). */
  affinityGraceMs: number;
}
