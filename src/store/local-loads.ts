import type { NodeLoad } from "./store.js";

interface RedirectHold {
  node: string;
  until: number;
}

function add(counts: Map<string, number>, node: string, delta: number): void {
  const n = (counts.get(node) ?? 0) + delta;
  if (n > 0) counts.set(node, n);
  else counts.delete(node);
}

/**
 * One process's load per node (the embedded store's, or one instance's share
 * of the Redis loads): open forwarded connections, and the JIDs redirected
 * within the grace period. A JID counts once however often it is redirected
 * (its latest redirect), so logging in again and again as one made-up or
 * pinned JID cannot pile load on the node that JID lives on; a fresh JID is
 * placed by the strategy, which spreads them.
 */
export class LocalLoads {
  private readonly connections = new Map<string, number>();
  private readonly redirects = new Map<string, number>();
  /**
   * The latest redirect of each JID, in expiry order (all last the same grace
   * period; a JID redirected again moves to the end). Anonymous redirects
   * have no JID: each gets a number of its own.
   */
  private readonly holds = new Map<string | number, RedirectHold>();
  private anonymous = 0;

  constructor(
    private readonly graceMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  opened(node: string): void {
    add(this.connections, node, 1);
  }

  closed(node: string): void {
    add(this.connections, node, -1);
  }

  redirected(node: string, jid: string | null): void {
    this.forgetExpired();
    const key = jid ?? this.anonymous++;
    const previous = this.holds.get(key);
    if (previous !== undefined) {
      this.holds.delete(key);
      add(this.redirects, previous.node, -1);
    }
    this.holds.set(key, { node, until: this.now() + this.graceMs });
    add(this.redirects, node, 1);
  }

  loads(): Map<string, NodeLoad> {
    this.forgetExpired();
    const loads = new Map<string, NodeLoad>();
    for (const node of new Set([...this.connections.keys(), ...this.redirects.keys()])) {
      loads.set(node, { connections: this.connections.get(node) ?? 0, redirects: this.redirects.get(node) ?? 0 });
    }
    return loads;
  }

  /** Drops the redirects older than the grace period (the front of `holds`). */
  forgetExpired(): void {
    const now = this.now();
    for (const [key, hold] of this.holds) {
      if (hold.until > now) break;
      this.holds.delete(key);
      add(this.redirects, hold.node, -1);
    }
  }
}
