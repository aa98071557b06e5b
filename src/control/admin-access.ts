import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import type http from "node:http";
import net from "node:net";
import { ConfigError } from "../errors.js";

/** Why the admin endpoint refuses a request before routing it: the answer's status and text. */
export interface AdminRefusal {
  status: 401 | 403 | 421;
  reason: "host" | "origin" | "token";
  message: string;
}

const REFUSALS: Record<AdminRefusal["reason"], AdminRefusal> = {
  host: { status: 421, reason: "host", message: "this endpoint answers only to its own address (the IP:PORT dialled, localhost:PORT on loopback) or an --admin-host name\n" },
  origin: { status: 403, reason: "origin", message: "a POST from another web origin is refused\n" },
  token: { status: 401, reason: "token", message: "a POST needs the header Authorization: Bearer TOKEN (--admin-token)\n" },
};

/** RFC 6750's b64token: what fits after "Bearer " unquoted. */
const BEARER_TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/** Only name, IPv4 and [IPv6] characters: the URL parser would otherwise read userinfo or percent escapes into a host. */
const AUTHORITY = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * A Host header's name and port as a browser reads them (the WHATWG URL
 * parser): names in lower case without a trailing dot, IP literals in their
 * canonical form (`127.1` is `127.0.0.1`), port 80 when none is given.
 */
export function parseAuthority(text: string): { host: string; port: number } | null {
  if (!AUTHORITY.test(text)) return null;
  let url: URL;
  try {
    url = new URL(`http://${text}`);
  } catch {
    return null;
  }
  return { host: url.hostname.replace(/^\[(.*)\]$/, "$1").replace(/\.$/, ""), port: url.port === "" ? 80 : Number(url.port) };
}

/** An `--admin-host` value: a name or an IP address, without a port (a proxy in front may map any port to the endpoint's). */
export function parseAdminHost(text: string): string {
  const trimmed = text.trim();
  const authority = net.isIPv6(trimmed) ? `[${trimmed}]` : trimmed;
  const parsed = parseAuthority(authority);
  if (parsed === null || /:\d*$/.test(authority.replace(/^\[.*\]/, ""))) throw new ConfigError(`--admin-host: '${text}' is not a host name or IP address without a port`);
  return parsed.host;
}

/** The admin token, from `--admin-token` or read now from `--admin-token-file` (surrounding whitespace dropped). */
export function readAdminToken(input: { adminToken?: string; adminTokenFile?: string }): string | undefined {
  if (input.adminToken !== undefined && input.adminTokenFile !== undefined) throw new ConfigError("give --admin-token or --admin-token-file, not both");
  let token = input.adminToken;
  if (input.adminTokenFile !== undefined) {
    try {
      token = readFileSync(input.adminTokenFile, "utf8").trim();
    } catch (err) {
      throw new ConfigError(`cannot read --admin-token-file: ${(err as Error).message}`);
    }
  }
  if (token === undefined) return undefined;
  // Never echo the token: the message names only what is wrong with it.
  if (!BEARER_TOKEN.test(token)) throw new ConfigError("the admin token must be one word of letters, digits and - . _ ~ + / (then any = padding)");
  return token;
}

const sha256 = (text: string): Buffer => createHash("sha256").update(text).digest();

/** An IPv4 address as Node reports it on a dual-stack socket (`::ffff:10.0.0.1`), in the form a client dials. */
const unmapped = (address: string): string => address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, "");

const isLoopback = (address: string): boolean => address === "::1" || /^127\./.test(address);

/**
 * Who may use the admin endpoint. A web page must not: a page of any origin
 * can send a browser to it (a POST with `mode: 'no-cors'` goes out, its answer
 * unread), and a DNS name rebound to the endpoint's address makes the page's
 * own origin reach it, answers included. So every request must name the
 * endpoint in its `Host` (its address as dialled, `localhost` on loopback, the
 * `--metrics` name, or an `--admin-host` name: never a rebound name), and a
 * POST must come from no other origin and carry the token when one is set.
 */
export class AdminAccess {
  private readonly names: ReadonlySet<string>;
  private readonly tokenHash: Buffer | undefined;

  /** `boundHost`: the `--metrics` host as given; `names`: `--admin-host`, parsed. */
  constructor(boundHost: string, names: readonly string[], token: string | undefined) {
    // A bound IP is the address dialled; a bound name is answered to like an --admin-host one.
    const bound = net.isIP(boundHost) === 0 ? parseAuthority(boundHost)?.host : undefined;
    this.names = new Set(bound === undefined ? names : [...names, bound]);
    this.tokenHash = token === undefined ? undefined : sha256(token);
  }

  /** null: go on. GET and HEAD only read, so only the Host is checked for them (Prometheus, health checks). */
  check(req: http.IncomingMessage): AdminRefusal | null {
    if (!this.hostAllowed(req)) return REFUSALS.host;
    if (req.method === "GET" || req.method === "HEAD") return null;
    if (!sameOrigin(req)) return REFUSALS.origin;
    if (this.tokenHash !== undefined && !this.tokenMatches(req.headers.authorization)) return REFUSALS.token;
    return null;
  }

  private hostAllowed(req: http.IncomingMessage): boolean {
    const header = req.headers.host;
    // HTTP/1.0 without Host (Node refuses an HTTP/1.1 request without one): no browser sends that.
    if (header === undefined) return true;
    const asked = parseAuthority(header);
    if (asked === null) return false;
    if (this.names.has(asked.host)) return true;
    const { localAddress, localPort } = req.socket;
    if (localAddress === undefined || asked.port !== localPort) return false;
    const local = unmapped(localAddress);
    const own = parseAuthority(net.isIPv6(local) ? `[${local}]` : local)?.host;
    return asked.host === own || (asked.host === "localhost" && isLoopback(local));
  }

  private tokenMatches(authorization: string | undefined): boolean {
    const given = /^Bearer +(\S+) *$/i.exec(authorization ?? "")?.[1];
    // Digests have one length whatever was sent, so the comparison takes the same time for any wrong token.
    return given !== undefined && timingSafeEqual(sha256(given), this.tokenHash!);
  }
}

/** No Origin: not a browser's request (curl, scripts). Otherwise it must be the origin the (checked) Host names. */
function sameOrigin(req: http.IncomingMessage): boolean {
  const { origin, host } = req.headers;
  if (origin === undefined) return true;
  if (host === undefined) return false;
  try {
    const url = new URL(origin);
    return url.protocol === "http:" && url.host === new URL(`http://${host}`).host;
  } catch {
    return false; // "null" (a sandboxed page, a file) and anything else unreadable
  }
}
