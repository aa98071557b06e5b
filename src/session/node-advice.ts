import type { Element } from "@xmpp/xml";
import type { LineLogger } from "../log.js";
import { saslMechanismsOf } from "../xmpp/features.js";

/**
 * Node configuration mistakes that break logins, said where an operator looks:
 * once per node and kind, not once per login.
 */
export class NodeAdvice {
  private readonly given = new Set<string>();

  /** What the node's features say about the client's mechanism and channel binding. */
  checkFeatures(features: Element, nodeId: string, mechanism: string | undefined, log: LineLogger): void {
    const offered = saslMechanismsOf(features);
    if (mechanism !== undefined && offered.length > 0 && !offered.includes(mechanism)) {
      log.warn({ node: nodeId, mechanism, offered }, "the node does not offer the client's SASL mechanism; check --sasl-mechanisms");
    }
    if (offered.some((m) => m.endsWith("-PLUS"))) {
      this.once("plus", nodeId, log, { offered }, "the node offers channel binding (-PLUS) to the balancer: SCRAM clients that support binding will be refused as a downgrade; disable -PLUS on the node");
    }
  }

  tlsRequired(nodeId: string, log: LineLogger): void {
    this.once("tls", nodeId, log, {}, "the node requires TLS before SASL: the balancer uses STARTTLS to it (--backend-tls makes this explicit; phase open needs it)");
  }

  private once(kind: string, nodeId: string, log: LineLogger, fields: object, message: string): void {
    const key = `${kind} ${nodeId}`;
    if (this.given.has(key)) return;
    this.given.add(key);
    log.warn({ node: nodeId, ...fields }, message);
  }
}
