import type { MemberNode } from "../../cluster/node.js";
import type { Logger } from "../../log.js";
import type { Metrics } from "../../metrics.js";

/**
 * What one discovery source last said, for its metrics and its logs: up
 * (it answered, with nodes) or down (it failed, or answered nothing, and its
 * last known list stays in use). A warning when it is lost and a line when
 * it is back: once per transition, not once per attempt.
 */
export class DiscoveryStatus {
  private state: "unknown" | "up" | "down" = "unknown";
  private listed: readonly MemberNode[] = [];
  private readySettle!: () => void;
  /** Settles once the first attempt is over, whatever its outcome. */
  readonly ready = new Promise<void>((resolve) => (this.readySettle = resolve));

  constructor(
    private readonly source: string,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    metrics.discoveryUp.set({ source }, 0);
    metrics.discoveryNodes.set({ source }, 0);
  }

  get up(): boolean {
    return this.state === "up";
  }

  /** `unknown` until the first attempt is over. */
  get current(): "unknown" | "up" | "down" {
    return this.state;
  }

  /** The list handed to the membership now (the last good one while the source fails). */
  get nodes(): readonly MemberNode[] {
    return this.listed;
  }

  /** What the source hands the membership now (kept as it is while the source fails). */
  list(nodes: readonly MemberNode[]): void {
    this.listed = nodes;
    this.metrics.discoveryNodes.set({ source: this.source }, nodes.length);
  }

  /** The source answered (and list() got what it says). */
  answered(fields: Record<string, unknown> = {}): void {
    this.metrics.discoveryUp.set({ source: this.source }, 1);
    if (this.state === "down") this.log.info({ source: this.source, nodes: this.listed.length, ...fields }, "discovery source answers again: following it");
    else if (this.state === "unknown") this.log.info({ source: this.source, nodes: this.listed.length, ...fields }, "discovery source answered");
    this.state = "up";
    this.readySettle();
  }

  /**
   * The source failed. Logged (warn) on the transition, or always when
   * `always` (a nodes file with a new mistake in it deserves its own line).
   */
  failed(message: string, fields: Record<string, unknown>, always = false): void {
    this.metrics.discoveryUp.set({ source: this.source }, 0);
    if (this.state !== "down" || always) {
      const kept = this.listed.length;
      this.log.warn({ source: this.source, kept, ...fields }, kept === 0 ? `${message}: no nodes from this source yet` : `${message}: keeping its last known ${kept} node(s)`);
    }
    this.state = "down";
    this.readySettle();
  }

  stop(): void {
    this.readySettle();
  }
}
