import { NodeTable, type NodeHealthState, type NodeView } from "./node.js";

export type TableListener = (table: NodeTable, previous: NodeTable) => void;

/**
 * The one owner of the current node table. Health checks (and membership
 * sources: the store, discovery) write it by swapping a whole new table;
 * routing, the hand-off and the admin endpoint read it. Subscribers hear of
 * every swap, in order, synchronously.
 */
export class NodeTableHolder {
  private current: NodeTable;
  private readonly listeners = new Set<TableListener>();

  constructor(initial: NodeTable) {
    this.current = initial;
  }

  get table(): NodeTable {
    return this.current;
  }

  swap(next: NodeTable): void {
    const previous = this.current;
    if (next === previous) return;
    this.current = next;
    for (const listener of this.listeners) listener(next, previous);
  }

  /** Applies `change` to the current table and swaps the result in. */
  update(change: (table: NodeTable) => NodeTable): void {
    this.swap(change(this.current));
  }

  subscribe(listener: TableListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Passive health: a client's dial to an up node failed. The node takes no
   * new users until a probe (which health checks start at once) says whether
   * it is down or was only slow.
   */
  reportDialFailure(id: string): void {
    if (this.current.get(id)?.health === "up") this.update((t) => t.withHealth(id, "suspect"));
  }

  /** Resolves with the node once its health is no longer `suspect` (or after `timeoutMs`, as it is then). */
  settled(id: string, timeoutMs: number): Promise<NodeView | undefined> {
    const now = this.current.get(id);
    if (now?.health !== "suspect") return Promise.resolve(now);
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        unsubscribe();
        resolve(this.current.get(id));
      };
      const timer = setTimeout(done, timeoutMs);
      const unsubscribe = this.subscribe((table) => {
        if (table.get(id)?.health !== "suspect") done();
      });
    });
  }

  /** Health of each node, for the health checker. */
  setHealth(id: string, health: NodeHealthState): void {
    this.update((t) => t.withHealth(id, health));
  }
}
