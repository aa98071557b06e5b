import { escapeXML, xml, type Element } from "@xmpp/xml";
import { NS_SASL, NS_SASL2, NS_TLS } from "./namespaces.js";
import { cloneElement } from "./clone-element.js";

/** The small top-level elements of stream negotiation that the balancer writes itself (RFC 6120 5, 6). */

export const STARTTLS_XML = `<starttls xmlns='${NS_TLS}'/>`;
export const PROCEED_XML = `<proceed xmlns='${NS_TLS}'/>`;
/** RFC 6120 5.4.2.2: a refused STARTTLS, after which the stream is closed. */
export const TLS_FAILURE_XML = `<failure xmlns='${NS_TLS}'/>`;
/** An empty challenge asks for the initial response a client left out (RFC 6120 6.4.2; XEP-0388 likewise). */
export function emptyChallengeXml(sasl2: boolean): string {
  return `<challenge xmlns='${sasl2 ? NS_SASL2 : NS_SASL}'/>`;
}
export const STREAM_CLOSE_XML = "</stream:stream>";

/** A whole `<auth/>` with its initial response, as the node receives it (even when the client sent it as a `<response/>`). */
export function authXml(mechanism: string, initialResponse: string): string {
  return `<auth xmlns='${NS_SASL}' mechanism='${escapeXML(mechanism)}'>${escapeXML(initialResponse)}</auth>`;
}

/** SASL2: the client's own `<authenticate/>` as the node receives it, with its initial response in it (given apart when it was asked for). */
export function authenticateXml(authenticate: Element, initialResponse: string): string {
  const given = authenticate.getChild("initial-response");
  if (given !== undefined && given.getText().trim() === initialResponse) return authenticate.toString();
  const copy = cloneElement(authenticate);
  if (given !== undefined) copy.remove("initial-response");
  copy.prepend(xml("initial-response", {}, initialResponse));
  return copy.toString();
}

/** A client's SASL `<response/>` as the node receives it during a forwarded exchange (RFC 6120 6.4.3; SASL2's, XEP-0388 2.6). */
export function responseXml(text: string, sasl2 = false): string {
  const ns = sasl2 ? NS_SASL2 : NS_SASL;
  const body = text.trim();
  return body === "" ? `<response xmlns='${ns}'/>` : `<response xmlns='${ns}'>${escapeXML(body)}</response>`;
}
export function abortXml(sasl2: boolean): string {
  return `<abort xmlns='${sasl2 ? NS_SASL2 : NS_SASL}'/>`;
}
