/** XML namespaces of the c2s pre-auth dialogue (RFC 6120). */
export const NS_CLIENT = "jabber:client";
export const NS_STREAM = "http://etherx.jabber.org/streams";
export const NS_STREAMS = "urn:ietf:params:xml:ns:xmpp-streams";
export const NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls";
export const NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl";

/** The three stanza kinds (RFC 6120 8): none may come before login. */
export const STANZA_NAMES: ReadonlySet<string> = new Set(["message", "presence", "iq"]);
