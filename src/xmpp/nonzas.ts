import { escapeXML } from "@xmpp/xml";
import { NS_SASL, NS_TLS } from "./namespaces.js";

/** The small top-level elements of stream negotiation that the balancer writes itself (RFC 6120 5, 6). */

export const STARTTLS_XML = `<starttls xmlns='${NS_TLS}'/>`;
export const PROCEED_XML = `<proceed xmlns='${NS_TLS}'/>`;
/** RFC 6120 5.4.2.2: a refused STARTTLS, after which the stream is closed. */
export const TLS_FAILURE_XML = `<failure xmlns='${NS_TLS}'/>`;
export const EMPTY_CHALLENGE_XML = `<challenge xmlns='${NS_SASL}'/>`;
export const STREAM_CLOSE_XML = "</stream:stream>";

/** A whole `<auth/>` with its initial response, as the node receives it (even when the client sent it as a `<response/>`). */
export function authXml(mechanism: string, initialResponse: string): string {
  return `<auth xmlns='${NS_SASL}' mechanism='${escapeXML(mechanism)}'>${escapeXML(initialResponse)}</auth>`;
}

/** A client's SASL `<response/>` as the node receives it during a forwarded exchange (RFC 6120 6.4.3). */
export function responseXml(text: string): string {
  const body = text.trim();
  return body === "" ? `<response xmlns='${NS_SASL}'/>` : `<response xmlns='${NS_SASL}'>${escapeXML(body)}</response>`;
}
export const ABORT_XML = `<abort xmlns='${NS_SASL}'/>`;
