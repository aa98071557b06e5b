import { escapeXML, escapeXMLText } from "@xmpp/xml";
import type { StreamErrorCondition } from "../errors.js";
import { loginOfferXml, type LoginOffer } from "./login-offer.js";
import { NS_STREAM, NS_STREAMS } from "./namespaces.js";

/** XMPP over WebSocket (RFC 7395): every message is one complete element, the stream is framed by `<open/>` and `<close/>`. */
export const NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing";
/** The WebSocket subprotocol a client must ask for (RFC 7395 3.1). */
export const WS_SUBPROTOCOL = "xmpp";

export function framingOpenXml(opts: { from?: string; to?: string; id?: string; lang?: string }): string {
  const attrs = [`xmlns='${NS_FRAMING}'`, "version='1.0'"];
  for (const [name, value] of [["from", opts.from], ["to", opts.to], ["id", opts.id], ["xml:lang", opts.lang]] as const) {
    if (value !== undefined) attrs.push(`${name}='${escapeXML(value)}'`);
  }
  return `<open ${attrs.join(" ")}/>`;
}

export const FRAMING_CLOSE_XML = `<close xmlns='${NS_FRAMING}'/>`;

/** RFC 7395 3.6.1: the WebSocket form of see-other-host, a `<close/>` naming where to go. */
export function seeOtherUriXml(uri: string): string {
  return `<close xmlns='${NS_FRAMING}' see-other-uri='${escapeXML(uri)}'/>`;
}

/** Features in a message of their own: the stream prefix is declared in it, since no `<stream:stream>` surrounds it. */
export function framedFeaturesXml(offer: LoginOffer): string {
  return `<stream:features xmlns:stream='${NS_STREAM}'>${loginOfferXml(offer)}</stream:features>`;
}

/** A stream error in its own message; RFC 7395 3.6: a `<close/>` follows it, as a message of its own. */
export function framedStreamErrorXml(condition: StreamErrorCondition, text?: string): string {
  const textXml = text ? `<text xmlns='${NS_STREAMS}' xml:lang='en'>${escapeXMLText(text)}</text>` : "";
  return `<stream:error xmlns:stream='${NS_STREAM}'><${condition} xmlns='${NS_STREAMS}'/>${textXml}</stream:error>`;
}
