import type { Socket } from "node:net";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { ClientConnection, ClientConnections } from "../session/sessions.js";
import type { ListenerConfig } from "./listener.js";
import { readProxyHeader } from "./proxy-reader.js";

export interface TcpIntakeDeps {
  connections: ClientConnections;
  /** The longest a PROXY header may take. */
  proxyTimeoutMs: number;
  metrics: Metrics;
  log: Logger;
}

/**
 * A TCP listener's path before the dialogue, the counterpart of the
 * WebSocket listener's: the PROXY header when the listener expects one, then
 * the connection limits by the real client address (a refused client is
 * answered there). A connection that passes gets `onClient`; its TLS, direct
 * or after STARTTLS, is the dialogue's (TcpLink), since STARTTLS comes in the
 * middle of it.
 */
export function tcpIntake(listener: ListenerConfig, deps: TcpIntakeDeps, onClient: (conn: ClientConnection) => void): (socket: Socket) => void {
  const admit = (socket: Socket, client?: { address: string; port: number }): void => {
    void deps.connections.accept(socket, listener, client).then((conn) => {
      if (conn !== null) onClient(conn);
    });
  };
  return (socket) => {
    if (!listener.proxyProtocol) return admit(socket);
    readProxyHeader(socket, deps.proxyTimeoutMs).then(
      (header) => admit(socket, header.addresses?.source),
      (err: Error) => {
        // Not a client's mistake to answer in XMPP: whatever sent it is not the front this listener expects.
        deps.log.info({ listener: listener.name, peer: `${socket.remoteAddress}:${socket.remotePort}`, reason: err.message }, "connection without a valid PROXY header closed");
        deps.metrics.connections.inc({ listener: listener.name, outcome: "rejected", transport: "tcp" });
        socket.destroy();
      },
    );
  };
}
