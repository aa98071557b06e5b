import { escapeXML, escapeXMLText, type Element } from "@xmpp/xml";
import { NS_FAST, NS_SASL, NS_SASL2, NS_SASL_CB, NS_TLS } from "./namespaces.js";
import { tokenBinding } from "./sasl-identity.js";
import { cloneElement } from "./clone-element.js";

/**
 * What a client is offered to log in with after TLS: SASL1 mechanisms, and
 * beside them (when the nodes speak it) SASL2 with its inline features.
 * Channel binding is offered only where it holds through the balancer: the
 * one binding type that can is `tls-server-end-point` (a hash of the
 * certificate the client saw, which a node can share or be told);
 * `tls-unique` and `tls-exporter` are of the TLS session, and the client's
 * ends at the balancer.
 */
export interface LoginOffer {
  mechanisms: readonly string[];
  /** XEP-0440: offer `tls-server-end-point` (the -PLUS mechanisms are in the lists). */
  channelBinding: boolean;
  /** XEP-0388: SASL2's mechanisms and the `<inline/>` features a client may ask for in `<authenticate/>`. */
  sasl2: { mechanisms: readonly string[]; inline: Element | undefined } | null;
}

export const NO_LOGIN: LoginOffer = { mechanisms: [], channelBinding: false, sasl2: null };

/** The one channel binding that survives a TLS-terminating balancer (RFC 5929 4). */
export const TLS_SERVER_END_POINT = "tls-server-end-point";

function mechanismList(names: readonly string[]): string {
  return names.map((m) => `<mechanism>${escapeXMLText(m)}</mechanism>`).join("");
}

/** The offer's part of `<stream:features/>`. */
export function loginOfferXml(offer: LoginOffer): string {
  let xml = "";
  if (offer.mechanisms.length > 0) xml += `<mechanisms xmlns='${NS_SASL}'>${mechanismList(offer.mechanisms)}</mechanisms>`;
  if (offer.channelBinding) xml += `<sasl-channel-binding xmlns='${NS_SASL_CB}'><channel-binding type='${escapeXML(TLS_SERVER_END_POINT)}'/></sasl-channel-binding>`;
  if (offer.sasl2 !== null && offer.sasl2.mechanisms.length > 0) {
    xml += `<authentication xmlns='${NS_SASL2}'>${mechanismList(offer.sasl2.mechanisms)}${offer.sasl2.inline?.toString() ?? ""}</authentication>`;
  }
  return xml;
}

/** Whether a FAST token of this mechanism can be used through the balancer (NONE always; ENDP where the binding holds). */
function tokenHolds(mechanism: string, bindingHolds: boolean): boolean {
  const binding = tokenBinding(mechanism);
  return binding === "NONE" || (binding === "ENDP" && bindingHolds);
}

/**
 * SASL2's `<inline/>` with what cannot hold through the balancer removed:
 * FAST keeps only token mechanisms that hold (none left: no FAST). Bind2,
 * SM and anything else pass as the nodes offer them.
 */
export function holdingInline(inline: Element | undefined, bindingHolds: boolean): Element | undefined {
  if (inline === undefined) return undefined;
  const copy = cloneElement(inline);
  const fast = copy.getChild("fast", NS_FAST);
  if (fast !== undefined) {
    for (const m of fast.getChildren("mechanism")) if (!tokenHolds(m.getText().trim(), bindingHolds)) fast.remove(m);
    if (fast.getChildren("mechanism").length === 0) copy.remove(fast);
  }
  return copy;
}

/** A mechanism list with the -PLUS ones removed (the binding does not hold). */
function withoutPlus(list: Element | undefined): void {
  if (list === undefined) return;
  for (const m of list.getChildren("mechanism")) if (m.getText().trim().endsWith("-PLUS")) list.remove(m);
}

/**
 * Phase open: a node's features as the client may see them, with nothing
 * that cannot hold through the balancer: `<starttls/>` on a stream already
 * under TLS, -PLUS mechanisms and XEP-0440 types other than
 * `tls-server-end-point` (all of them where that does not hold either), and
 * FAST tokens that bind to the TLS session.
 */
export function holdingNodeFeatures(features: Element, opts: { secure: boolean; bindingHolds: boolean }): Element {
  const copy = cloneElement(features);
  const starttls = copy.getChild("starttls", NS_TLS);
  if (opts.secure && starttls !== undefined) copy.remove(starttls);
  const bindings = copy.getChild("sasl-channel-binding", NS_SASL_CB);
  if (bindings !== undefined) {
    for (const b of bindings.getChildren("channel-binding")) if (!opts.bindingHolds || b.attrs.type !== TLS_SERVER_END_POINT) bindings.remove(b);
    if (bindings.getChildren("channel-binding").length === 0) copy.remove(bindings);
  }
  // Without a list, a node binds with what its TLS library has: the client cannot know which, so no -PLUS is left.
  const holds = opts.bindingHolds && copy.getChild("sasl-channel-binding", NS_SASL_CB) !== undefined;
  const sasl2 = copy.getChild("authentication", NS_SASL2);
  if (!holds) {
    withoutPlus(copy.getChild("mechanisms", NS_SASL));
    withoutPlus(sasl2);
  }
  const inline = sasl2?.getChild("inline");
  if (sasl2 !== undefined && inline !== undefined) {
    sasl2.remove(inline);
    sasl2.append(holdingInline(inline, holds)!);
  }
  return copy;
}
