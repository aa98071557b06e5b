import http from "node:http";
import net from "node:net";
import tls from "node:tls";
import { WebSocketServer, type WebSocket } from "ws";
import { LINGER_MS, endThenDestroy } from "../net/linger.js";
import { WS_SUBPROTOCOL } from "../xmpp/framing.js";
import { AdmissionTicket, REFUSAL_TEXT, type AdmissionGate, type Refusal } from "./admission.js";
import type { BoundListener, ListenerConfig } from "./listener.js";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import { readProxyHeader } from "./proxy-reader.js";
import { canonicalAddress } from "../net/proxy-header.js";

/** Why a WebSocket client was turned away before its session began. */
export type WebSocketRefusal = Refusal | "subprotocol" | "origin" | "proxy-header";

export interface WebSocketListenerOptions {
  /** Allowed Origin headers; empty: any origin (RFC 6455 10.2: browsers send one, other clients may not). */
  origins: readonly string[];
  /** Largest frame or message a client may send before login, held to on the wire; the session raises it at the hand-off. */
  maxPayload: number;
  /** Ping every this many ms; a client that did not answer the previous ping is cut off (0: off). */
  pingIntervalMs: number;
  /** wss:// only: the current TLS context (reloadable). */
  secureContext?: () => tls.SecureContext | undefined;
  /** The connection limits shared with the TCP listeners, applied to each TCP connection before any HTTP. */
  admission: AdmissionGate;
  /** The longest a PROXY header, then the TLS handshake (wss://), may take. */
  proxyTimeoutMs: number;
  tlsHandshakeTimeoutMs: number;
  /** The longest from accept to the WebSocket upgrade: slow HTTP headers cannot hold a connection slot. */
  upgradeTimeoutMs: number;
  /** Where refusals are counted (as on TCP, plus the upgrade's own checks by name) and said. */
  metrics: Metrics;
  log: Logger;
}

/** A WebSocket client as the session sees it: its real address and its hold on the connection limits. */
export interface WebSocketClient {
  address: string;
  port: number;
  /** Query parameters of the upgrade request (the `from` hint of phase open). */
  query: URLSearchParams;
  admission: AdmissionTicket;
  /** wss://: the balancer's TLS with this client (channel binding reads its certificate); ws://: TLS, if any, ends at a front. */
  tls?: tls.TLSSocket;
}

/** The part of a `ws` socket that holds its message size limit (the library sets it once, from the server's maxPayload). */
interface ReceiverLimit {
  _receiver?: { _maxPayload?: unknown } | null;
}

/**
 * Lets an accepted WebSocket take messages up to `bytes` from now on. Before
 * login the listener's small maxPayload bounds every frame on the wire; after
 * the hand-off a client's messages may be as large as its node accepts. `ws`
 * has no public setter, so its receiver's field is set, and a `ws` that no
 * longer has it is an error (the tests run this path).
 */
export function allowMessagesUpTo(socket: WebSocket, bytes: number): void {
  const receiver = (socket as unknown as ReceiverLimit)._receiver;
  if (receiver === null || receiver === undefined || typeof receiver._maxPayload !== "number") {
    if (socket.readyState !== socket.OPEN) return; // closing: nothing more will be read
    throw new Error("this version of ws keeps no _receiver._maxPayload: the message limit cannot be raised after login");
  }
  receiver._maxPayload = bytes;
}

/** HTTP status for a limit's refusal: the service is full (503), or this address asks too much (429). */
const REFUSAL_STATUS: Record<Refusal, number> = {
  "max-connections": 503,
  "preauth-connections": 503,
  "address-connections": 429,
  "address-rate": 429,
};

function refusalResponse(reason: Refusal): string {
  const body = `${REFUSAL_TEXT[reason]}\n`;
  const status = REFUSAL_STATUS[reason];
  return `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nRetry-After: 5\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

/** The address the front appended to X-Forwarded-For (the last entry: earlier ones are the client's own say). */
function forwardedFor(req: http.IncomingMessage): string | undefined {
  const header = req.headers["x-forwarded-for"];
  const last = (Array.isArray(header) ? header.join(",") : (header ?? "")).split(",").at(-1)?.trim();
  // Not an address (or one with a zone): the front's own address stands. One spelling per address, as from a PROXY header.
  if (last === undefined || net.isIP(last) === 0 || last.includes("%")) return undefined;
  return canonicalAddress(last);
}

/** Who a connection the HTTP server sees is (the TLS socket on wss://). */
interface ConnectionEntry {
  raw: net.Socket;
  address: string;
  port: number;
  /** Taken at accept, or at the upgrade behind an HTTP front (`forwarded-for`). */
  admission?: AdmissionTicket;
  upgradeTimer: NodeJS.Timeout;
}

/**
 * An HTTP(S) server whose `path` upgrades to XMPP over WebSocket (RFC 7395).
 * Each TCP connection first passes what a TCP listener's does: its PROXY
 * header when the listener expects one, the connection limits (by the real
 * client address), and for wss:// the TLS handshake deadline; then the
 * upgrade, which must come within the upgrade deadline, ask for the `xmpp`
 * subprotocol and carry an allowed Origin. Idle clients are pinged. Other
 * paths answer 404 (the `ws` package) and plain requests 426.
 */
export function listenWebSocket(config: ListenerConfig, options: WebSocketListenerOptions, onSocket: (socket: WebSocket, client: WebSocketClient) => void): Promise<BoundListener & { destroyAll(): void }> {
  /** A connection or upgrade turned away: the connection limits count as on TCP; the upgrade's own checks and a bad PROXY header by name. */
  const refused = (reason: WebSocketRefusal, peer: string): void => {
    const upgrade = reason === "subprotocol" || reason === "origin";
    if (reason !== "proxy-header") options.metrics.rejected.inc({ reason: upgrade ? `websocket-${reason}` : reason });
    options.metrics.connections.inc({ listener: config.name, outcome: "rejected", transport: "websocket" });
    // A limit's refusals are logged at debug: a flood must not flood the log.
    const level = upgrade || reason === "proxy-header" ? "info" : "debug";
    options.log[level]({ listener: config.name, peer, reason }, "WebSocket connection refused");
  };
  const plainRequest = (_req: http.IncomingMessage, res: http.ServerResponse): void => {
    res.writeHead(426, { "content-type": "text/plain", upgrade: "websocket" }).end("XMPP over WebSocket (RFC 7395) only\n");
  };
  const web = http.createServer(plainRequest);
  const clients = new WeakMap<net.Socket, ConnectionEntry>();
  const raws = new Set<net.Socket>();
  /**
   * Counts the connection against the limits from now until it closes, or
   * says why not (with --workers the primary's verdict: the socket waits).
   */
  const admit = async (raw: net.Socket, address: string): Promise<AdmissionTicket | Refusal> => {
    const refusal = await options.admission.admit(address);
    if (refusal !== null) {
      refused(refusal, address);
      return refusal;
    }
    const admission = new AdmissionTicket(options.admission, address);
    if (raw.closed) admission.closed(); // gone while the verdict was awaited
    else raw.once("close", () => admission.closed());
    return admission;
  };

  const accepted = async (raw: net.Socket, address: string, port: number): Promise<void> => {
    // Behind an HTTP front the peer is the front: the client's address, and its limits, wait for the request.
    let admission: AdmissionTicket | undefined;
    if (!config.forwardedFor) {
      const ticket = await admit(raw, address);
      if (typeof ticket === "string") {
        // Before a TLS handshake nothing can be said; on ws:// the client reads why.
        if (config.kind === "wss") return void raw.destroy();
        return endThenDestroy(raw, LINGER_MS.rejected, refusalResponse(ticket));
      }
      if (raw.destroyed) return;
      admission = ticket;
    }
    const upgradeTimer = setTimeout(() => raw.destroy(), options.upgradeTimeoutMs).unref();
    raw.once("close", () => clearTimeout(upgradeTimer));
    if (config.kind === "ws") {
      clients.set(raw, { raw, address, port, admission, upgradeTimer });
      web.emit("connection", raw);
      // A PROXY reader leaves the socket paused, with what followed the header put back.
      raw.resume();
      return;
    }
    // wss://: TLS with the balancer's reloadable context (any client, with or without SNI), then HTTP.
    const context = options.secureContext?.();
    if (context === undefined) return void raw.destroy();
    const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: context, ALPNProtocols: ["http/1.1"] });
    const handshakeTimer = setTimeout(() => raw.destroy(), options.tlsHandshakeTimeoutMs).unref();
    secure.once("secure", () => clearTimeout(handshakeTimer));
    secure.on("error", () => secure.destroy());
    secure.once("close", () => (clearTimeout(handshakeTimer), raw.destroy()));
    clients.set(secure, { raw, address, port, admission, upgradeTimer });
    web.emit("connection", secure);
  };

  const server = net.createServer({ noDelay: true }, (raw) => {
    raws.add(raw);
    raw.once("close", () => raws.delete(raw));
    raw.on("error", () => raw.destroy());
    const peer = { address: raw.remoteAddress ?? "", port: raw.remotePort ?? 0 };
    if (!config.proxyProtocol) return void accepted(raw, peer.address, peer.port);
    readProxyHeader(raw, options.proxyTimeoutMs).then(
      (header) => {
        const source = header.addresses?.source ?? peer;
        void accepted(raw, source.address, source.port);
      },
      () => {
        refused("proxy-header", `${peer.address}:${peer.port}`);
        raw.destroy();
      },
    );
  });

  const wss = new WebSocketServer({
    server: web,
    path: config.path,
    maxPayload: options.maxPayload,
    perMessageDeflate: false,
    // Checked in verifyClient already: here the one protocol is echoed back.
    handleProtocols: (protocols) => (protocols.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false),
    verifyClient: (info: { origin: string; req: http.IncomingMessage }, done: (ok: boolean, code?: number, message?: string, headers?: http.OutgoingHttpHeaders) => void) => {
      const entry = clients.get(info.req.socket);
      if (entry === undefined) return done(false, 500);
      const checkUpgrade = (): void => {
        const peer = entry.address;
        const protocols = (info.req.headers["sec-websocket-protocol"] ?? "").split(",").map((p) => p.trim());
        if (!protocols.includes(WS_SUBPROTOCOL)) {
          refused("subprotocol", peer);
          return done(false, 400, "the xmpp WebSocket subprotocol is required (RFC 7395)");
        }
        if (options.origins.length > 0 && !options.origins.includes(info.origin)) {
          refused("origin", peer);
          return done(false, 403, "Origin not allowed");
        }
        done(true);
      };
      if (entry.admission !== undefined) return checkUpgrade();
      entry.address = forwardedFor(info.req) ?? entry.address;
      void admit(entry.raw, entry.address).then((ticket) => {
        if (typeof ticket === "string") return done(false, REFUSAL_STATUS[ticket], REFUSAL_TEXT[ticket], { "Retry-After": "5" });
        entry.admission = ticket;
        checkUpgrade();
      });
    },
  });
  const alive = new WeakMap<WebSocket, boolean>();
  wss.on("connection", (socket, request) => {
    const client = clients.get(request.socket);
    if (client?.admission === undefined) return void socket.terminate();
    clearTimeout(client.upgradeTimer);
    alive.set(socket, true);
    socket.on("pong", () => alive.set(socket, true));
    const query = new URL(request.url ?? "/", "http://localhost").searchParams;
    const secure = request.socket instanceof tls.TLSSocket ? { tls: request.socket } : {};
    onSocket(socket, { address: client.address, port: client.port, query, admission: client.admission, ...secure });
  });
  if (options.pingIntervalMs > 0) {
    const pinger = setInterval(() => {
      for (const socket of wss.clients) {
        if (alive.get(socket) === false) {
          socket.terminate();
          continue;
        }
        alive.set(socket, false);
        socket.ping();
      }
    }, options.pingIntervalMs).unref();
    server.once("close", () => clearInterval(pinger));
  }
  // Closing stops accepting and lets idle HTTP connections go; WebSocket sessions are the
  // balancer's to end (the dialogue's with <system-shutdown/>, relayed ones after the drain).
  const close = server.close.bind(server);
  server.close = ((cb?: (err?: Error) => void) => {
    wss.close();
    web.closeIdleConnections();
    return close(cb);
  }) as typeof server.close;
  const destroyAll = (): void => {
    for (const raw of raws) raw.destroy();
  };
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: config.host, port: config.port, backlog: 1024 }, () => {
      server.off("error", reject);
      const addr = server.address() as net.AddressInfo;
      resolve({ config, server, address: { host: addr.address, port: addr.port }, destroyAll });
    });
  });
}
