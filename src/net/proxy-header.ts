import net from "node:net";

/**
 * PROXY protocol headers (HAProxy's spec, versions 1 and 2): how a load
 * balancer in front (AWS NLB/ELB, HAProxy) tells the balancer who the client
 * is, and how the balancer tells its nodes. Parsing and writing only; reading
 * from a socket is in proxy-reader.ts.
 */

export interface ProxyAddresses {
  source: { address: string; port: number };
  destination: { address: string; port: number };
}

/** A parsed header: its length in bytes, and the addresses (none for a LOCAL/UNKNOWN header: a health check of the front). */
export interface ProxyHeader {
  length: number;
  addresses: ProxyAddresses | null;
}

export class ProxyHeaderError extends Error {}

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from("PROXY ");
/** The longest v1 header the spec allows, CRLF included. */
const V1_MAX = 107;
/** A v2 header with every TLV a front sends stays far below this. */
const V2_MAX = 16 + 2048;

/**
 * Parses the header at the start of `data`: the header, null when more bytes
 * are needed, or throws ProxyHeaderError when `data` does not start with one.
 */
export function parseProxyHeader(data: Buffer): ProxyHeader | null {
  if (startsWithPrefixOf(data, V2_SIGNATURE)) return data.length < V2_SIGNATURE.length ? null : parseV2(data);
  if (startsWithPrefixOf(data, V1_PREFIX)) return data.length < V1_PREFIX.length ? null : parseV1(data);
  throw new ProxyHeaderError("the connection does not start with a PROXY protocol header");
}

function startsWithPrefixOf(data: Buffer, prefix: Buffer): boolean {
  const n = Math.min(data.length, prefix.length);
  return data.subarray(0, n).equals(prefix.subarray(0, n));
}

function parseV1(data: Buffer): ProxyHeader | null {
  // The CRLF is looked for within the first 107 bytes only: how much arrived in one read must not decide the limit.
  const end = data.subarray(0, V1_MAX).indexOf("\r\n");
  if (end === -1) {
    if (data.length >= V1_MAX) throw new ProxyHeaderError("a PROXY v1 header longer than 107 bytes");
    return null;
  }
  const fields = data.subarray(0, end).toString("latin1").split(" ");
  const length = end + 2;
  if (fields[1] === "UNKNOWN") return { length, addresses: null };
  const [, family, src = "", dst = "", sport, dport] = fields;
  if (fields.length !== 6 || (family !== "TCP4" && family !== "TCP6")) throw new ProxyHeaderError("a malformed PROXY v1 header");
  const version = family === "TCP4" ? 4 : 6;
  // net.isIPv6 takes a zone ("fe80::1%eth0"), which the spec's addresses do not have.
  if (net.isIP(src) !== version || net.isIP(dst) !== version || `${src}${dst}`.includes("%")) throw new ProxyHeaderError("a PROXY v1 header with bad addresses");
  return { length, addresses: { source: { address: canonical(src), port: port(sport) }, destination: { address: canonical(dst), port: port(dport) } } };
}

/**
 * One spelling per address, so that per-address limits and the redirect-loop
 * memory count a client once however the front wrote it: IPv6 in Node's
 * canonical form (lowercase, zeros compressed, as sockets report it), and an
 * IPv4-mapped IPv6 address (::ffff:192.0.2.7) as the IPv4 address it maps,
 * since a front may send an IPv4 client as TCP4 or as TCP6. IPv4 has one
 * spelling already: net.isIPv4 refuses leading zeros.
 */
function canonical(address: string): string {
  if (!net.isIPv6(address)) return address;
  const text = new net.SocketAddress({ address, family: "ipv6" }).address;
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/.test(text) ? text.slice(7) : text;
}

function port(text: string | undefined): number {
  const n = Number(text);
  if (!/^\d{1,5}$/.test(text ?? "") || n > 65535) throw new ProxyHeaderError("a PROXY header with a bad port");
  return n;
}

function parseV2(data: Buffer): ProxyHeader | null {
  if (data.length < 16) return null;
  const versionCommand = data[12]!;
  if (versionCommand >> 4 !== 2) throw new ProxyHeaderError("a PROXY v2 header of an unknown version");
  const length = 16 + data.readUInt16BE(14);
  if (length > V2_MAX) throw new ProxyHeaderError("a PROXY v2 header too long");
  if (data.length < length) return null;
  const command = versionCommand & 0x0f;
  if (command === 0) return { length, addresses: null }; // LOCAL: the front's own health check
  if (command !== 1) throw new ProxyHeaderError("a PROXY v2 header with an unknown command");
  const family = data[13]! >> 4;
  const body = data.subarray(16, length);
  if (family === 1 && body.length >= 12) {
    return { length, addresses: { source: { address: ipv4(body, 0), port: body.readUInt16BE(8) }, destination: { address: ipv4(body, 4), port: body.readUInt16BE(10) } } };
  }
  if (family === 2 && body.length >= 36) {
    return { length, addresses: { source: { address: ipv6(body, 0), port: body.readUInt16BE(32) }, destination: { address: ipv6(body, 16), port: body.readUInt16BE(34) } } };
  }
  return { length, addresses: null }; // UNSPEC or UNIX: no address the balancer can use
}

function ipv4(b: Buffer, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

function ipv6(b: Buffer, at: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(at + i).toString(16));
  return canonical(groups.join(":"));
}

/** The header the balancer sends a node: v1 text or v2 binary; LOCAL (v2) or UNKNOWN (v1) without addresses (health probes). */
export function proxyHeader(version: "v1" | "v2", addresses: ProxyAddresses | null): Buffer {
  const family = addresses === null ? 0 : net.isIPv4(addresses.source.address) && net.isIPv4(addresses.destination.address) ? 4 : 6;
  if (version === "v1") {
    if (addresses === null) return Buffer.from("PROXY UNKNOWN\r\n");
    const [src, dst] = family === 4 ? [addresses.source.address, addresses.destination.address] : [asIpv6(addresses.source.address), asIpv6(addresses.destination.address)];
    return Buffer.from(`PROXY TCP${family} ${src} ${dst} ${addresses.source.port} ${addresses.destination.port}\r\n`);
  }
  if (addresses === null) return Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
  const body = family === 4 ? Buffer.alloc(12) : Buffer.alloc(36);
  const [src, dst] = family === 4 ? [addresses.source.address, addresses.destination.address] : [asIpv6(addresses.source.address), asIpv6(addresses.destination.address)];
  const bytes = family === 4 ? ipv4Bytes : ipv6Bytes;
  const size = family === 4 ? 4 : 16;
  bytes(src).copy(body, 0);
  bytes(dst).copy(body, size);
  body.writeUInt16BE(addresses.source.port, 2 * size);
  body.writeUInt16BE(addresses.destination.port, 2 * size + 2);
  const head = Buffer.from([0x21, family === 4 ? 0x11 : 0x21, 0, 0]);
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([V2_SIGNATURE, head, body]);
}

function asIpv6(address: string): string {
  return net.isIPv4(address) ? `::ffff:${address}` : address;
}

function ipv4Bytes(address: string): Buffer {
  return Buffer.from(address.split(".").map(Number));
}

function ipv6Bytes(address: string): Buffer {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return Buffer.concat([Buffer.alloc(10), Buffer.from([0xff, 0xff]), ipv4Bytes(mapped[1]!)]);
  const [head = "", tail = ""] = address.split("::");
  const groups = (s: string): number[] => (s === "" ? [] : s.split(":").map((g) => parseInt(g, 16)));
  const h = groups(head);
  const t = address.includes("::") ? groups(tail) : [];
  const all = [...h, ...Array(8 - h.length - t.length).fill(0), ...t];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(g, 2 * i));
  return out;
}
