import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import { servesDomain, type NodeTable, type NodeView } from "../cluster/node.js";
import type { NodeTableHolder } from "../cluster/node-table-holder.js";
import type { LineLogger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { ClusterStore, NodeLoad } from "../store/store.js";
import { DirectoryLease } from "./lease.js";
import { hashStrategy, type Strategy } from "./strategies.js";

const NO_LOADS: ReadonlyMap<string, NodeLoad> = new Map();

export interface RouteRequest {
  /** Bare JID, or null when the login carries no identity (ANONYMOUS): no affinity then. */
  jid: string | null;
  domain: string;
  /** Nodes already tried for this connection (their dial failed): their users may move. */
  exclude?: ReadonlySet<string>;
  /**
   * Nodes this connection's transport cannot reach (a WebSocket client, a
   * node without `ws-internal=`): not chosen, but not replaced either. Their
   * users keep their entries; this connection goes elsewhere unpinned.
   */
  unreachable?: ReadonlySet<string>;
  /**
   * A FAST token login (XEP-0484): the node that issued the JID's token
   * takes it in place of the strategy's choice, while that node is
   * available; the JID's live directory entry still comes first.
   */
  token?: boolean;
}

export interface RouteDecision {
  node: NodeView;
  /**
   * How the node was found: the JID's existing node, a fresh choice by the
   * strategy, (store unreachable or too slow) rendezvous hashing over the
   * nodes known, on which every balancer instance agrees without talking, or
   * (no node up) a node marked down, dialed anyway.
   */
  via: "directory" | "strategy" | "token" | "fallback" | "panic";
  /** What the hand-off reports back, so the directory entry lives exactly as long as it should. */
  lease: DirectoryLease;
}

/**
 * A decision that took no client after all (it left, or the node cannot serve
 * its transport): a claim the strategy just made is given back; an owner the
 * directory named keeps its entry.
 */
export function giveBack(decision: RouteDecision): void {
  if (decision.via === "strategy" || decision.via === "token") decision.lease.refused();
}

export interface RouterOptions {
  /** The balancer's zone: nodes of this zone are preferred. */
  zone?: string;
  /** The longest a decision waits for the store before it hashes instead (ms). */
  storeTimeoutMs: number;
  metrics: Metrics;
}

/** What a store-backed decision came to when the store failed or was too slow. */
const STORE_UNUSABLE = Symbol("store unusable");

/**
 * Turns (bare JID, domain) into a node: the session directory first (every
 * resource of an account, and its resumptions, meet on one node), then the
 * strategy among available nodes, preferring the balancer's own zone. Reads
 * the node table snapshot of the holder; owns the directory entry of each
 * decision through its lease.
 */
export class Router {
  constructor(
    private readonly store: ClusterStore,
    private readonly strategy: Strategy,
    private readonly nodes: NodeTableHolder,
    private readonly options: RouterOptions,
  ) {}

  /** A decision, or null when no node can take the login. `log` hears of store failures. */
  async route(req: RouteRequest, log: LineLogger): Promise<RouteDecision | null> {
    const started = performance.now();
    // The embedded store answers at once: a deadline (a timer per decision) is only for a networked one.
    let decision = this.store.kind === "memory" ? await this.decide(req, log) : this.store.up ? await this.withinStoreTimeout(this.decide(req, log), log) : STORE_UNUSABLE;
    if (decision === STORE_UNUSABLE) decision = this.fallback(req, log);
    this.options.metrics.routingDuration.observe({ via: decision?.via ?? "none" }, (performance.now() - started) / 1000);
    return decision;
  }

  /** No client waits longer than the store timeout for a decision, however the store fails. */
  private async withinStoreTimeout<T>(work: Promise<T>, log: LineLogger): Promise<T | typeof STORE_UNUSABLE> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<typeof STORE_UNUSABLE>((resolve) => (timer = setTimeout(() => resolve(STORE_UNUSABLE), this.options.storeTimeoutMs)));
    const failed = work.catch((err: Error): typeof STORE_UNUSABLE => {
      log.debug({ err: err.message }, "store: no answer for this decision; hashing instead");
      return STORE_UNUSABLE;
    });
    try {
      return await Promise.race([failed, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Health is a hint, never a wall: with no node up for the domain, a node
   * marked down is dialed anyway (it may be back already, a restart takes a
   * second) before the login is refused: the JID's own node first, else the
   * hash's choice. Nothing is claimed: the directory keeps what it had.
   */
  private panic(table: NodeTable, req: RouteRequest, owner: string | null, decision: (node: NodeView, via: RouteDecision["via"]) => RouteDecision): RouteDecision | null {
    const dialable = table.nodes.filter((n) => !n.draining && servesDomain(n, req.domain) && !req.exclude?.has(n.id) && !req.unreachable?.has(n.id));
    if (dialable.length === 0) return null;
    const own = dialable.find((n) => n.id === owner);
    return decision(own ?? hashStrategy.pick(dialable, req.jid ?? randomUUID(), NO_LOADS), "panic");
  }

  /** Rendezvous hashing over the nodes known: the same answer on every instance, with no store. */
  private fallback(req: RouteRequest, log: LineLogger): RouteDecision | null {
    const candidates = this.candidates(this.nodes.table, req);
    if (candidates.length === 0) return null;
    const node = hashStrategy.pick(candidates, req.jid ?? randomUUID(), NO_LOADS);
    return { node, via: "fallback", lease: new DirectoryLease(this.store, req.jid, node.id, log) };
  }

  private async decide(req: RouteRequest, log: LineLogger): Promise<RouteDecision | null> {
    const table = this.nodes.table;
    const keeper = (id: string | null): NodeView | undefined => {
      if (id === null || req.exclude?.has(id) || req.unreachable?.has(id) || !table.keepsUsers(id)) return undefined;
      const node = table.get(id);
      return node !== undefined && servesDomain(node, req.domain) ? node : undefined;
    };
    const decision = (node: NodeView, via: RouteDecision["via"]): RouteDecision => ({ node, via, lease: new DirectoryLease(this.store, req.jid, node.id, log) });

    const available = this.candidates(table, req);
    const capped = available.some((n) => n.maxconn !== undefined);
    const [loads, tokenNode] = await Promise.all([
      available.length > 0 && (this.strategy.needsLoads || capped) ? this.store.loads() : NO_LOADS,
      req.token === true && req.jid !== null ? this.store.tokenNode(req.jid) : null,
    ]);
    // The token's node holds the token: full or not, it is this user's node as long as it is available.
    const tokenHolder = available.find((n) => n.id === tokenNode);
    // A full node (maxconn=) takes no new user; its own users, below, still reach it. Only
    // connections the node accepted fill it: a redirect is sent before any password is
    // checked, so made-up JIDs counted here would lock every real user out.
    const candidates = capped ? available.filter((n) => n.maxconn === undefined || (loads.get(n.id)?.connections ?? 0) < n.maxconn) : available;
    if (req.jid === null) {
      if (candidates.length > 0) return decision(this.strategy.pick(candidates, randomUUID(), loads), "strategy");
      return available.length === 0 ? this.panic(table, req, null, decision) : null;
    }

    if (candidates.length === 0 && tokenHolder === undefined) {
      // No node takes a new user: only the JID's own node can take this login.
      const owner = await this.store.lookup(req.jid);
      const kept = keeper(owner);
      if (kept !== undefined) return decision(kept, "directory");
      return available.length === 0 ? this.panic(table, req, owner, decision) : null;
    }

    // One round trip for a new user and a returning one: the claim keeps an
    // owner that still keeps users, or records the strategy's choice.
    const chosen = tokenHolder ?? this.strategy.pick(candidates, req.jid, loads);
    const fresh = tokenHolder === undefined ? "strategy" : "token";
    const stale = [...(req.exclude ?? []), ...table.nodes.filter((n) => !table.keepsUsers(n.id)).map((n) => n.id)];
    let claim = await this.store.claim(req.jid, chosen.id, stale);
    if (!claim.wrote && keeper(claim.owner) === undefined && req.unreachable?.has(claim.owner) !== true) {
      // The owner is a node this table does not know (removed) or one that
      // does not serve this domain: replace it, at the cost of a second trip.
      claim = await this.store.claim(req.jid, chosen.id, [...stale, claim.owner]);
    }
    if (claim.wrote) return decision(chosen, fresh);
    const kept = keeper(claim.owner);
    if (kept !== undefined) return decision(kept, "directory");
    // The owner is one this transport cannot reach: the login goes to the strategy's choice, and the entry stays the owner's.
    if (req.unreachable?.has(claim.owner) === true) return { node: chosen, via: fresh, lease: new DirectoryLease(this.store, null, chosen.id, log) };
    return decision(chosen, fresh);
  }

  private candidates(table: NodeTable, req: RouteRequest): NodeView[] {
    const all = table.available(req.domain).filter((n) => !req.exclude?.has(n.id) && !req.unreachable?.has(n.id));
    if (this.options.zone === undefined) return all;
    const local = all.filter((n) => n.zone === this.options.zone);
    return local.length > 0 ? local : all;
  }
}
