import type { NodeSpec } from "../cluster/node.js";

/** A node as the store knows it: its spec, the operator's drain flag and where it came from. */
export interface StoredNode extends NodeSpec {
  /** An operator drained it: no new users, existing sessions continue. */
  draining: boolean;
  /** "static": from --node flags; "registered": heartbeated into the store by a sidecar. */
  source: "static" | "registered";
  /** ms since epoch of the last heartbeat (registered nodes). */
  lastHeartbeat?: number;
}

/**
 * The cluster membership store: nodes, their load and the session directory
 * (bare JID -> node id). Every method is async so a networked store (Redis)
 * fits the same interface as the embedded memory store.
 */
export interface ClusterStore {
  readonly kind: "memory" | "redis";
  /** Whether the store answers now (the memory store always does). */
  readonly up: boolean;
  /** Resolves once the store answers; rejects after `timeoutMs` (start-up waits for it, bounded). */
  waitUntilUp(timeoutMs: number): Promise<void>;
  /** Calls `listener` once per transition (store lost, with the reason, or back). Returns an unsubscribe function. */
  onStatus(listener: (up: boolean, reason?: string) => void): () => void;
  /** Static nodes given at construction + registered ones, drain flags applied. */
  listNodes(): Promise<StoredNode[]>;
  /**
   * Calls `onChange` with the whole list whenever it may have changed (Redis:
   * pub/sub, plus a periodic re-read as the safety net). Returns an
   * unsubscribe function. Memory store: never calls back except when
   * drain/undrain change it.
   */
  watchNodes(onChange: (nodes: StoredNode[]) => void): () => void;
  /** The node that holds `jid`'s sessions, or null. */
  lookup(jid: string): Promise<string | null>;
  /**
   * Atomically makes `nodeId` the owner of `jid` unless another node owns it
   * already and is not listed in `replace` (stale owners: down or draining).
   * Returns the owner after the call, and whether this call wrote it. One
   * round trip serves a new user (written) and a returning one (its owner).
   */
  claim(jid: string, nodeId: string, replace: readonly string[]): Promise<Claim>;
  /**
   * The node refused this login (wrong password...): forget the claim if it
   * still names nodeId and no open connection holds it. Only an entry that
   * claim() wrote and no connectionOpened() or redirected() has confirmed yet
   * is forgotten, so a refused login never unpins a user who is within the
   * affinity window.
   */
  release(jid: string, nodeId: string): Promise<void>;
  /** A forwarded connection opened (jid null: anonymous): keeps the entry while any is open. */
  connectionOpened(jid: string | null, nodeId: string): Promise<void>;
  /**
   * ...and closed. After the last one the entry lives on for the affinity
   * grace period (the resumption window), unless every connection since then
   * ended `clean`: the client closed its stream, so nothing is left to resume
   * and the entry goes at once. A connection that broke, or a redirect, within
   * the grace period keeps the entry until the grace period after it ends.
   */
  connectionClosed(jid: string | null, nodeId: string, clean?: boolean): Promise<void>;
  /**
   * `jid` was redirected to `nodeId`: keep the entry and count the redirect
   * for the grace period, once per JID (its latest redirect; each anonymous
   * one counts).
   */
  redirected(jid: string | null, nodeId: string): Promise<void>;
  /**
   * FAST (XEP-0484): `nodeId` issued `jid` a token valid until `expiresAt`
   * (ms since epoch). A node keeps its tokens to itself, so the JID's token
   * logins go there while it is valid; the latest token issued wins.
   */
  tokenIssued(jid: string, nodeId: string, expiresAt: number): Promise<void>;
  /** The node whose FAST token `jid` holds, while it is valid, or null. */
  tokenNode(jid: string): Promise<string | null>;
  /** Load per node. Cluster-wide sum for Redis (cached, refreshed in the background). */
  loads(): Promise<ReadonlyMap<string, NodeLoad>>;
  /** Operator actions, same meaning for both stores: a drained node takes no new users. */
  drain(nodeId: string): Promise<void>;
  undrain(nodeId: string): Promise<void>;
  close(): Promise<void>;
}

/** A node's load; a node absent from loads() has none. */
export interface NodeLoad {
  /**
   * Open forwarded connections whose login the node accepted (`<success/>`):
   * the only load `maxconn=` counts.
   */
  readonly connections: number;
  /**
   * JIDs redirected to the node within the grace period. They steer
   * least-conn but never make a node full: a redirect comes before any
   * password is checked, so anyone can make one up.
   */
  readonly redirects: number;
}

/** What claim() found or wrote. */
export interface Claim {
  owner: string;
  /** This call made `owner` the JID's node (a new user, or a stale owner replaced). */
  wrote: boolean;
}

export interface StoreOptions {
  /** How long a JID stays pinned to its node after its last connection (ms). */
  affinityTtlMs: number;
}
