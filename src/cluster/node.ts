import type { HostPort } from "./address.js";

export type NodeState = "up" | "draining" | "down";

/** A cluster node as configured or registered: what it is, not how it is doing. */
export interface NodeSpec {
  id: string;
  /** Where the balancer dials when it forwards (a private address, say). */
  internal: HostPort;
  /** What a redirect tells the client (DualIP: the public address). */
  external: HostPort;
  weight: number;
  zone?: string;
  /** Domains this node serves; empty means every domain the balancer serves. */
  domains: readonly string[];
}

/** A node with its current state, as routing sees it. */
export interface NodeView extends NodeSpec {
  state: NodeState;
}

export function servesDomain(node: NodeSpec, domain: string): boolean {
  return node.domains.length === 0 || node.domains.includes(domain);
}

/**
 * An immutable snapshot of the cluster for routing. The control path (health
 * checks, a store watching membership) builds a new table and swaps it whole,
 * so a routing decision never sees a half-applied change.
 */
export class NodeTable {
  readonly nodes: readonly NodeView[];
  private readonly byId: ReadonlyMap<string, NodeView>;

  constructor(nodes: readonly NodeView[]) {
    this.nodes = nodes;
    this.byId = new Map(nodes.map((n) => [n.id, n]));
  }

  get(id: string): NodeView | undefined {
    return this.byId.get(id);
  }

  /** A node that may take new users: up, not draining. */
  isAvailable(id: string): boolean {
    return this.byId.get(id)?.state === "up";
  }

  /** Available nodes for `domain`, in table order. */
  available(domain: string): NodeView[] {
    return this.nodes.filter((n) => n.state === "up" && servesDomain(n, domain));
  }

  /** A copy of the table with one node's state changed (the same table when nothing changes). */
  withState(id: string, state: NodeState): NodeTable {
    const current = this.byId.get(id);
    if (current === undefined || current.state === state) return this;
    return new NodeTable(this.nodes.map((n) => (n.id === id ? { ...n, state } : n)));
  }

  /** A table of freshly known nodes, all up until a probe or a dial says otherwise. */
  static fromSpecs(specs: readonly NodeSpec[]): NodeTable {
    return new NodeTable(specs.map((s) => ({ ...s, state: "up" })));
  }
}
