import type { HostPort } from "./address.js";

/** What health checks say of a node. `suspect`: a client's dial just failed, a probe will tell. */
export type NodeHealthState = "up" | "suspect" | "down";
/** How routing sees a node: its health, unless an operator drained it. */
export type NodeState = NodeHealthState | "draining";

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
  /** The PROXY protocol header this node expects first (else --backend-proxy-protocol, else none). */
  proxy?: ProxyVersion;
  /** Sessions the node takes at most (counted as least-conn counts them); a full node gets no new users. */
  maxconn?: number;
  /** The node's WebSocket URL for clients (`ws=`): what a WebSocket redirect's see-other-uri carries. */
  ws?: string;
  /** The node's WebSocket URL the balancer dials when it forwards a WebSocket client (`ws-internal=`). */
  wsInternal?: string;
}

export type ProxyVersion = "v1" | "v2";

/** Where the balancer learnt of a node: its own flags, the store's registry, or a discovery source (DNS, a nodes file). */
export type NodeSource = "static" | "registered" | "dns" | "file";

/** A node as a membership source lists it. */
export interface MemberNode extends NodeSpec {
  draining: boolean;
  source: NodeSource;
}

/** A node with its current state, as routing sees it. */
export interface NodeView extends NodeSpec {
  health: NodeHealthState;
  draining: boolean;
  source: NodeSource;
  /** Derived: "draining" when drained, otherwise the health. */
  state: NodeState;
}

export function servesDomain(node: NodeSpec, domain: string): boolean {
  return node.domains.length === 0 || node.domains.includes(domain);
}

function view(spec: NodeSpec & { source: NodeSource }, health: NodeHealthState, draining: boolean): NodeView {
  return { ...spec, health, draining, state: draining ? "draining" : health };
}

/**
 * An immutable snapshot of the cluster for routing. The control path builds a
 * new table and swaps it whole (see NodeTableHolder), so a routing decision
 * never sees a half-applied change.
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

  /** Nodes that may take new users for `domain`: up and not draining, in table order. */
  available(domain: string): NodeView[] {
    return this.nodes.filter((n) => n.state === "up" && servesDomain(n, domain));
  }

  /**
   * Whether a JID already placed on this node may stay there: not drained and
   * not confirmed down. A suspect node keeps its users until a probe decides,
   * so one slow dial does not split accounts across nodes.
   */
  keepsUsers(id: string): boolean {
    const state = this.byId.get(id)?.state;
    return state === "up" || state === "suspect";
  }

  /** A copy with one node's health changed (the same table when nothing changes). */
  withHealth(id: string, health: NodeHealthState): NodeTable {
    const current = this.byId.get(id);
    if (current === undefined || current.health === health) return this;
    return new NodeTable(this.nodes.map((n) => (n.id === id ? view(n, health, n.draining) : n)));
  }

  /** A copy with one node drained or undrained. */
  withDraining(id: string, draining: boolean): NodeTable {
    const current = this.byId.get(id);
    if (current === undefined || current.draining === draining) return this;
    return new NodeTable(this.nodes.map((n) => (n.id === id ? view(n, n.health, draining) : n)));
  }

  /**
   * The table for a new membership list: known nodes keep their health, new
   * ones are up until a probe or a dial says otherwise, nodes no longer listed
   * leave (their forwarded sessions are not the table's business: they go on).
   * The same table when nothing changed.
   */
  withMembers(members: readonly MemberNode[]): NodeTable {
    const next = members.map((m) => view(m, this.byId.get(m.id)?.health ?? "up", m.draining));
    const same = next.length === this.nodes.length && next.every((n, i) => sameNode(n, this.nodes[i]!));
    return same ? this : new NodeTable(next);
  }

  /** A table of freshly known nodes from the balancer's flags, all up until a probe or a dial says otherwise. */
  static fromSpecs(specs: readonly NodeSpec[]): NodeTable {
    return new NodeTable(specs.map((s) => view({ ...s, source: "static" }, "up", false)));
  }
}

function sameNode(a: NodeView, b: NodeView): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
