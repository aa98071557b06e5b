import net, { type Socket } from "node:net";
import tls from "node:tls";
import type { NodeView, ProxyVersion } from "../cluster/node.js";
import type { StreamErrorCondition } from "../errors.js";
import { LINGER_MS, endThenDestroy } from "../net/linger.js";
import { servedCertificate } from "../listener/tls-context.js";
import { proxyHeader } from "../net/proxy-header.js";
import type { ConnectionOutcome } from "../metrics.js";
import { dialNode, nodeCertificate, type NodeConnection, type NodeDialOptions } from "../upstream/node-stream.js";
import { relay } from "../upstream/relay.js";
import type { ClientTrafficLimit } from "../upstream/traffic-limit.js";
import { featuresXml } from "../xmpp/features.js";
import { STREAM_CLOSE_XML } from "../xmpp/nonzas.js";
import type { ClientTls } from "../control/offered-logins.js";
import type { LoginOffer } from "../xmpp/login-offer.js";
import { seeOtherHostXml } from "../xmpp/see-other-host.js";
import { streamErrorXml } from "../xmpp/stream-error.js";
import { readStreamHeader, streamOpenXml } from "../xmpp/stream-header.js";
import { StreamReader } from "../xmpp/stream-reader.js";
import { watchNodeOutput, type ClientEvent, type ClientFrames, type ClientInput, type ClientLink, type HeldInput, type NodeLeg, type RelayOutcome } from "./client-link.js";
import type { NodeDial } from "./node-dialer.js";
import type { ClientConnection } from "./sessions.js";

/** The longest tag (or text and tag) a client may send before login: a SASL initial response fits many times over. */
const MAX_TAG_BYTES = 16 * 1024;

export interface TcpLinkSettings {
  /** The current TLS context (reloadable), or undefined when the balancer has no certificate. */
  secureContext: () => tls.SecureContext | undefined;
  /** A TLS handshake (STARTTLS or direct) that takes longer is cut off: a stalled one must not hold its slot for the whole login timeout. */
  tlsHandshakeTimeoutMs: number;
  maxHeaderBytes: number;
  maxPreauthBytes: number;
  /** How nodes are dialed: TLS to the node, CA, deadline, header limit. */
  dial: Omit<NodeDialOptions, "domain" | "openStream" | "signal" | "proxyHeader">;
  /** TCP keepalive on node sockets (0: off). */
  keepAliveMs: number;
  /** PROXY protocol header version for nodes without their own `proxy=`. */
  backendProxy?: ProxyVersion;
}

/** RFC 6120 framing: a byte stream read by the StreamReader, opened by `<stream:stream>`. */
class StreamFrames implements ClientFrames {
  constructor(private readonly reader: StreamReader) {}

  push(input: Buffer): void {
    this.reader.push(input);
  }

  next(): ClientEvent | null {
    const event = this.reader.next();
    if (event === null) return null;
    if (event.kind === "start") return { kind: "open", header: readStreamHeader(event.element), raw: event.raw };
    if (event.kind === "end") return { kind: "close" };
    return event;
  }

  takeRest(): Buffer {
    return this.reader.takeRest();
  }

  restart(): void {
    this.reader.restart();
  }
}

/** A node reached over TCP (its XMPP stream set up by dialNode). */
class TcpNodeLeg implements NodeLeg {
  private stopWatching: (() => void) | undefined;

  constructor(
    readonly connection: NodeConnection,
    keepAliveMs: number,
  ) {
    const { socket } = connection;
    if (keepAliveMs > 0) socket.setKeepAlive(true, keepAliveMs);
    socket.setNoDelay(true);
    socket.on("error", ignore);
  }

  get socket(): Socket {
    return this.connection.socket;
  }
  get features(): NodeConnection["features"] {
    return this.connection.features;
  }
  get tlsRequiredByNode(): boolean {
    return this.connection.tlsRequiredByNode;
  }
  get certificate(): string | undefined {
    return nodeCertificate(this.socket);
  }

  /** Bytes the node sent after its features (normally none): they belong to the client, first. */
  takeLeftover(): Buffer {
    const { leftover } = this.connection;
    this.connection.leftover = EMPTY;
    return leftover;
  }

  send(data: Buffer | string): void {
    if (!this.socket.destroyed) this.socket.write(data);
  }

  watch(inspect: (data: Buffer) => boolean, toClient: (data: Buffer) => void, onStop: (closed: boolean) => void): void {
    const leftover = this.takeLeftover();
    if (leftover.length > 0) toClient(leftover);
    this.stopWatching = watchNodeOutput(this.socket, "data", (chunk: Buffer) => chunk, inspect, toClient, (closed) => {
      this.stopWatching = undefined;
      onStop(closed);
    });
  }

  end(): void {
    this.stopWatching?.();
    this.socket.resume(); // read to its end, unheard, so its close comes at once
    endThenDestroy(this.socket, LINGER_MS.rejected, STREAM_CLOSE_XML);
  }

  destroy(): void {
    this.stopWatching?.();
    this.socket.destroy();
  }
}

/**
 * A client on a TCP listener (RFC 6120): its connection, the stream framing,
 * STARTTLS or direct TLS with a handshake deadline, see-other-host, a node
 * dialed over TCP (with its own stream and, when asked, a PROXY header) and
 * the byte relay. Let go at the hand-off: the relay keeps the connection only.
 */
export class TcpLink implements ClientLink {
  readonly transport = "tcp";
  readonly frames: ClientFrames;
  readonly fromHint = undefined;
  readonly closeXml = STREAM_CLOSE_XML;
  secure = false;
  handshaking = false;
  /** The first socket: its close ends the dialogue (a TLS socket closes with it). */
  private readonly raw: Socket;

  constructor(
    private readonly conn: ClientConnection,
    private readonly settings: TcpLinkSettings,
  ) {
    this.raw = conn.socket;
    this.frames = new StreamFrames(new StreamReader({ maxHeaderBytes: settings.maxHeaderBytes, maxTagBytes: Math.min(MAX_TAG_BYTES, settings.maxPreauthBytes), childElements: false }));
  }

  get listener(): ClientLink["listener"] {
    return this.conn.listener;
  }
  get client(): ClientLink["client"] {
    return this.conn.client;
  }
  get log(): ClientLink["log"] {
    return this.conn.log;
  }
  get leftSignal(): AbortSignal {
    return this.conn.leftSignal;
  }

  readWith(input: ClientInput | null): void {
    this.conn.readWith(input);
  }
  hold(maxBytes: number): void {
    this.conn.hold(maxBytes);
  }
  release(): HeldInput {
    return this.conn.release();
  }
  onClosed(handler: () => void): void {
    this.raw.once("close", handler);
  }
  offClosed(handler: () => void): void {
    this.raw.off("close", handler);
  }
  onShutdown(handler: () => void): void {
    this.conn.onShutdown(handler);
  }

  canStartTls(): boolean {
    return !this.secure && this.settings.secureContext() !== undefined;
  }

  startTls(onSecure: () => void): boolean {
    const context = this.settings.secureContext();
    if (context === undefined) return false;
    // XEP-0368: direct TLS speaks ALPN xmpp-client; after STARTTLS no ALPN is expected.
    const alpn = this.conn.listener.kind === "direct-tls" ? ["xmpp-client"] : undefined;
    const secure = serverTls(this.conn, context, alpn, this.settings.tlsHandshakeTimeoutMs);
    this.handshaking = true;
    secure.once("secure", () => {
      this.handshaking = false;
      this.secure = true;
      onSecure();
    });
    return true;
  }

  clientTls(): ClientTls | undefined {
    return this.secure ? servedCertificate(this.conn.socket as tls.TLSSocket) : undefined;
  }

  openXml(from: string, id: string, lang: string | undefined): string {
    return streamOpenXml({ from, id, lang });
  }
  featuresXml(starttls: "required" | "optional" | "none", offer: LoginOffer): string {
    return featuresXml({ starttls, offer });
  }
  errorParts(condition: StreamErrorCondition, text?: string): string[] {
    return [streamErrorXml(condition, text)];
  }
  redirectTo(node: NodeView, pendingOpen: string): { to: string; parts: string[] } {
    const { host, port } = node.external;
    return { to: `${host}:${port}`, parts: [pendingOpen + seeOtherHostXml(host, port)] };
  }

  send(xml: string | Buffer): void {
    if (!this.conn.socket.destroyed) this.conn.socket.write(xml);
  }
  close(parts: readonly string[], lingerMs: number): void {
    this.conn.close(lingerMs, parts.join(""));
  }
  destroy(): void {
    this.conn.destroy();
  }

  finish(outcome: ConnectionOutcome): void {
    this.conn.finish(outcome);
  }
  countRefusal(reason: string): void {
    this.conn.countRefusal(reason);
  }
  rejected(condition: StreamErrorCondition): void {
    this.conn.rejected(condition);
  }

  nodeDial(domain: string, stream: { from: string | undefined } | null): NodeDial<NodeLeg> {
    const opening = stream === null ? { openStream: false } : { openStream: true, ...(stream.from === undefined ? {} : { from: stream.from }) };
    return {
      unusable: () => null,
      dial: async (node) => {
        const connection = await dialNode(node.internal, { ...this.settings.dial, domain, ...opening, signal: this.conn.leftSignal, proxyHeader: this.proxyHeaderFor(node) });
        return new TcpNodeLeg(connection, this.settings.keepAliveMs);
      },
    };
  }

  relay(leg: NodeLeg, onClose: (outcome: RelayOutcome) => void, traffic: ClientTrafficLimit | undefined, watcher: ((data: Buffer) => boolean) | undefined): void {
    const node = leg as TcpNodeLeg;
    const client = this.conn.handOver();
    const leftover = node.takeLeftover();
    if (leftover.length > 0) client.write(leftover);
    relay(client, node.socket, onClose, traffic, watcher);
  }

  cutOff(parts: readonly string[], leg: NodeLeg): void {
    this.send(parts.join(""));
    leg.destroy();
  }

  /** The client's address for a node that reads PROXY headers: the real client, and the listener it reached. */
  private proxyHeaderFor(node: NodeView): Buffer | undefined {
    const version = node.proxy ?? this.settings.backendProxy;
    if (version === undefined) return undefined;
    const destination = { address: this.conn.socket.localAddress ?? "", port: this.conn.socket.localPort ?? 0 };
    return proxyHeader(version, net.isIP(this.conn.client.address) === 0 ? null : { source: this.conn.client, destination });
  }
}

const EMPTY = Buffer.alloc(0);

function ignore(): void {}

/**
 * Puts the connection on TLS as the server, with a handshake deadline. Its
 * listeners stay on the socket for the connection's whole life, so they hold
 * the connection only, never the dialogue (which is let go at the hand-off).
 */
function serverTls(conn: ClientConnection, context: tls.SecureContext, alpn: string[] | undefined, handshakeTimeoutMs: number): tls.TLSSocket {
  const raw = conn.socket;
  const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: context, ALPNProtocols: alpn });
  conn.upgraded(secure);
  let established = false;
  const deadline = setTimeout(() => {
    conn.log.info("TLS handshake took too long");
    conn.finish("rejected");
    secure.destroy();
  }, handshakeTimeoutMs).unref();
  secure.once("secure", () => {
    established = true;
    clearTimeout(deadline);
  });
  secure.on("error", (err: Error) => {
    conn.log.info({ err: err.message }, established ? "TLS error" : "TLS handshake failed");
    conn.finish("rejected");
    secure.destroy();
  });
  secure.once("close", () => {
    clearTimeout(deadline);
    raw.destroy();
  });
  return secure;
}
