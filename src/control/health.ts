import type { NodeTable, NodeView } from "../cluster/node.js";
import type { NodeTableHolder } from "../cluster/node-table-holder.js";
import type { Logger } from "../log.js";
import { UpstreamError } from "../errors.js";
import type { Metrics } from "../metrics.js";

const REPROBE_FIRST_MS = 1000;

export interface HealthOptions {
  intervalMs: number;
  /** Consecutive failed probes that take an up node down. */
  fall: number;
  /** Consecutive good probes that bring a down node back. */
  rise: number;
  /** Probes a node: resolves when it opened a stream and offered features. */
  probe: (node: NodeView) => Promise<void>;
}

/**
 * Active health checks. Every interval each node is probed at the XMPP level
 * (stream opened, features received): one success brings a node back, `fall`
 * failures in a row take it out. A node that a client's dial found failing is
 * `suspect` (see NodeTableHolder.reportDialFailure): it is probed at once, and
 * that one probe decides. Every change is a swap of the holder's table.
 */
export class NodeHealth {
  private timer: NodeJS.Timeout | undefined;
  private readonly failures = new Map<string, number>();
  private readonly successes = new Map<string, number>();
  /** Down nodes are probed again sooner than the interval: after 1 s, then 2 s, 4 s... up to it. */
  private readonly reprobes = new Map<string, NodeJS.Timeout>();
  /** Nodes a probe has reached at least once: until then one failure is enough to take a node out. */
  private readonly confirmed = new Set<string>();
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Nodes whose last probe was refused with a stream error. */
  private readonly refused = new Set<string>();
  private readonly unsubscribe: () => void;

  constructor(
    private readonly nodes: NodeTableHolder,
    private readonly options: HealthOptions,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    for (const node of nodes.table.nodes) metrics.nodeUp.set({ node: node.id }, node.state === "up" ? 1 : 0);
    this.unsubscribe = nodes.subscribe((table, previous) => this.onSwap(table, previous));
  }

  start(): void {
    this.timer = setInterval(() => void this.probeAll(), this.options.intervalMs);
    this.timer.unref();
    void this.probeAll();
  }

  stop(): void {
    clearInterval(this.timer);
    for (const timer of this.reprobes.values()) clearTimeout(timer);
    this.reprobes.clear();
    this.unsubscribe();
  }

  private onSwap(table: NodeTable, previous: NodeTable): void {
    for (const node of previous.nodes) if (table.get(node.id) === undefined) this.metrics.nodeUp.remove({ node: node.id });
    for (const node of table.nodes) {
      const before = previous.get(node.id);
      if (before?.state === node.state) continue;
      this.metrics.nodeUp.set({ node: node.id }, node.state === "up" ? 1 : 0);
      if (node.health === "suspect" && before?.health !== "suspect") {
        this.log.warn({ node: node.id }, "a dial to the node failed: no new users until a probe decides");
        void this.probeOne(node);
      }
    }
  }

  private async probeAll(): Promise<void> {
    await Promise.all(this.nodes.table.nodes.map((node) => this.probeOne(node)));
  }

  /** One probe per node at a time: a slow round must not pile up behind itself. */
  private probeOne(node: NodeView): Promise<void> {
    let running = this.inFlight.get(node.id);
    if (running === undefined) {
      running = this.runProbe(node).finally(() => this.inFlight.delete(node.id));
      this.inFlight.set(node.id, running);
    }
    return running;
  }

  private async runProbe(node: NodeView): Promise<void> {
    try {
      await this.options.probe(node);
      this.refused.delete(node.id);
      this.failures.delete(node.id);
      const count = (this.successes.get(node.id) ?? 0) + 1;
      this.successes.set(node.id, count);
      const current = this.nodes.table.get(node.id)?.health;
      // A suspect node was up a moment ago: one good probe clears it; a down one needs `rise`.
      if (current !== "down" || count >= this.options.rise || !this.confirmed.has(node.id)) this.setHealth(node.id, "up", "probe succeeded");
      this.confirmed.add(node.id);
    } catch (err) {
      if (err instanceof UpstreamError && !err.nodeFault) {
        // It answered, with a stream error (ejabberd's fail2ban banning the balancer's address): not dead.
        this.refusing(node.id, err.message);
        if (this.nodes.table.get(node.id)?.health === "suspect") this.setHealth(node.id, "up", "it answers (with a stream error)");
        this.scheduleReprobe(node.id);
        return;
      }
      this.successes.delete(node.id);
      const count = (this.failures.get(node.id) ?? 0) + 1;
      this.failures.set(node.id, count);
      const current = this.nodes.table.get(node.id)?.health;
      if (current === "suspect" || count >= this.options.fall || !this.confirmed.has(node.id)) {
        this.setHealth(node.id, "down", `probe failed: ${(err as Error).message}`);
      }
    }
    this.scheduleReprobe(node.id);
  }

  /** Said once per node until a probe succeeds again. */
  private refusing(id: string, reason: string): void {
    if (this.refused.has(id)) return;
    this.refused.add(id);
    this.log.warn({ node: id, reason, code: "XMPP_LB_NODE_REFUSED" }, "the node refuses the balancer (not marked down): check its ban list, or send it the clients' addresses with --backend-proxy-protocol");
  }

  private scheduleReprobe(id: string): void {
    clearTimeout(this.reprobes.get(id));
    this.reprobes.delete(id);
    const node = this.nodes.table.get(id);
    if (node?.health !== "down" || this.timer === undefined) return;
    const failures = this.failures.get(id) ?? 1;
    const delay = Math.min(this.options.intervalMs, REPROBE_FIRST_MS * 2 ** Math.min(failures - 1, 10));
    this.reprobes.set(id, setTimeout(() => void this.probeOne(this.nodes.table.get(id) ?? node), delay).unref());
  }

  private setHealth(id: string, health: "up" | "down", reason: string): void {
    const before = this.nodes.table.get(id)?.health;
    if (before === undefined || before === health) return;
    this.nodes.setHealth(id, health);
    if (health === "down") this.log.warn({ node: id, reason }, "node is down: no new users are sent to it");
    else this.log.info({ node: id, reason }, "node is up");
  }
}
