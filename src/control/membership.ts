import { NodeTable, type MemberNode, type NodeSpec } from "../cluster/node.js";
import { NodeTableHolder } from "../cluster/node-table-holder.js";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { ClusterStore } from "../store/store.js";

/** How long start-up waits for the store before it starts on the static nodes alone. */
const STARTUP_WAIT_MS = 3000;

/**
 * The node table, kept in step with the store's membership (registered
 * nodes, drain flags) for as long as the balancer runs: the store announces
 * changes, the table holder gets a new table. Also says, once per transition,
 * when the store is lost or back, and keeps the node and store gauges.
 */
/** A membership source beside the store (DNS, a nodes file): it hands over its whole list whenever it changes. */
export interface MembershipSource {
  readonly name: string;
  /** Starts following; returns a function that stops it. */
  start(onChange: (nodes: MemberNode[]) => void): () => void;
}

export class Membership {
  readonly nodes: NodeTableHolder;
  private readonly stops: Array<() => void> = [];
  /** Each source's last list; the table is their union (the store's first, an id listed twice keeps its first). */
  private readonly lists = new Map<string, readonly MemberNode[]>();

  private constructor(
    initial: readonly MemberNode[],
    private readonly store: ClusterStore,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    this.lists.set("store", initial);
    this.nodes = new NodeTableHolder(new NodeTable([]).withMembers(initial));
    this.countNodes(this.nodes.table);
    metrics.storeUp.set(store.up ? 1 : 0);
    this.stops.push(
      this.nodes.subscribe((table, previous) => {
        this.countNodes(table);
        this.logChanges(table, previous);
      }),
      store.watchNodes((members) => this.listed("store", members)),
      store.onStatus((up, reason) => {
        metrics.storeUp.set(up ? 1 : 0);
        if (up) log.info({ store: store.kind }, "the cluster store answers again: the session directory is used again");
        else log.warn({ store: store.kind, reason }, "the cluster store is unreachable: routing hashes over the last known nodes until it answers");
      }),
    );
  }

  /** Reads the membership once (waiting, within bounds, for the store), then follows it. */
  static async start(store: ClusterStore, staticNodes: readonly NodeSpec[], metrics: Metrics, log: Logger): Promise<Membership> {
    let initial: MemberNode[];
    try {
      await store.waitUntilUp(STARTUP_WAIT_MS);
      initial = await store.listNodes();
    } catch (err) {
      log.warn({ store: store.kind, err: (err as Error).message }, "the cluster store is unreachable at start: starting on the --node list; registered nodes join when it answers");
      initial = staticNodes.map((n) => ({ ...n, draining: false, source: "static" }));
    }
    return new Membership(initial, store, metrics, log);
  }

  /** Follows another source of nodes for as long as the balancer runs. */
  follow(source: MembershipSource): void {
    this.stops.push(source.start((members) => this.listed(source.name, members)));
  }

  stop(): void {
    for (const stop of this.stops.splice(0)) stop();
  }

  private listed(source: string, members: readonly MemberNode[]): void {
    this.lists.set(source, members);
    const seen = new Set<string>();
    const union = [...this.lists.values()].flat().filter((m) => !seen.has(m.id) && seen.add(m.id));
    this.nodes.update((t) => t.withMembers(union));
  }

  private countNodes(table: NodeTable): void {
    this.metrics.nodes.reset();
    for (const node of table.nodes) this.metrics.nodes.inc({ state: node.state, source: node.source });
  }

  private logChanges(table: NodeTable, previous: NodeTable): void {
    for (const node of table.nodes) {
      const before = previous.get(node.id);
      if (before === undefined) this.log.info({ node: node.id, source: node.source, internal: `${node.internal.host}:${node.internal.port}` }, "node joined");
      else if (before.draining !== node.draining) this.log.info({ node: node.id }, node.draining ? "node drained: no new users, its sessions continue" : "node undrained");
    }
    for (const node of previous.nodes) {
      if (table.get(node.id) === undefined) this.log.info({ node: node.id }, "node left: no new users, its forwarded sessions continue");
    }
  }
}
