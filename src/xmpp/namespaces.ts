/** XML namespaces of the c2s pre-auth dialogue (RFC 6120). */
export const NS_CLIENT = "jabber:client";
export const NS_STREAM = "http://etherx.jabber.org/streams";
export const NS_STREAMS = "urn:ietf:params:xml:ns:xmpp-streams";
export const NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls";
export const NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl";

/** The three stanza kinds (RFC 6120 8): none may come before login. */
export const STANZA_NAMES: ReadonlySet<string> = new Set(["message", "presence", "iq"]);

/** The modern login (XEP-0388 SASL2, XEP-0386 Bind2, XEP-0484 FAST, XEP-0440 channel-binding types, XEP-0198 SM). */
export const NS_SASL2 = "urn:xmpp:sasl:2";
export const NS_BIND2 = "urn:xmpp:bind:0";
export const NS_FAST = "urn:xmpp:fast:0";
export const NS_SASL_CB = "urn:xmpp:sasl-cb:0";
export const NS_SM = "urn:xmpp:sm:3";
