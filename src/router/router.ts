import { randomUUID } from "node:crypto";
import { NodeTable, servesDomain, type NodeView } from "../cluster/node.js";
import type { ClusterStore } from "../store/store.js";
import type { Strategy } from "./strategies.js";

export interface RouteRequest {
  /** Bare JID, or null when the login carries no identity (ANONYMOUS): no affinity then. */
  jid: string | null;
  domain: string;
  /** Nodes already tried for this connection (their dial failed). */
  exclude?: ReadonlySet<string>;
}

export interface RouteDecision {
  node: NodeView;
  /** How the node was found: the JID's existing node, or a fresh choice by the strategy. */
  via: "directory" | "strategy";
}

/**
 * Turns (bare JID, domain) into a node: the session directory first (every
 * resource of an account, and its resumptions, meet on one node), then the
 * strategy among available nodes, preferring the balancer's own zone. Reads a
 * node table snapshot that the control path swaps whole.
 */
export class Router {
  private nodeTable: NodeTable;

  constructor(
    private readonly store: ClusterStore,
    private readonly strategy: Strategy,
    table: NodeTable,
    private readonly zone?: string,
  ) {
    this.nodeTable = table;
  }

  get table(): NodeTable {
    return this.nodeTable;
  }

  setTable(table: NodeTable): void {
    this.nodeTable = table;
  }

  async route(req: RouteRequest): Promise<RouteDecision | null> {
    const table = this.nodeTable;
    const usable = (id: string | null): NodeView | undefined => {
      if (id === null || req.exclude?.has(id) || !table.isAvailable(id)) return undefined;
      const node = table.get(id);
      return node !== undefined && servesDomain(node, req.domain) ? node : undefined;
    };

    const owner = req.jid === null ? null : await this.store.lookup(req.jid);
    const kept = usable(owner);
    if (kept !== undefined) return { node: kept, via: "directory" };

    const candidates = this.candidates(table, req);
    if (candidates.length === 0) return null;
    const loads = this.strategy.needsLoads ? await this.store.loads() : new Map<string, number>();
    const chosen = this.strategy.pick(candidates, req.jid ?? randomUUID(), loads);
    if (req.jid === null) return { node: chosen, via: "strategy" };

    // Record the choice; a concurrent login of the same JID may have won the race.
    const stale = [...(req.exclude ?? []), ...table.nodes.filter((n) => n.state !== "up").map((n) => n.id)];
    if (owner !== null) stale.push(owner);
    const winner = await this.store.claim(req.jid, chosen.id, stale);
    if (winner === chosen.id) return { node: chosen, via: "strategy" };
    const other = usable(winner);
    return other !== undefined ? { node: other, via: "directory" } : { node: chosen, via: "strategy" };
  }

  private candidates(table: NodeTable, req: RouteRequest): NodeView[] {
    const all = table.available(req.domain).filter((n) => !req.exclude?.has(n.id));
    if (this.zone === undefined) return all;
    const local = all.filter((n) => n.zone === this.zone);
    return local.length > 0 ? local : all;
  }
}
