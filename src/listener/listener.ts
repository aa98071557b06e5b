import net from "node:net";

/** `ws`/`wss`: XMPP over WebSocket (RFC 7395), on an HTTP(S) server at `path`. */
export type ListenerKind = "starttls" | "direct-tls" | "ws" | "wss";
/** What happens once the node is chosen: see-other-host, or dial and relay. */
export type Mode = "redirect" | "forward";
/** When the node is chosen: at the stream header (it carries `from`) or at the SASL `<auth/>`. */
export type Phase = "open" | "login";

export interface ListenerConfig {
  /** As given on the command line: the listener's label in logs and metrics. */
  name: string;
  kind: ListenerKind;
  host: string;
  port: number;
  mode: Mode;
  phase: Phase;
  /** Each connection starts with a PROXY protocol header (v1 or v2) from a front: the client's real address. */
  proxyProtocol: boolean;
  /**
   * WebSocket listeners behind an HTTP front (an AWS ALB, nginx): the client's address is the last
   * X-Forwarded-For entry, the one the front appended, and the per-address limits apply at the upgrade.
   */
  forwardedFor?: boolean;
  /** WebSocket listeners: the HTTP path upgraded to WebSocket (e.g. /xmpp-websocket). */
  path?: string;
}

export interface BoundListener {
  config: ListenerConfig;
  server: net.Server;
  /** The address actually bound (port 0 resolved). */
  address: { host: string; port: number };
}

/**
 * Binds one listener. Every kind is a plain TCP server: TLS (direct or after
 * STARTTLS) is layered on by the dialogue, which leaves room for a PROXY
 * protocol header to be read before it.
 */
export function listen(config: ListenerConfig, keepAliveMs: number, onConnection: (socket: net.Socket) => void): Promise<BoundListener> {
  return new Promise((resolve, reject) => {
    // Half-open connections are kept: a client's FIN is passed on to its node, not answered for it.
    // Keepalive on the TCP socket itself, since a TLS socket layered on later cannot set it.
    const server = net.createServer({ allowHalfOpen: true, keepAlive: keepAliveMs > 0, keepAliveInitialDelay: keepAliveMs, noDelay: true }, onConnection);
    server.once("error", reject);
    server.listen({ host: config.host, port: config.port, backlog: 1024 }, () => {
      server.off("error", reject);
      const addr = server.address() as net.AddressInfo;
      resolve({ config, server, address: { host: addr.address, port: addr.port } });
    });
  });
}
