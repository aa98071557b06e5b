import type { Element } from "@xmpp/xml";
import type { LineLogger } from "../log.js";
import { saslMechanismsOf } from "../xmpp/features.js";
import { NS_FAST, NS_SASL2 } from "../xmpp/namespaces.js";

/**
 * Node configuration mistakes that break logins, said where an operator looks:
 * once per node and kind, not once per login.
 */
export class NodeAdvice {
  private readonly given = new Set<string>();

  /** Whether the node's features on the login's stream offer the client's mechanism (SASL2's list, FAST's inside it). */
  checkFeatures(features: Element, nodeId: string, login: { mechanism?: string; sasl2?: boolean; token?: boolean }, log: LineLogger): void {
    const { mechanism } = login;
    if (mechanism === undefined) return;
    const authentication = features.getChild("authentication", NS_SASL2);
    const offered = !login.sasl2
      ? saslMechanismsOf(features)
      : login.token
        ? (authentication?.getChild("inline")?.getChild("fast", NS_FAST)?.getChildren("mechanism").map((m) => m.getText().trim()) ?? [])
        : (authentication?.getChildren("mechanism").map((m) => m.getText().trim()) ?? []);
    if (!offered.includes(mechanism)) {
      this.once(`mechanism ${mechanism}`, nodeId, log, { mechanism, sasl2: login.sasl2 === true, offered }, "the node does not offer the client's SASL mechanism; check --sasl-mechanisms and the node's modules");
    }
  }

  /** Phase open: the node's features offered what cannot hold through the balancer, and the client was not shown it. */
  featuresFiltered(nodeId: string, bindingHolds: boolean, log: LineLogger): void {
    const what = bindingHolds
      ? "the node offers what cannot hold through the balancer (STARTTLS on a TLS stream, tls-exporter or tls-unique binding, FAST tokens bound to TLS): clients are not shown it"
      : "the node offers channel binding (-PLUS) that cannot hold through the balancer (the client's TLS ends here): clients are not shown it; see --channel-binding";
    this.once("filtered", nodeId, log, {}, what);
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
