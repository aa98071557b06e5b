import type { Element } from "@xmpp/xml";
import type { Logger } from "../log.js";
import { saslMechanismsOf } from "../xmpp/features.js";
import type { Mechanism } from "../xmpp/sasl-identity.js";

/**
 * The SASL mechanisms offered to clients: the configured ones that every node
 * seen so far offers too (learnt from the features the nodes send to health
 * probes). A client that picks a mechanism the balancer offered is then never
 * refused by the node it lands on: Prosody 0.12 has no SCRAM-SHA-256, for one.
 */
export class OfferedMechanisms {
  private readonly byNode = new Map<string, string>();
  private offered: readonly Mechanism[];

  constructor(
    private readonly configured: readonly Mechanism[],
    private readonly log: Logger,
  ) {
    this.offered = configured;
  }

  get current(): readonly Mechanism[] {
    return this.offered;
  }

  /** Records the mechanisms in a node's `<stream:features/>`. */
  learn(nodeId: string, features: Element): void {
    const names = saslMechanismsOf(features);
    const key = names.join(" ");
    if (this.byNode.get(nodeId) === key) return;
    this.byNode.set(nodeId, key);
    const sets = [...this.byNode.values()].map((k) => new Set(k.split(" ")));
    const common = this.configured.filter((m) => sets.every((s) => s.has(m)));
    if (common.length === 0) {
      this.log.warn({ node: nodeId, nodeOffers: names, configured: this.configured }, "no SASL mechanism of --sasl-mechanisms is offered by every node; offering the configured list");
      this.offered = this.configured;
      return;
    }
    const dropped = this.configured.filter((m) => !common.includes(m));
    if (common.join() !== this.offered.join()) {
      this.log.info({ offered: common, notOfferedByEveryNode: dropped }, "SASL mechanisms offered to clients");
    }
    this.offered = common;
  }
}
