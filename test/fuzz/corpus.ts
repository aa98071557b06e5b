/**
 * Real openings and logins, as clients send them, for the fuzzer to mutate.
 * `plain` inputs go to a STARTTLS listener from the first byte; `secure`
 * ones after a real STARTTLS (and on a direct-TLS listener); `proxy` ones
 * start with a PROXY protocol header.
 */
export const DOMAIN = "lb.test";
export const USER = "fuzz";
export const PASSWORD = "fuzz pw";

const b64 = (s: string | Buffer): string => Buffer.from(s).toString("base64");
export const HEADER = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${DOMAIN}' version='1.0'>`;
const HEADER_PREFIXED = `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${DOMAIN}' version='1.0' xml:lang='en' from='${USER}@${DOMAIN}'>`;
const SASL = "urn:ietf:params:xml:ns:xmpp-sasl";
const auth = (mechanism: string, payload?: string): string => (payload === undefined ? `<auth xmlns='${SASL}' mechanism='${mechanism}'/>` : `<auth xmlns='${SASL}' mechanism='${mechanism}'>${payload}</auth>`);
const PLAIN_OK = auth("PLAIN", b64(`\0${USER}\0${PASSWORD}`));
const SCRAM_FIRST = auth("SCRAM-SHA-1", b64(`n,,n=${USER},r=fyko+d2lbbFgONRv9qkxdawL`));
const BIND = "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>fz</resource></bind></iq>";

export const PLAIN_SEEDS = [
  HEADER,
  `${HEADER}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`,
  `\n  ${HEADER_PREFIXED}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`,
  `${HEADER}${PLAIN_OK}`,
  `${HEADER}<iq type='get' id='1'><query xmlns='jabber:iq:auth'/></iq>`,
  `${HEADER}</stream:stream>`,
  "<?xml version='1.0' encoding='UTF-8'?>",
];

export const SECURE_SEEDS = [
  HEADER,
  `${HEADER}${PLAIN_OK}`,
  `${HEADER}${PLAIN_OK}${HEADER}${BIND}<presence/></stream:stream>`,
  `${HEADER}${SCRAM_FIRST}`,
  `${HEADER}${auth("SCRAM-SHA-256", b64(`n,a=${USER}@${DOMAIN},n=${USER},r=abcdefgh`))}`,
  `${HEADER}${auth("PLAIN")}<response xmlns='${SASL}'>${b64(`\0${USER}\0${PASSWORD}`)}</response>`,
  `${HEADER}${auth("ANONYMOUS", "=")}`,
  `${HEADER}${auth("PLAIN", b64("\0nobody\0wrong"))}${auth("PLAIN", b64("\0nobody\0wrong"))}`,
  `${HEADER}<abort xmlns='${SASL}'/>${PLAIN_OK}`,
  `${HEADER_PREFIXED}${PLAIN_OK}`,
];

export const PROXY_SEEDS = [
  `PROXY TCP4 198.51.100.7 203.0.113.9 40000 5222\r\n${HEADER}`,
  `PROXY TCP6 2001:db8::1 2001:db8::2 40000 5222\r\n${HEADER}`,
  `PROXY UNKNOWN\r\n${HEADER}`,
];

/** A PROXY v2 header (TCP over IPv4) before a stream header. */
export function proxyV2Seed(): Buffer {
  const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const addr = Buffer.from([198, 51, 100, 7, 203, 0, 113, 9, 0x9c, 0x40, 0x14, 0x66]);
  return Buffer.concat([sig, Buffer.from([0x21, 0x11, 0x00, addr.length]), addr, Buffer.from(HEADER)]);
}

/** Tokens the mutator splices in: XML's sharp edges and the protocol's own words. */
export const TOKENS = [
  "<", ">", "/>", "'", '"', "=", "&", "&amp;", "&lt;", "&#0;", "&#x1F;", "&#xD800;", "&unknown;", "<![CDATA[", "]]>", "<!--", "-->",
  "<?", "?>", "<!DOCTYPE stream [<!ENTITY a 'aaaa'>]>", "\u0000", "\u0007", "\u001b", "\u00ff", "\ufffe", "xmlns=''", "xmlns:stream='urn:x'",
  "xmlns:x='y' x:a='1' x:a='2'", "</stream:stream>", "<stream:stream>", "</auth>", "<auth>", "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
  "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", "<message><body>x</body></message>", "<presence/>", "version='2.0'", "to='other.test'",
  "to=''", "\r\n", "\t", " ", "PROXY ", "GET / HTTP/1.1\r\n\r\n", "====", "*", "n,,", "p=tls-unique,,", "a=@,n=,r=",
];
