import { escapeXMLText } from "@xmpp/xml";
import type { SaslFailureCondition, StreamErrorCondition } from "../errors.js";
import { NS_SASL, NS_STREAMS } from "./namespaces.js";

/** `<stream:error>` followed by the closing `</stream:stream>` (RFC 6120 4.9). */
export function streamErrorXml(condition: StreamErrorCondition, text?: string, payload?: string): string {
  const inner = payload === undefined ? `<${condition} xmlns='${NS_STREAMS}'/>` : `<${condition} xmlns='${NS_STREAMS}'>${escapeXMLText(payload)}</${condition}>`;
  const textXml = text ? `<text xmlns='${NS_STREAMS}' xml:lang='en'>${escapeXMLText(text)}</text>` : "";
  return `<stream:error>${inner}${textXml}</stream:error></stream:stream>`;
}

/** SASL `<failure/>` (RFC 6120 6.5). */
export function saslFailureXml(condition: SaslFailureCondition, text?: string): string {
  const textXml = text ? `<text xml:lang='en'>${escapeXMLText(text)}</text>` : "";
  return `<failure xmlns='${NS_SASL}'><${condition}/>${textXml}</failure>`;
}
