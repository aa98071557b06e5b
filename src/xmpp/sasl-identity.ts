import { SaslError } from "../errors.js";
import { bareJid, parseBareJid } from "./jid.js";

/** Mechanisms the balancer may offer: it only reads who logs in, the node checks the credentials. */
export const SUPPORTED_MECHANISMS = ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512", "ANONYMOUS"] as const;
export type Mechanism = (typeof SUPPORTED_MECHANISMS)[number];

export function isSupportedMechanism(name: string): name is Mechanism {
  return (SUPPORTED_MECHANISMS as readonly string[]).includes(name);
}

/**
 * A SCRAM mechanism's channel-binding twin (RFC 5802 "-PLUS"): offered per
 * connection, only where a binding holds through the balancer, so it is not
 * a mechanism of its own in --sasl-mechanisms.
 */
export function plusOf(mechanism: Mechanism): string | undefined {
  return mechanism.startsWith("SCRAM-") ? `${mechanism}-PLUS` : undefined;
}

/** XEP-0484 FAST token mechanisms: `HT-<hash>-<binding>`. */
const TOKEN_MECHANISM = /^HT-(?:SHA-256|SHA-384|SHA-512|SHA3-256|SHA3-384|SHA3-512)-(NONE|ENDP|UNIQ|EXPR)$/;

/** A FAST token mechanism's channel binding (NONE, ENDP: tls-server-end-point, UNIQ, EXPR), or undefined for any other name. */
export function tokenBinding(mechanism: string): "NONE" | "ENDP" | "UNIQ" | "EXPR" | undefined {
  return TOKEN_MECHANISM.exec(mechanism)?.[1] as "NONE" | "ENDP" | "UNIQ" | "EXPR" | undefined;
}

const SCRAM_MECHANISM = /^SCRAM-SHA-(?:1|256|512)(?:-PLUS)?$/;

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Decodes the base64 payload of `<auth/>` or `<response/>` (RFC 6120 6.4.2):
 * "=" is an empty response; whitespace is tolerated; anything else not base64
 * is a `malformed-request`.
 */
export function decodeSaslPayload(text: string): Buffer {
  const compact = text.replace(/\s+/g, "");
  if (compact === "=") return Buffer.alloc(0);
  if (!BASE64.test(compact)) throw new SaslError("malformed-request", "the SASL payload is not base64");
  return Buffer.from(compact, "base64");
}

function decodeUtf8(bytes: Buffer): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new SaslError("malformed-request", "the SASL payload is not UTF-8");
  }
}

function userJid(name: string, domain: string): string {
  // Some clients send a whole JID as the user name; route on its bare JID.
  const jid = name.includes("@") ? parseBareJid(name)?.bare ?? null : bareJid(name, domain);
  if (jid === null) throw new SaslError("malformed-request", "the SASL user name is not a valid JID localpart");
  return jid;
}

/** PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`; the authzid wins when given. */
function plainIdentity(payload: Buffer, domain: string): string {
  const first = payload.indexOf(0);
  const second = first === -1 ? -1 : payload.indexOf(0, first + 1);
  if (first === -1 || second === -1 || payload.indexOf(0, second + 1) !== -1) {
    throw new SaslError("malformed-request", "a PLAIN response has three NUL-separated fields");
  }
  // Only the identity fields are decoded; the password bytes are never turned into a string.
  const authzid = decodeUtf8(payload.subarray(0, first));
  const authcid = decodeUtf8(payload.subarray(first + 1, second));
  if (authzid !== "") return userJid(authzid, domain);
  if (authcid === "") throw new SaslError("malformed-request", "the PLAIN authcid is empty");
  return userJid(authcid, domain);
}

/** SCRAM's saslname (RFC 5802 5.1): "=2C" is ",", "=3D" is "=", any other "=" is malformed. */
export function unescapeSaslName(name: string): string {
  return name.replace(/=(2C|3D|.{0,2})/g, (_match, code: string) => {
    if (code === "2C") return ",";
    if (code === "3D") return "=";
    throw new SaslError("malformed-request", "bad escape in a SCRAM user name");
  });
}

/** SCRAM-SHA-* client-first-message (RFC 5802 7): `gs2-cbind-flag,[a=authzid],[m=ext,]n=user,r=nonce`. */
function scramIdentity(payload: Buffer, domain: string): string {
  const fields = decodeUtf8(payload).split(",");
  const flag = fields[0] ?? "";
  if (flag !== "n" && flag !== "y" && !flag.startsWith("p=")) {
    throw new SaslError("malformed-request", "a SCRAM client-first-message starts with a gs2 flag");
  }
  const userField = fields[2];
  if (userField === undefined || !userField.startsWith("n=")) {
    throw new SaslError("malformed-request", "a SCRAM client-first-message carries n=<user>");
  }
  if (fields[3] === undefined || !fields[3].startsWith("r=")) {
    throw new SaslError("malformed-request", "a SCRAM client-first-message carries r=<nonce>");
  }
  const user = unescapeSaslName(userField.slice(2));
  if (user === "") throw new SaslError("malformed-request", "the SCRAM user name is empty");
  // As with PLAIN, the authorization identity (a=) is who the session will be, so it decides the node.
  const authzField = fields[1] ?? "";
  if (authzField.startsWith("a=")) {
    const authzid = unescapeSaslName(authzField.slice(2));
    if (authzid !== "") return userJid(authzid, domain);
  } else if (authzField !== "") {
    throw new SaslError("malformed-request", "a SCRAM gs2 header carries a=<authzid> or nothing");
  }
  return userJid(user, domain);
}

/** FAST (XEP-0484 3.3): `authcid NUL HMAC`; the token's owner decides the node (the HMAC bytes are never decoded). */
function tokenIdentity(payload: Buffer, domain: string): string {
  const nul = payload.indexOf(0);
  if (nul <= 0) throw new SaslError("malformed-request", "a FAST token response starts with the user name and a NUL");
  return userJid(decodeUtf8(payload.subarray(0, nul)), domain);
}

/**
 * Who is logging in, from a mechanism's initial response, as a bare JID at the
 * stream's `to` domain; null when the mechanism carries no identity (ANONYMOUS).
 * Throws SaslError("malformed-request") for payloads no server would accept.
 */
export function saslIdentity(mechanism: string, payload: Buffer, domain: string): string | null {
  if (mechanism === "PLAIN") return plainIdentity(payload, domain);
  if (mechanism === "ANONYMOUS") return null;
  if (SCRAM_MECHANISM.test(mechanism)) return scramIdentity(payload, domain);
  if (tokenBinding(mechanism) !== undefined) return tokenIdentity(payload, domain);
  throw new SaslError("invalid-mechanism", `mechanism '${mechanism}' is not supported`);
}
