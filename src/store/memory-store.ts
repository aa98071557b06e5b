import type { NodeSpec } from "../cluster/node.js";
import { LocalLoads } from "./local-loads.js";
import type { Claim, ClusterStore, NodeLoad, StoreOptions, StoredNode } from "./store.js";

interface DirectoryEntry {
  node: string;
  /** Open forwarded connections of this JID (any node). */
  open: number;
  /** When the entry may be forgotten, once `open` is 0. */
  expiresAt: number;
  /**
   * Until when a connection that broke (or a redirect) may come back to the
   * node, to resume there: a clean close of the last connection keeps the
   * entry until then, not a whole grace period.
   */
  keepUntil: number;
  /** Written by claim() and not yet confirmed by a connection or a redirect: release() may forget it. */
  unconfirmed: boolean;
}

/**
 * The embedded store: one balancer instance, nodes fixed at start (only their
 * drain flags change). A claim is atomic because it runs to completion on the
 * event loop.
 */
export class MemoryStore implements ClusterStore {
  readonly kind = "memory";
  private readonly drained = new Set<string>();
  private readonly watchers = new Set<(nodes: StoredNode[]) => void>();
  private readonly directory = new Map<string, DirectoryEntry>();
  /** FAST tokens: JID → the node that issued its latest one, and when that expires. */
  private readonly tokens = new Map<string, { node: string; expiresAt: number }>();
  private readonly load: LocalLoads;
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly nodes: readonly NodeSpec[],
    private readonly options: StoreOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.load = new LocalLoads(options.affinityTtlMs, now);
    // Forget idle entries in the background so the directory does not grow without bound.
    this.sweeper = setInterval(() => this.sweep(), Math.max(1000, Math.min(60_000, options.affinityTtlMs))).unref();
  }

  readonly up = true;

  async waitUntilUp(): Promise<void> {}

  /** The embedded store never goes away: no transitions to report. */
  onStatus(): () => void {
    return () => {};
  }

  async listNodes(): Promise<StoredNode[]> {
    return this.snapshot();
  }

  watchNodes(onChange: (nodes: StoredNode[]) => void): () => void {
    this.watchers.add(onChange);
    return () => {
      this.watchers.delete(onChange);
    };
  }

  async drain(nodeId: string): Promise<void> {
    if (this.drained.has(nodeId)) return;
    this.drained.add(nodeId);
    this.announce(nodeId);
  }

  async undrain(nodeId: string): Promise<void> {
    if (this.drained.delete(nodeId)) this.announce(nodeId);
  }

  async lookup(jid: string): Promise<string | null> {
    return this.live(jid)?.node ?? null;
  }

  async claim(jid: string, nodeId: string, replace: readonly string[]): Promise<Claim> {
    const entry = this.live(jid);
    if (entry === undefined) {
      this.directory.set(jid, { node: nodeId, open: 0, expiresAt: this.now() + this.options.affinityTtlMs, keepUntil: 0, unconfirmed: true });
      return { owner: nodeId, wrote: true };
    }
    if (entry.node !== nodeId && replace.includes(entry.node)) {
      entry.node = nodeId;
      entry.unconfirmed = true;
      entry.keepUntil = 0; // what could resume on the stale node cannot on this one
      return { owner: nodeId, wrote: true };
    }
    return { owner: entry.node, wrote: false };
  }

  async release(jid: string, nodeId: string): Promise<void> {
    const entry = this.live(jid);
    if (entry !== undefined && entry.unconfirmed && entry.node === nodeId && entry.open === 0) this.directory.delete(jid);
  }

  async connectionOpened(jid: string | null, nodeId: string): Promise<void> {
    this.load.opened(nodeId);
    if (jid === null) return;
    const entry = this.live(jid);
    if (entry === undefined) {
      this.directory.set(jid, { node: nodeId, open: 1, expiresAt: Infinity, keepUntil: 0, unconfirmed: false });
    } else {
      entry.open += 1;
      entry.unconfirmed = false;
    }
  }

  async connectionClosed(jid: string | null, nodeId: string, clean = false): Promise<void> {
    this.load.closed(nodeId);
    if (jid === null) return;
    const entry = this.directory.get(jid);
    if (entry === undefined) return;
    entry.open = Math.max(0, entry.open - 1);
    if (!clean) entry.keepUntil = this.now() + this.options.affinityTtlMs;
    if (entry.open > 0) return;
    entry.expiresAt = entry.keepUntil;
    if (entry.expiresAt <= this.now()) this.directory.delete(jid);
  }

  async redirected(jid: string | null, nodeId: string): Promise<void> {
    const until = this.now() + this.options.affinityTtlMs;
    this.load.redirected(nodeId, jid);
    if (jid === null) return;
    const entry = this.live(jid);
    if (entry === undefined) return;
    entry.unconfirmed = false;
    // The client goes to the node on its own: the balancer will not see how its session ends.
    entry.keepUntil = Math.max(entry.keepUntil, until);
    if (entry.open === 0) entry.expiresAt = Math.max(entry.expiresAt, until);
  }

  async tokenIssued(jid: string, nodeId: string, expiresAt: number): Promise<void> {
    if (expiresAt > this.now()) this.tokens.set(jid, { node: nodeId, expiresAt });
  }

  async tokenNode(jid: string): Promise<string | null> {
    const token = this.tokens.get(jid);
    if (token === undefined) return null;
    if (token.expiresAt > this.now()) return token.node;
    this.tokens.delete(jid);
    return null;
  }

  async loads(): Promise<ReadonlyMap<string, NodeLoad>> {
    return this.load.loads();
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.watchers.clear();
  }

  /** Tells the watchers, when the drained node is one of ours (other ids change nothing they see). */
  private announce(nodeId: string): void {
    if (!this.nodes.some((n) => n.id === nodeId)) return;
    for (const watcher of [...this.watchers]) watcher(this.snapshot());
  }

  private snapshot(): StoredNode[] {
    return this.nodes.map((n) => ({ ...n, draining: this.drained.has(n.id), source: "static" }));
  }

  private live(jid: string): DirectoryEntry | undefined {
    const entry = this.directory.get(jid);
    if (entry !== undefined && entry.open === 0 && entry.expiresAt <= this.now()) {
      this.directory.delete(jid);
      return undefined;
    }
    return entry;
  }

  private sweep(): void {
    const now = this.now();
    for (const [jid, entry] of this.directory) {
      if (entry.open === 0 && entry.expiresAt <= now) this.directory.delete(jid);
    }
    for (const [jid, token] of this.tokens) if (token.expiresAt <= now) this.tokens.delete(jid);
    this.load.forgetExpired();
  }
}
