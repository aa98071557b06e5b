// A raw SCRAM client with channel binding (RFC 5802, RFC 7677; SCRAM-*-PLUS
// with tls-server-end-point, RFC 5929 §4, or tls-unique / tls-exporter, RFC
// 9266) over SASL1 (RFC 6120 <auth/>) or SASL2 (XEP-0388 <authenticate/>),
// on a STARTTLS or direct-TLS stream: for proving what a node (or, later, the
// balancer) does with clients that bind, and with clients that do not (gs2
// header `n,,`, or `y,,`: "I can bind, but you offered no -PLUS", which a
// server that offered -PLUS must refuse as a downgrade). node:crypto only; the
// stream is driven by RawXmpp (raw.ts), trusting examples/tls/ca.pem.

import { createHash, createHmac, pbkdf2Sync, randomBytes, randomUUID, timingSafeEqual, X509Certificate } from "node:crypto";
import type tls from "node:tls";
import { DOMAIN, RawXmpp } from "./raw.js";

export type ScramMechanism = `SCRAM-SHA-${"1" | "256" | "512"}${"" | "-PLUS"}`;
export type ChannelBindingType = "tls-server-end-point" | "tls-unique" | "tls-exporter";

export interface ScramLoginOptions {
  host: string;
  port: number;
  /** The stream's `to` (default lb.test, the development certificate's name and the TLS servername). */
  domain?: string;
  username: string;
  password: string;
  mechanism: ScramMechanism;
  /** SASL1 (<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>, default) or SASL2 (<authenticate xmlns='urn:xmpp:sasl:2'>). */
  profile?: "sasl1" | "sasl2";
  /** STARTTLS on a plaintext stream (default), TLS from the first byte (XEP-0368), or none (no binding possible: a `p=` header throws). */
  tls?: "starttls" | "direct" | "none";
  maxTlsVersion?: tls.SecureVersion;
  /** The binding type of a -PLUS mechanism (default tls-server-end-point). */
  channelBinding?: ChannelBindingType;
  /**
   * The gs2 header to send instead of the mechanism's own (`p=<type>,,` for
   * -PLUS, `n,,` otherwise): `y,,` or `n,,` imitate a client that does not bind.
   * Only a `p=` header puts binding data into the final message.
   */
  gs2Header?: string;
  /** Binding data to send instead of the real one (e.g. a wrong hash, to see it refused). */
  bindingData?: Buffer;
  /** Put from='user@domain' in the header after TLS (or the only one, without TLS): ejabberd offers SASL2 only then. Default true. */
  announceJid?: boolean;
  /** SASL2's <user-agent id> (default a random UUID). */
  userAgentId?: string;
  timeoutMs?: number;
}

export interface ScramVerdict {
  ok: boolean;
  /** The failure's condition element name (e.g. "not-authorized", "malformed-request"), on failure. */
  condition?: string;
  /** The failure's <text/>, if any. */
  text?: string;
  /** On success: whether the server's signature (v=) was right (the server knew the password and, for -PLUS, saw the same binding). */
  serverVerified?: boolean;
  /** SASL2: the <authorization-identifier/> of the success. */
  authorizationIdentifier?: string;
  /** What the post-TLS features offered: SASL1 and SASL2 (null if none) mechanisms, XEP-0440 channel-binding types. */
  offered: { sasl1: string[]; sasl2: string[] | null; channelBindings: string[] };
  /** The TLS version of the stream (null without TLS). */
  tlsProtocol: string | null;
  /** The gs2 header sent, and the binding data that followed it in the final message (if any). */
  gs2Header: string;
  binding: Buffer | undefined;
}

/** RSA/ECDSA signature algorithm OIDs to the hash they use (RFC 5929 §4.1 then maps MD5 and SHA-1 to SHA-256). */
const SIGNATURE_HASHES: Record<string, string> = {
  "1.2.840.113549.1.1.4": "md5", // md5WithRSAEncryption
  "1.2.840.113549.1.1.5": "sha1", // sha1WithRSAEncryption
  "1.2.840.113549.1.1.11": "sha256",
  "1.2.840.113549.1.1.12": "sha384",
  "1.2.840.113549.1.1.13": "sha512",
  "1.2.840.113549.1.1.14": "sha224",
  "1.2.840.10045.4.1": "sha1", // ecdsa-with-SHA1
  "1.2.840.10045.4.3.1": "sha224",
  "1.2.840.10045.4.3.2": "sha256",
  "1.2.840.10045.4.3.3": "sha384",
  "1.2.840.10045.4.3.4": "sha512",
  "2.16.840.1.101.3.4.3.2": "sha256", // dsa-with-sha256
};

/** One DER TLV at `at`: [tag, start of contents, end of contents]. */
function tlv(der: Buffer, at: number): [number, number, number] {
  const tag = der[at]!;
  let len = der[at + 1]!;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[start + i]!;
    start += n;
  }
  return [tag, start, start + len];
}

function oid(bytes: Buffer): string {
  const parts = [Math.floor(bytes[0]! / 40), bytes[0]! % 40];
  let v = 0;
  for (const b of bytes.subarray(1)) {
    v = v * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      parts.push(v);
      v = 0;
    }
  }
  return parts.join(".");
}

/** The certificate's signatureAlgorithm OID (Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }). */
export function signatureAlgorithmOid(der: Buffer): string {
  const [, certStart] = tlv(der, 0);
  const [, , tbsEnd] = tlv(der, certStart);
  const [algTag, algStart] = tlv(der, tbsEnd);
  const [oidTag, oidStart, oidEnd] = tlv(der, algStart);
  if (algTag !== 0x30 || oidTag !== 0x06) throw new Error("not an X.509 certificate (no signatureAlgorithm)");
  return oid(der.subarray(oidStart, oidEnd));
}

/**
 * RFC 5929 §4.1 tls-server-end-point: the hash of the server certificate's
 * DER, with SHA-256 if its signature uses MD5 or SHA-1 (or SHA-256), else the
 * signature's own hash. A signature with no single hash (RSASSA-PSS, whose hash
 * is in its parameters, Ed25519) gets SHA-256 here, as ejabberd and Prosody do.
 */
export function tlsServerEndPoint(cert: Buffer | X509Certificate): Buffer {
  const der = cert instanceof X509Certificate ? cert.raw : cert;
  const sigHash = SIGNATURE_HASHES[signatureAlgorithmOid(der)] ?? "sha256";
  const hash = sigHash === "md5" || sigHash === "sha1" ? "sha256" : sigHash;
  return createHash(hash).update(der).digest();
}

/** The channel binding data of a TLS socket, as the client sees it. */
export function channelBindingData(socket: tls.TLSSocket, type: ChannelBindingType): Buffer {
  switch (type) {
    case "tls-server-end-point": {
      const cert = socket.getPeerX509Certificate();
      if (cert === undefined) throw new Error("no peer certificate");
      return tlsServerEndPoint(cert);
    }
    case "tls-unique": {
      // RFC 5929 §3: the first Finished message of the latest handshake: the client's, in a full handshake.
      const finished = socket.isSessionReused() ? socket.getPeerFinished() : socket.getFinished();
      if (finished === undefined) throw new Error("no Finished message (tls-unique is undefined on TLS 1.3)");
      return finished;
    }
    case "tls-exporter":
      // RFC 9266: 32 bytes of the exporter with this label and an empty context.
      return socket.exportKeyingMaterial(32, "EXPORTER-Channel-Binding", Buffer.alloc(0));
  }
}

const HASHES = { "1": "sha1", "256": "sha256", "512": "sha512" } as const;

/** SASLprep is not done (ASCII names and passwords in tests); `=` and `,` are escaped as RFC 5802 says. */
const saslName = (s: string): string => s.replace(/=/g, "=3D").replace(/,/g, "=2C");

const xmlText = (s: string): string => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, "&");

/** Text of the `<name>` children of the first element matching `container` (either quote style). */
function listed(xml: string, container: RegExp, item: string): string[] | null {
  const m = container.exec(xml);
  if (m === null) return null;
  // SASL2's <inline> holds FAST's own <mechanism> list: not the container's.
  const own = m[0].replace(/<inline>[\s\S]*<\/inline>/, "");
  return [...own.matchAll(new RegExp(`<${item}>([^<]*)</${item}>`, "g"))].map((x) => xmlText(x[1]!));
}

function offered(features: string): ScramVerdict["offered"] {
  return {
    sasl1: listed(features, /<mechanisms\s[^>]*urn:ietf:params:xml:ns:xmpp-sasl[\s\S]*?<\/mechanisms>/, "mechanism") ?? [],
    sasl2: listed(features, /<authentication\s[^>]*urn:xmpp:sasl:2[\s\S]*?<\/authentication>/, "mechanism"),
    channelBindings: [...features.matchAll(/<channel-binding\s+type=['"]([^'"]+)['"]/g)].map((m) => m[1]!),
  };
}

/**
 * Logs in with SCRAM (over TLS unless `tls: "none"`) and returns the server's verdict (never throws
 * for a refusal; throws if the stream breaks or times out). The stream is
 * closed afterwards.
 */
export async function scramLogin(opts: ScramLoginOptions): Promise<ScramVerdict> {
  const domain = opts.domain ?? DOMAIN;
  const profile = opts.profile ?? "sasl1";
  const timeout = opts.timeoutMs ?? 5000;
  const m = /^SCRAM-SHA-(1|256|512)(-PLUS)?$/.exec(opts.mechanism);
  if (m === null) throw new Error(`not a SCRAM mechanism: ${opts.mechanism}`);
  const hash = HASHES[m[1] as keyof typeof HASHES];
  const plus = m[2] !== undefined;
  const cbType = opts.channelBinding ?? "tls-server-end-point";
  const from = opts.announceJid === false ? "" : ` from='${opts.username}@${domain}'`;
  const header = (withFrom: boolean): string =>
    `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${domain}' version='1.0'${withFrom ? from : ""}>`;

  const raw = await RawXmpp.connect(opts.port, opts.host, { directTls: opts.tls === "direct", maxTlsVersion: opts.maxTlsVersion });
  try {
    if (opts.tls === undefined || opts.tls === "starttls") {
      raw.send(header(false));
      await raw.until(/<\/stream:features>/, timeout);
      await raw.starttls(opts.maxTlsVersion);
    }
    raw.send(header(true));
    const features = await raw.until(/<\/stream:features>/, timeout);
    const socket = raw.tlsSocket;
    if (socket === undefined && opts.tls !== "none") throw new Error("no TLS socket");

    const gs2Header = opts.gs2Header ?? (plus ? `p=${cbType},,` : "n,,");
    const binds = gs2Header.startsWith("p=");
    const bindingOf = (type: ChannelBindingType): Buffer => {
      if (socket === undefined) throw new Error(`no channel binding without TLS (gs2 header ${gs2Header})`);
      return channelBindingData(socket, type);
    };
    const binding = binds ? (opts.bindingData ?? bindingOf(/^p=([^,]*)/.exec(gs2Header)![1] as ChannelBindingType)) : undefined;

    const clientNonce = randomBytes(18).toString("base64");
    const clientFirstBare = `n=${saslName(opts.username)},r=${clientNonce}`;
    const clientFirst = gs2Header + clientFirstBare;
    const b64 = (s: string | Buffer): string => Buffer.from(s).toString("base64");
    const ns = profile === "sasl2" ? "urn:xmpp:sasl:2" : "urn:ietf:params:xml:ns:xmpp-sasl";
    raw.send(
      profile === "sasl2"
        ? `<authenticate xmlns='${ns}' mechanism='${opts.mechanism}'><initial-response>${b64(clientFirst)}</initial-response>` +
            `<user-agent id='${opts.userAgentId ?? randomUUID()}'><software>xmpp-lb tests</software></user-agent></authenticate>`
        : `<auth xmlns='${ns}' mechanism='${opts.mechanism}'>${b64(clientFirst)}</auth>`,
    );

    const base = { offered: offered(features), tlsProtocol: socket?.getProtocol() ?? null, gs2Header, binding };
    const answer = /<(challenge|success|failure)\b[^>]*?(?:\/>|>([\s\S]*?)<\/\1>)/;
    // Only what came after the request counts (RawXmpp keeps the whole stream's text since TLS).
    const verdict = async (from: number): Promise<{ name: string; body: string }> => {
      const [, name, body = ""] = await raw.match(answer, from, timeout);
      return { name: name!, body };
    };
    const failure = (body: string): ScramVerdict => {
      const cond = /<([a-z-]+)(?:\s[^>]*)?\/?>/.exec(body.replace(/<text\b[\s\S]*?<\/text>/, ""));
      const text = /<text\b[^>]*>([\s\S]*?)<\/text>/.exec(body);
      return { ok: false, ...base, ...(cond ? { condition: cond[1]! } : {}), ...(text ? { text: xmlText(text[1]!) } : {}) };
    };

    const first = await verdict(features.length);
    if (first.name === "failure") return failure(first.body);
    if (first.name !== "challenge") throw new Error(`expected a challenge, got <${first.name}>`);
    const serverFirst = Buffer.from(first.body.trim(), "base64").toString("utf8");
    const attrs = new Map(serverFirst.split(",").map((kv) => [kv[0]!, kv.slice(2)] as const));
    const nonce = attrs.get("r");
    const salt = attrs.get("s");
    const iterations = Number(attrs.get("i"));
    if (!nonce?.startsWith(clientNonce) || salt === undefined || !(iterations > 0)) throw new Error(`bad server-first-message: ${serverFirst}`);

    const cbind = binding === undefined ? Buffer.from(gs2Header) : Buffer.concat([Buffer.from(gs2Header), binding]);
    const finalWithoutProof = `c=${cbind.toString("base64")},r=${nonce}`;
    const authMessage = `${clientFirstBare},${serverFirst},${finalWithoutProof}`;
    const salted = pbkdf2Sync(opts.password, Buffer.from(salt, "base64"), iterations, createHash(hash).digest().length, hash);
    const hmac = (key: Buffer, data: string): Buffer => createHmac(hash, key).update(data).digest();
    const clientKey = hmac(salted, "Client Key");
    const clientSignature = hmac(createHash(hash).update(clientKey).digest(), authMessage);
    const proof = Buffer.from(clientKey.map((b, i) => b ^ clientSignature[i]!));
    const serverSignature = hmac(hmac(salted, "Server Key"), authMessage);
    const seen = raw.received.length;
    raw.send(`<response xmlns='${ns}'>${b64(`${finalWithoutProof},p=${proof.toString("base64")}`)}</response>`);
    const { name, body } = await verdict(seen);
    if (name === "failure") return failure(body);
    if (name === "challenge") throw new Error("a second SASL challenge (SCRAM has none)");
    const data = profile === "sasl2" ? (/<additional-data>([^<]*)<\/additional-data>/.exec(body)?.[1] ?? "") : body.trim();
    const serverFinal = Buffer.from(data, "base64").toString("utf8");
    const v = /(?:^|,)v=([^,]+)/.exec(serverFinal)?.[1];
    const given = v === undefined ? Buffer.alloc(0) : Buffer.from(v, "base64");
    const serverVerified = given.length === serverSignature.length && timingSafeEqual(given, serverSignature);
    const aid = /<authorization-identifier>([^<]*)<\/authorization-identifier>/.exec(body)?.[1];
    return { ok: true, ...base, serverVerified, ...(aid === undefined ? {} : { authorizationIdentifier: xmlText(aid) }) };
  } finally {
    raw.destroy();
  }
}
