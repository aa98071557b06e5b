import type { NodeView } from "../cluster/node.js";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { Router } from "../router/router.js";

export interface HealthOptions {
  intervalMs: number;
  /** Consecutive failed probes that take an up node down. */
  fall: number;
  /** Probes a node: resolves when it opened a stream and offered features. */
  probe: (node: NodeView) => Promise<void>;
}

/**
 * Node states for routing. Passive: a failed dial for a client marks the node
 * down at once. Active: every interval each node is probed at the XMPP level
 * (stream opened, features received); one success brings a down node back.
 * Each change swaps the router's node table whole.
 */
export class NodeHealth {
  private timer: NodeJS.Timeout | undefined;
  private readonly failures = new Map<string, number>();
  /** Nodes a probe has reached at least once: until then one failure is enough to take a node out. */
  private readonly confirmed = new Set<string>();
  private probing = false;

  constructor(
    private readonly router: Router,
    private readonly options: HealthOptions,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    for (const node of router.table.nodes) metrics.nodeUp.set({ node: node.id }, node.state === "up" ? 1 : 0);
  }

  start(): void {
    this.timer = setInterval(() => void this.probeAll(), this.options.intervalMs);
    this.timer.unref();
    void this.probeAll();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Passive check: a client's dial to the node failed. */
  markDown(id: string, reason: string): void {
    this.setState(id, "down", reason);
  }

  private setState(id: string, state: "up" | "down", reason: string): void {
    const table = this.router.table;
    const before = table.get(id);
    if (before === undefined || before.state === state || before.state === "draining") return;
    this.router.setTable(table.withState(id, state));
    this.metrics.nodeUp.set({ node: id }, state === "up" ? 1 : 0);
    if (state === "down") this.log.warn({ node: id, reason }, "node is down: no new users are sent to it");
    else this.log.info({ node: id, reason }, "node is up");
  }

  private async probeAll(): Promise<void> {
    if (this.probing) return; // a slow round must not pile up behind itself
    this.probing = true;
    try {
      await Promise.all(this.router.table.nodes.map((node) => this.probeOne(node)));
    } finally {
      this.probing = false;
    }
  }

  private async probeOne(node: NodeView): Promise<void> {
    try {
      await this.options.probe(node);
      this.failures.delete(node.id);
      this.confirmed.add(node.id);
      this.setState(node.id, "up", "probe succeeded");
    } catch (err) {
      const count = (this.failures.get(node.id) ?? 0) + 1;
      this.failures.set(node.id, count);
      if (count >= this.options.fall || !this.confirmed.has(node.id)) this.setState(node.id, "down", `probe failed: ${(err as Error).message}`);
    }
  }
}
