import type { Element } from "@xmpp/xml";
import type { Logger } from "../log.js";
import { saslMechanismsOf } from "../xmpp/features.js";
import { holdingInline, TLS_SERVER_END_POINT, type LoginOffer } from "../xmpp/login-offer.js";
import { NS_FAST, NS_SASL2, NS_SASL_CB } from "../xmpp/namespaces.js";
import { plusOf, type Mechanism } from "../xmpp/sasl-identity.js";
import { cloneElement } from "../xmpp/clone-element.js";

/** `--channel-binding`: when SCRAM-*-PLUS (tls-server-end-point) is offered to clients. */
export type ChannelBindingMode = "auto" | "tls-server-end-point" | "none";

/** What one node offered on one domain's stream to a health probe. */
export interface NodeLoginFeatures {
  mechanisms: readonly string[];
  /** XEP-0440 binding types the node lists. */
  channelBindings: readonly string[];
  sasl2: { mechanisms: readonly string[]; inline: Element | undefined } | null;
  /** SHA-256 fingerprint of the certificate the node presented (--backend-tls), or undefined without TLS. */
  certificate: string | undefined;
}

export function readNodeLoginFeatures(features: Element, certificate: string | undefined): NodeLoginFeatures {
  const authentication = features.getChild("authentication", NS_SASL2);
  return {
    mechanisms: saslMechanismsOf(features),
    channelBindings: features.getChild("sasl-channel-binding", NS_SASL_CB)?.getChildren("channel-binding").map((b) => b.attrs.type ?? "") ?? [],
    sasl2: authentication === undefined ? null : { mechanisms: authentication.getChildren("mechanism").map((m) => m.getText().trim()), inline: authentication.getChild("inline") },
    certificate,
  };
}

/** What every node serving a domain offers, and so what its clients may be offered. */
interface DomainLogins {
  mechanisms: readonly Mechanism[];
  /** -PLUS twins of `mechanisms` that every node offers with tls-server-end-point. */
  plus: readonly string[];
  /**
   * Whether any node can bind on the balancer's stream: it offers -PLUS or
   * lists binding types (XEP-0440). Such a node refuses a client's gs2 `y`
   * ("I can bind, you offered nothing") as a downgrade, whether its -PLUS
   * mechanisms are disabled or not (Prosody 13, ejabberd 24.12).
   */
  nodesBind: boolean;
  /** SASL2, with its inline features as they hold without and with channel binding (worked out once, not per client). */
  sasl2: { mechanisms: readonly Mechanism[]; plus: readonly string[]; inline: Element | undefined; inlineBinding: Element | undefined } | null;
  /** The certificates the nodes present (undefined: a node without TLS). */
  certificates: ReadonlySet<string | undefined>;
}

/** The TLS a client connection is on, as far as channel binding cares. */
export interface ClientTls {
  /** SHA-256 fingerprint of the certificate this client was served; undefined when TLS ends before the balancer (a front). */
  certificate: string | undefined;
}

/**
 * What clients are offered to log in with, per domain: the configured SASL
 * mechanisms that every node serving that domain offers on it, SASL2 (with
 * its inline features) when every node speaks it, and -PLUS where the
 * channel binding holds end to end. Learnt from the features nodes send to
 * health probes of each domain, so a client that picks what it was offered
 * is never refused for the choice by the node it lands on.
 */
export class OfferedLogins {
  /** domain → node id → what it offered (and its canonical text, to skip unchanged reports). */
  private readonly learnt = new Map<string, Map<string, { key: string; features: NodeLoginFeatures }>>();
  private readonly domains = new Map<string, DomainLogins>();
  private readonly warned = new Set<string>();

  constructor(
    private readonly configured: readonly Mechanism[],
    private readonly bindingMode: ChannelBindingMode,
    private readonly log: Logger,
  ) {}

  /** The SASL1 mechanisms (without -PLUS) a stream to `domain` is offered now. */
  forDomain(domain: string): readonly Mechanism[] {
    return this.domains.get(domain)?.mechanisms ?? this.configured;
  }

  /** What a client on `tls` (undefined: no TLS) logging in to `domain` is offered now. */
  offer(domain: string, tls: ClientTls | undefined): LoginOffer {
    const known = this.domains.get(domain);
    if (known === undefined) return { mechanisms: this.configured, channelBinding: false, sasl2: null };
    const holds = known.nodesBind && tls !== undefined && this.bindingHolds(domain, known, tls);
    const sasl2 = known.sasl2 === null ? null : { mechanisms: holds ? [...known.sasl2.plus, ...known.sasl2.mechanisms] : known.sasl2.mechanisms, inline: holds ? known.sasl2.inlineBinding : known.sasl2.inline };
    return { mechanisms: holds ? [...known.plus, ...known.mechanisms] : known.mechanisms, channelBinding: holds, sasl2 };
  }

  /** Whether tls-server-end-point holds for this client: the nodes bind to the certificate it got. */
  private bindingHolds(domain: string, known: DomainLogins, tls: ClientTls): boolean {
    const mode = this.bindingMode;
    if (mode === "none") return this.refuseBinding(domain, "--channel-binding none");
    if (known.plus.length === 0) {
      return this.refuseBinding(domain, "the nodes offer no -PLUS with tls-server-end-point (only their TLS session's bindings, or -PLUS disabled): enable -PLUS on the nodes and bind it to the balancer's certificate (the same certificate, or Prosody's tls_server_end_point_hash), or reach them without --backend-tls");
    }
    // Asserted: the operator told the nodes which certificate to bind to (Prosody's tls_server_end_point_hash).
    if (mode === "tls-server-end-point") return true;
    if (tls.certificate === undefined || known.certificates.size !== 1 || !known.certificates.has(tls.certificate)) {
      return this.refuseBinding(domain, "the nodes do not present the certificate the client got: serve the balancer's certificate on the nodes, or tell them its hash (Prosody's tls_server_end_point_hash) and use --channel-binding tls-server-end-point");
    }
    return true;
  }

  /** The nodes bind but the client is offered no -PLUS: a client that could bind says so (gs2 `y`), and the node refuses it as a downgrade. Said once per domain and reason. */
  private refuseBinding(domain: string, change: string): false {
    const key = `${domain} ${change}`;
    if (!this.warned.has(key)) {
      this.warned.add(key);
      this.log.warn({ domain, change }, "the nodes offer channel binding (-PLUS) but the balancer cannot offer it to clients: clients that support binding will be refused as a downgrade");
    }
    return false;
  }

  /** Records what a node's `<stream:features/>` offered on a stream to `domain`. */
  learn(nodeId: string, domain: string, features: NodeLoginFeatures): void {
    const key = JSON.stringify({ ...features, sasl2: features.sasl2 === null ? null : { ...features.sasl2, inline: features.sasl2.inline?.toString() } });
    let byNode = this.learnt.get(domain);
    if (byNode === undefined) this.learnt.set(domain, (byNode = new Map()));
    if (byNode.get(nodeId)?.key === key) return;
    byNode.set(nodeId, { key, features });
    this.recompute(domain, nodeId, features.mechanisms);
  }

  /** Whether `nodeId` showed SASL2 on a stream to `domain` (false too before its first probe). */
  speaksSasl2(nodeId: string, domain: string): boolean {
    return (this.learnt.get(domain)?.get(nodeId)?.features.sasl2 ?? null) !== null;
  }

  /** A node left the cluster: what it offered no longer narrows anything. */
  forget(nodeId: string): void {
    for (const [domain, byNode] of this.learnt) if (byNode.delete(nodeId)) this.recompute(domain, nodeId, []);
  }

  private recompute(domain: string, nodeId: string, nodeOffers: readonly string[]): void {
    const nodes = [...(this.learnt.get(domain)?.values() ?? [])].map((n) => n.features);
    const before = this.forDomain(domain);
    if (nodes.length === 0) {
      // Every node that served it has left: nothing is known, so SASL1 with the configured list (as before any probe).
      this.domains.delete(domain);
      return;
    }
    const common = this.configured.filter((m) => nodes.every((n) => n.mechanisms.includes(m)));
    if (common.length === 0) {
      this.log.warn({ domain, node: nodeId, nodeOffers, configured: this.configured }, "no SASL mechanism of --sasl-mechanisms is offered for this domain by every node; offering the configured list");
      this.domains.delete(domain);
      return;
    }
    const endPoint = nodes.every((n) => n.channelBindings.includes(TLS_SERVER_END_POINT));
    const plusOfAll = (list: readonly Mechanism[], offers: (n: NodeLoginFeatures) => readonly string[]): string[] =>
      endPoint ? list.map(plusOf).filter((p): p is string => p !== undefined && nodes.every((n) => offers(n).includes(p))) : [];
    const sasl2Nodes = nodes.every((n) => n.sasl2 !== null) ? nodes.map((n) => n.sasl2!) : null;
    const sasl2Mechanisms = sasl2Nodes === null ? [] : this.configured.filter((m) => sasl2Nodes.every((s) => s.mechanisms.includes(m)));
    this.domains.set(domain, {
      mechanisms: common,
      plus: plusOfAll(common, (n) => n.mechanisms),
      nodesBind: nodes.some((n) => n.channelBindings.length > 0 || n.mechanisms.some((m) => m.endsWith("-PLUS")) || (n.sasl2?.mechanisms ?? []).some((m) => m.endsWith("-PLUS"))),
      sasl2: sasl2Nodes === null || sasl2Mechanisms.length === 0 ? null : sasl2Offer(sasl2Mechanisms, plusOfAll(sasl2Mechanisms, (n) => n.sasl2!.mechanisms), commonInline(sasl2Nodes.map((s) => s.inline))),
      certificates: new Set(nodes.map((n) => n.certificate)),
    });
    if (common.join() !== before.join()) {
      this.log.info({ domain, offered: common, notOfferedByEveryNode: this.configured.filter((m) => !common.includes(m)) }, "SASL mechanisms offered to clients");
    }
  }
}

function sasl2Offer(mechanisms: readonly Mechanism[], plus: readonly string[], inline: Element | undefined): NonNullable<DomainLogins["sasl2"]> {
  return { mechanisms, plus, inline: holdingInline(inline, false), inlineBinding: holdingInline(inline, true) };
}

/** The inline features every node offers (the first node's form of each); FAST with the token mechanisms all of them take. */
function commonInline(inlines: readonly (Element | undefined)[]): Element | undefined {
  const [first, ...rest] = inlines;
  if (first === undefined || rest.some((i) => i === undefined)) return undefined;
  const common = cloneElement(first);
  for (const feature of common.getChildElements()) {
    const ns = feature.getNS();
    if (!rest.every((i) => i!.getChild(feature.getName(), ns) !== undefined)) common.remove(feature);
  }
  const fast = common.getChild("fast", NS_FAST);
  if (fast !== undefined) {
    for (const m of fast.getChildren("mechanism")) {
      const name = m.getText().trim();
      if (!rest.every((i) => i!.getChild("fast", NS_FAST)?.getChildren("mechanism").some((o) => o.getText().trim() === name))) fast.remove(m);
    }
  }
  return common;
}
