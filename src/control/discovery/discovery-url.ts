import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseHostPort, type HostPort } from "../../cluster/address.js";
import type { ProxyVersion } from "../../cluster/node.js";
import { ConfigError } from "../../errors.js";
import { normalizeDomain } from "../../xmpp/jid.js";

/** What every node of a DNS source gets besides its address: the `?key=value` options of its URL. */
export interface DnsNodeOptions {
  /** Template of the external address: `%h` the host (SRV target or A/AAAA address), `%s` its first label, `%p` the port. */
  external?: string;
  zone?: string;
  domains: string[];
  proxy?: ProxyVersion;
}

/** `dns://NAME[:PORT][?…]`: every A and AAAA record of NAME is a node on PORT (default 5222). */
export interface DnsDiscovery extends DnsNodeOptions {
  kind: "dns";
  /** The `--discover` text as given: the source's name in logs, metrics and the membership. */
  text: string;
  host: string;
  port: number;
  weight: number;
}

/** `dns+srv://NAME[?…]`: every SRV record of NAME is a node (target, port, priority, weight). */
export interface SrvDiscovery extends DnsNodeOptions {
  kind: "dns+srv";
  text: string;
  name: string;
}

/** `file:///PATH`: a JSON array of `--node` strings or objects, followed as it changes. */
export interface FileDiscovery {
  kind: "file";
  text: string;
  path: string;
}

export type DiscoverySpec = DnsDiscovery | SrvDiscovery | FileDiscovery;

const USAGE = "dns://NAME[:PORT][?external=…], dns+srv://NAME[?external=…] or file:///PATH";
const DNS_NAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/;
const OPTION_KEYS = { dns: ["external", "weight", "zone", "domains", "proxy"], "dns+srv": ["external", "zone", "domains", "proxy"] } as const;

function bad(text: string, why: string): ConfigError {
  return new ConfigError(`--discover '${text}': ${why}`);
}

/**
 * Fills an external-address template for one discovered node: `%h` the host
 * (an SRV target without its trailing dot, or an A/AAAA address; IPv6 in
 * brackets), `%s` the host's first label, `%p` the port, `%%` a percent sign.
 * Without a port in the result the node's own port is used. Null when the
 * result is not HOST:PORT.
 */
export function expandExternal(template: string, host: string, port: number): HostPort | null {
  const bare = host.replace(/\.$/, "");
  const h = net.isIPv6(bare) ? `[${bare}]` : bare;
  const short = net.isIP(bare) !== 0 ? h : (bare.split(".")[0] ?? bare);
  let unknown = false;
  const text = template.replace(/%(.)/g, (_m, c: string) => {
    if (c === "h") return h;
    if (c === "s") return short;
    if (c === "p") return String(port);
    if (c === "%") return "%";
    unknown = true;
    return "";
  });
  if (unknown || /%$/.test(template)) return null;
  return parseHostPort(text, port);
}

function parseOptions(text: string, kind: "dns" | "dns+srv", query: string): { options: DnsNodeOptions; weight: number } {
  const options: DnsNodeOptions = { domains: [] };
  let weight = 1;
  const seen = new Set<string>();
  for (const pair of query.split("&").filter((p) => p !== "")) {
    const eq = pair.indexOf("=");
    const key = eq === -1 ? pair : pair.slice(0, eq);
    const value = eq === -1 ? "" : pair.slice(eq + 1);
    if (!(OPTION_KEYS[kind] as readonly string[]).includes(key)) {
      throw bad(text, `unknown option '${key}' (${OPTION_KEYS[kind].join(", ")}${kind === "dns+srv" ? "; the weight comes from the SRV records" : ""})`);
    }
    if (seen.has(key)) throw bad(text, `option '${key}' is given twice`);
    seen.add(key);
    if (value === "") throw bad(text, `option '${key}' needs a value`);
    if (key === "external") {
      // A sample expansion, so a broken template fails at start, not at the first answer.
      if (expandExternal(value, "node1.example.net", 5222) === null || expandExternal(value, "10.0.0.1", 5222) === null) {
        throw bad(text, `external='${value}' is not a HOST[:PORT] template (%h host, %s its first label, %p port)`);
      }
      options.external = value;
    } else if (key === "weight") {
      weight = Number(value);
      if (!Number.isFinite(weight) || weight <= 0) throw bad(text, `weight must be a positive number (got '${value}')`);
    } else if (key === "zone") {
      options.zone = value;
    } else if (key === "domains") {
      options.domains = value.split("+").filter((d) => d !== "").map(normalizeDomain);
    } else if (key === "proxy") {
      if (value !== "v1" && value !== "v2") throw bad(text, `proxy must be v1 or v2 (got '${value}')`);
      options.proxy = value;
    }
  }
  return { options, weight };
}

/** Parses one `--discover` value; throws ConfigError with one sentence naming what is wrong. */
export function parseDiscoverUrl(text: string): DiscoverySpec {
  const match = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(text.trim());
  if (match === null) throw bad(text, `not a URL: use ${USAGE}`);
  const scheme = match[1]!.toLowerCase();
  const rest = match[2]!;
  if (scheme === "file") {
    let file: string;
    try {
      file = fileURLToPath(new URL(text.trim()));
    } catch (err) {
      throw bad(text, `not a file URL (file:///ABSOLUTE/PATH): ${(err as Error).message}`);
    }
    if (/[?#]/.test(rest)) throw bad(text, "a file URL takes no options");
    if (!path.isAbsolute(file) || file.endsWith("/")) throw bad(text, "needs the absolute path of a file (file:///etc/xmpp-lb/nodes.json)");
    return { kind: "file", text, path: file };
  }
  if (scheme !== "dns" && scheme !== "dns+srv") throw bad(text, `unknown scheme '${scheme}': use ${USAGE}`);
  const q = rest.indexOf("?");
  const authority = q === -1 ? rest : rest.slice(0, q);
  const { options, weight } = parseOptions(text, scheme, q === -1 ? "" : rest.slice(q + 1));
  if (scheme === "dns+srv") {
    const name = authority.replace(/\/$/, "");
    if (!DNS_NAME.test(name) || net.isIP(name) !== 0) throw bad(text, "needs the SRV name (dns+srv://_xmpp-client._tcp.example.com), without a port");
    return { kind: "dns+srv", text, name: name.replace(/\.$/, ""), ...options };
  }
  const hp = parseHostPort(authority.replace(/\/$/, ""), 5222);
  if (hp === null || !DNS_NAME.test(hp.host) || net.isIP(hp.host) !== 0 || hp.port === 0) {
    throw bad(text, "needs a DNS name and a port (dns://xmpp-nodes.internal:5222); for a fixed address use --node");
  }
  return { kind: "dns", text, host: hp.host.replace(/\.$/, ""), port: hp.port, weight, ...options };
}

/** `--dns-server HOST[:PORT]` (an IP address; port 53 by default) as node:dns setServers() takes it. */
export function parseDnsServer(text: string): string {
  const hp = net.isIPv6(text.trim()) ? { host: text.trim(), port: 53 } : parseHostPort(text, 53);
  if (hp === null || net.isIP(hp.host) === 0 || hp.port === 0) throw new ConfigError(`--dns-server: '${text}' is not IP[:PORT] (127.0.0.1:8600, [::1]:53)`);
  return net.isIPv6(hp.host) ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}
