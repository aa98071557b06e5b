import type { Element } from "@xmpp/xml";
import { escapeXML } from "@xmpp/xml";
import { StreamError } from "../errors.js";
import { NS_CLIENT, NS_STREAM } from "./namespaces.js";
import { normalizeDomain } from "./jid.js";

export interface StreamHeader {
  /** Normalized `to` domain. */
  to: string;
  /** `from` as sent (may be absent). */
  from?: string;
  lang?: string;
}

/**
 * Checks a client's `<stream:stream>` opening (RFC 6120 4.7, 4.8) and returns
 * what routing needs. Throws the StreamError that fits.
 */
export function readStreamHeader(el: Element): StreamHeader {
  const colon = el.name.indexOf(":");
  const prefix = colon === -1 ? undefined : el.name.slice(0, colon);
  const local = colon === -1 ? el.name : el.name.slice(colon + 1);
  const streamNs = prefix === undefined ? el.attrs.xmlns : el.attrs[`xmlns:${prefix}`];
  if (prefix !== undefined && streamNs === undefined) {
    throw new StreamError("bad-namespace-prefix", `prefix '${prefix}' is not bound`);
  }
  if (local !== "stream" || streamNs !== NS_STREAM) {
    throw new StreamError("invalid-namespace", "expected a stream in the http://etherx.jabber.org/streams namespace");
  }
  // With a `stream:` prefix the default namespace is the content namespace.
  const contentNs = prefix === undefined ? NS_CLIENT : el.attrs.xmlns;
  if (contentNs !== NS_CLIENT) {
    throw new StreamError("invalid-namespace", "the content namespace must be jabber:client");
  }
  const version = el.attrs.version;
  const major = version === undefined ? 0 : Number.parseInt(version.split(".")[0] ?? "", 10);
  if (!Number.isFinite(major) || major < 1) {
    throw new StreamError("unsupported-version", "XMPP 1.0 or later is required");
  }
  if (major > 1) {
    throw new StreamError("unsupported-version", `version ${version} is not supported`);
  }
  const to = el.attrs.to;
  if (to === undefined || to.trim() === "") {
    throw new StreamError("host-unknown", "the stream header has no 'to' address");
  }
  const header: StreamHeader = { to: normalizeDomain(to) };
  if (el.attrs.from !== undefined) header.from = el.attrs.from;
  const lang = el.attrs["xml:lang"];
  if (lang !== undefined) header.lang = lang;
  return header;
}

/** The balancer's own stream opening, sent in reply to a client's header. */
export function streamOpenXml(opts: { from: string; id: string; lang?: string }): string {
  return (
    `<?xml version='1.0'?><stream:stream xmlns='${NS_CLIENT}' xmlns:stream='${NS_STREAM}'` +
    ` id='${opts.id}' from='${escapeXML(opts.from)}' version='1.0' xml:lang='${escapeXML(opts.lang ?? "en")}'>`
  );
}

/** A stream opening sent by the balancer to a cluster node on the client's behalf. */
export function clientStreamOpenXml(domain: string, from?: string): string {
  const fromAttr = from === undefined ? "" : ` from='${escapeXML(from)}'`;
  return `<?xml version='1.0'?><stream:stream xmlns='${NS_CLIENT}' xmlns:stream='${NS_STREAM}' to='${escapeXML(domain)}'${fromAttr} version='1.0'>`;
}
