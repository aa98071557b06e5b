import http from "node:http";
import net from "node:net";
import tls from "node:tls";
import { WebSocketServer, type WebSocket } from "ws";
import { WS_SUBPROTOCOL } from "../xmpp/framing.js";
import type { BoundListener, ListenerConfig } from "./listener.js";

export interface WebSocketListenerOptions {
  /** Allowed Origin headers; empty: any origin (RFC 6455 10.2: browsers send one, other clients may not). */
  origins: readonly string[];
  /** Largest message a client may send (the pre-auth limit is checked per message by the session). */
  maxPayload: number;
  /** Ping every this many ms; a client that did not answer the previous ping is cut off (0: off). */
  pingIntervalMs: number;
  /** wss:// only: the current TLS context (reloadable). */
  secureContext?: () => tls.SecureContext | undefined;
  /** Told of every refused upgrade (wrong subprotocol, Origin), for the metrics. */
  onRefused: (reason: "subprotocol" | "origin", peer: string) => void;
}

/**
 * An HTTP(S) server whose `path` upgrades to XMPP over WebSocket (RFC 7395):
 * the `xmpp` subprotocol is required, the Origin checked, and idle clients
 * pinged. Everything else on the server answers 404 (the `ws` package does so
 * for other paths and plain requests get the handler below).
 */
export function listenWebSocket(config: ListenerConfig, options: WebSocketListenerOptions, onSocket: (socket: WebSocket, request: http.IncomingMessage) => void): Promise<BoundListener> {
  const plainRequest = (_req: http.IncomingMessage, res: http.ServerResponse): void => {
    res.writeHead(426, { "content-type": "text/plain", upgrade: "websocket" }).end("XMPP over WebSocket (RFC 7395) only\n");
  };
  const web = http.createServer(plainRequest);
  // wss://: TLS with the balancer's reloadable context (any client, with or without SNI), then HTTP.
  const server: net.Server =
    config.kind === "wss"
      ? net.createServer((raw) => {
          const context = options.secureContext?.();
          if (context === undefined) return void raw.destroy();
          const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: context, ALPNProtocols: ["http/1.1"] });
          secure.on("error", () => secure.destroy());
          secure.once("close", () => raw.destroy());
          web.emit("connection", secure);
        })
      : web;
  const wss = new WebSocketServer({
    server: web,
    path: config.path,
    maxPayload: options.maxPayload,
    perMessageDeflate: false,
    // Checked in verifyClient already: here the one protocol is echoed back.
    handleProtocols: (protocols) => (protocols.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false),
    verifyClient: (info: { origin: string; req: http.IncomingMessage }, done: (ok: boolean, code?: number, message?: string) => void) => {
      const peer = info.req.socket.remoteAddress ?? "";
      const protocols = (info.req.headers["sec-websocket-protocol"] ?? "").split(",").map((p) => p.trim());
      if (!protocols.includes(WS_SUBPROTOCOL)) {
        options.onRefused("subprotocol", peer);
        return done(false, 400, "the xmpp WebSocket subprotocol is required (RFC 7395)");
      }
      if (options.origins.length > 0 && !options.origins.includes(info.origin)) {
        options.onRefused("origin", peer);
        return done(false, 403, "Origin not allowed");
      }
      done(true);
    },
  });
  const alive = new WeakMap<WebSocket, boolean>();
  wss.on("connection", (socket, request) => {
    alive.set(socket, true);
    socket.on("pong", () => alive.set(socket, true));
    onSocket(socket, request);
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
  // Closing the listener closes its WebSockets too (the HTTP server waits for them otherwise).
  const close = server.close.bind(server);
  server.close = ((cb?: (err?: Error) => void) => {
    for (const socket of wss.clients) socket.terminate();
    wss.close();
    return close(cb);
  }) as typeof server.close;
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: config.host, port: config.port, backlog: 1024 }, () => {
      server.off("error", reject);
      const addr = server.address() as net.AddressInfo;
      resolve({ config, server, address: { host: addr.address, port: addr.port } });
    });
  });
}
