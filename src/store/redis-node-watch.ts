import type { StoredNode } from "./store.js";

export type NodeWatcher = (nodes: StoredNode[]) => void;

/** What a watcher compares: everything but the heartbeat time, which changes at every heartbeat. */
function signature(nodes: readonly StoredNode[]): string {
  return JSON.stringify(nodes.map(({ lastHeartbeat: _, ...node }) => node));
}

/**
 * Hands the node list to watchers when it changes. `refresh()` re-reads it
 * (on a pub/sub announcement, after a reconnect, and every `refreshMs` as the
 * safety net: an expired heartbeat announces nothing until someone reads);
 * reads never overlap, and a refresh asked for during one runs after it.
 * Each watcher gets the list once right after subscribing (it may have
 * changed since the caller's own listNodes()), then whenever it differs from
 * the last one that watcher got.
 */
export class NodeWatch {
  /** Each watcher with the signature of the last list it got. */
  private readonly watchers = new Map<NodeWatcher, string | null>();
  private timer: NodeJS.Timeout | null = null;
  private reading = false;
  private again = false;

  constructor(
    private readonly read: () => Promise<StoredNode[]>,
    private readonly refreshMs: number,
    /** Called once, with the first watcher: subscribe to announcements and call `refresh` on each. */
    private readonly startListening: (refresh: () => void) => void,
  ) {}

  add(watcher: NodeWatcher): () => void {
    if (this.timer === null) {
      this.startListening(() => this.refresh());
      this.timer = setInterval(() => this.refresh(), this.refreshMs).unref();
    }
    this.watchers.set(watcher, null);
    this.refresh();
    return () => {
      this.watchers.delete(watcher);
    };
  }

  refresh(): void {
    if (this.reading) {
      this.again = true;
      return;
    }
    this.reading = true;
    void this.read()
      .then(
        (nodes) => this.deliver(nodes),
        () => {}, // Redis away: the status says so; the next refresh retries
      )
      .finally(() => {
        this.reading = false;
        if (this.again && this.timer !== null) {
          this.again = false;
          this.refresh();
        }
      });
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.watchers.clear();
  }

  private deliver(nodes: StoredNode[]): void {
    const sig = signature(nodes);
    for (const [watcher, seen] of [...this.watchers]) {
      if (seen === sig || !this.watchers.has(watcher)) continue;
      this.watchers.set(watcher, sig);
      watcher(nodes.map((n) => ({ ...n })));
    }
  }
}
