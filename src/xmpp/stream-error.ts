import { escapeXMLText } from "@xmpp/xml";
import type { SaslFailureCondition, StreamErrorCondition } from "../errors.js";
import { NS_SASL, NS_SASL2, NS_STREAMS } from "./namespaces.js";

/** `<stream:error>` followed by the closing `</stream:stream>` (RFC 6120 4.9). */
export function streamErrorXml(condition: StreamErrorCondition, text?: string, payload?: string): string {
  const inner = payload === undefined ? `<${condition} xmlns='${NS_STREAMS}'/>` : `<${condition} xmlns='${NS_STREAMS}'>${escapeXMLText(payload)}</${condition}>`;
  const textXml = text ? `<text xmlns='${NS_STREAMS}' xml:lang='en'>${escapeXMLText(text)}</text>` : "";
  return `<stream:error>${inner}${textXml}</stream:error></stream:stream>`;
}

/** SASL `<failure/>` (RFC 6120 6.5), or SASL2's (XEP-0388: the RFC 6120 condition in its own namespace). */
export function saslFailureXml(condition: SaslFailureCondition, text?: string, sasl2 = false): string {
  const textXml = text ? `<text xml:lang='en'>${escapeXMLText(text)}</text>` : "";
  if (sasl2) return `<failure xmlns='${NS_SASL2}'><${condition} xmlns='${NS_SASL}'/>${textXml}</failure>`;
  return `<failure xmlns='${NS_SASL}'><${condition}/>${textXml}</failure>`;
}
