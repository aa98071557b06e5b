import type { Element } from "@xmpp/xml";
import type { Logger } from "../log.js";
import { saslMechanismsOf } from "../xmpp/features.js";
import type { Mechanism } from "../xmpp/sasl-identity.js";

/**
 * The SASL mechanisms offered to clients, per domain: the configured ones
 * that every node serving that domain offers on it (learnt from the features
 * nodes send to health probes of each domain). A client that picks a
 * mechanism the balancer offered is then never refused by the node it lands
 * on (Prosody 0.12 has no SCRAM-SHA-256), and an anonymous domain can offer
 * ANONYMOUS beside a password domain that does not.
 */
export class OfferedMechanisms {
  /** What each node offers on each domain: domain → node id → mechanisms. */
  private readonly learnt = new Map<string, Map<string, string>>();
  private readonly offered = new Map<string, readonly Mechanism[]>();

  constructor(
    private readonly configured: readonly Mechanism[],
    private readonly log: Logger,
  ) {}

  /** What a stream to `domain` is offered now. */
  forDomain(domain: string): readonly Mechanism[] {
    return this.offered.get(domain) ?? this.configured;
  }

  /** Records the mechanisms in a node's `<stream:features/>` for a stream to `domain`. */
  learn(nodeId: string, domain: string, features: Element): void {
    const names = saslMechanismsOf(features);
    const key = names.join(" ");
    let byNode = this.learnt.get(domain);
    if (byNode === undefined) this.learnt.set(domain, (byNode = new Map()));
    if (byNode.get(nodeId) === key) return;
    byNode.set(nodeId, key);
    this.recompute(domain, nodeId, names);
  }

  /** A node left the cluster: what it offered no longer narrows anything. */
  forget(nodeId: string): void {
    for (const [domain, byNode] of this.learnt) if (byNode.delete(nodeId)) this.recompute(domain, nodeId, []);
  }

  private recompute(domain: string, nodeId: string, nodeOffers: readonly string[]): void {
    const sets = [...(this.learnt.get(domain)?.values() ?? [])].map((k) => new Set(k.split(" ")));
    const common = this.configured.filter((m) => sets.every((s) => s.has(m)));
    const before = this.forDomain(domain);
    if (common.length === 0) {
      this.log.warn({ domain, node: nodeId, nodeOffers, configured: this.configured }, "no SASL mechanism of --sasl-mechanisms is offered for this domain by every node; offering the configured list");
      this.offered.delete(domain);
      return;
    }
    this.offered.set(domain, common);
    if (common.join() !== before.join()) {
      this.log.info({ domain, offered: common, notOfferedByEveryNode: this.configured.filter((m) => !common.includes(m)) }, "SASL mechanisms offered to clients");
    }
  }
}
