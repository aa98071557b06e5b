import type { Socket } from "node:net";
import type { StreamErrorCondition } from "../errors.js";
import type { ListenerConfig } from "../listener/listener.js";
import { BoundLogger, type LineLogger, type Logger } from "../log.js";
import type { ConnectionOutcome, Metrics } from "../metrics.js";
import { AdmissionTicket, REFUSAL_TEXT, type AdmissionGate, type Refusal } from "../listener/admission.js";
import { LINGER_MS, endThenDestroy } from "../net/linger.js";
import { streamErrorXml } from "../xmpp/stream-error.js";
import { streamOpenXml } from "../xmpp/stream-header.js";
import type { ClientInput, HeldInput } from "./client-link.js";

/** The abort reason when a client leaves: one shared value (a default abort() builds a DOMException with a stack each time). */
const CLIENT_LEFT = Object.freeze({ reason: "the client left" });

/** What leftSignal gives once the relay has the connection: nothing is dialed for it any more, so nothing waits for it to abort. */
const HANDED_OVER_SIGNAL = new AbortController().signal;

/** The shutdown handler of a relayed connection: it is left to drain (one shared function, not one per connection). */
const LEAVE_TO_DRAIN = (): void => {};

/** The shutdown handler until the dialogue sets its own (one shared function, called as a method of the connection). */
function destroyOnShutdown(this: ClientConnection): void {
  this.destroy();
}

/** A reset while a connection waits for its admission is nobody's to report. */
const ignoreError = (): void => {};

/** What an idle connection holds and has not read: one shared empty list until something comes (never pushed to). */
const NOTHING_HELD: Buffer[] = [];

export interface ClientAddress {
  address: string;
  port: number;
}

/** Where a client socket keeps its connection: the listeners below are shared by every connection and find it there. */
const CONNECTION = Symbol("client connection");
type ConnectionSocket = Socket & { [CONNECTION]: ClientConnection };
const connectionOf = (socket: Socket): ClientConnection => (socket as ConnectionSocket)[CONNECTION];

/** One function each for every connection's socket events, so an idle relayed session holds no closures of its own. */
function onClientError(this: Socket, err: Error): void {
  connectionOf(this).log.debug({ err: err.message }, "client socket error");
}
function onClientClose(this: Socket): void {
  connectionOf(this).closed();
}
function onClientData(this: Socket, chunk: Buffer): void {
  connectionOf(this).received(chunk);
}
function onClientEnd(this: Socket): void {
  connectionOf(this).ended();
}

/**
 * One client connection from accept to close: its id, logger, gauge and
 * outcome, the socket in use (raw, then TLS), who reads it, and what a
 * shutdown does to it, whether it is still in the dialogue or relayed.
 */
export class ClientConnection {
  socket: Socket;
  private input: ClientInput | null = null;
  private outcome: ConnectionOutcome | undefined;
  private shutdownHandler: (this: ClientConnection) => void = destroyOnShutdown;
  private held: Buffer[] = NOTHING_HELD;
  /** Bytes (and a FIN) that came while nobody was reading. */
  private unread: Buffer[] = NOTHING_HELD;
  private unreadEnd = false;
  private heldBytes = 0;
  private heldEnded = false;
  /** Dropped at the hand-off (see leftSignal): an idle relayed session keeps as little as it can. */
  private left: AbortController | null = new AbortController();
  /** Made when first used: a connection refused at once by a limit never needs one. */
  private boundLog: BoundLogger | undefined;

  constructor(
    raw: Socket,
    readonly id: string,
    readonly listener: ListenerConfig,
    /** The client's address: the PROXY header's source when a front sent one, else the socket's peer. */
    readonly client: ClientAddress,
    /** The balancer's logger: this connection's own (`log`) adds its id, client and listener. */
    private readonly parentLog: Logger,
    private readonly metrics: Metrics,
    /** Its hold on the connection limits (the pre-auth count until the hand-off, the open count until close). */
    private readonly admission: AdmissionTicket,
    /** The open connections, which this one leaves when it closes. */
    private readonly registry: Set<ClientConnection>,
  ) {
    this.socket = raw;
    (raw as ConnectionSocket)[CONNECTION] = this;
    // 'close' comes once: on() spares the wrapper once() keeps per listener for the life of the connection.
    raw.on("error", onClientError).on("close", onClientClose);
    this.listen(raw);
  }

  /** This connection's lines: the balancer's logger with its id, client and listener. */
  get log(): LineLogger {
    return (this.boundLog ??= new BoundLogger(this.parentLog, this));
  }

  logBindings(): { conn: string; client: string; listener: string } {
    return { conn: this.id, client: `${this.client.address}:${this.client.port}`, listener: this.listener.name };
  }

  /** The client's socket closed (a TLS socket closes with it). */
  closed(): void {
    this.left?.abort(CLIENT_LEFT);
    this.finish("abandoned"); // only if nothing else was recorded
    this.metrics.activeConnections.dec({ listener: this.listener.name });
    this.admission.closed();
    this.registry.delete(this);
  }

  /** Aborted once the client has gone (closed, or half-closed while held): dials for it stop. */
  get leftSignal(): AbortSignal {
    return this.left?.signal ?? HANDED_OVER_SIGNAL;
  }

  /** Records how the connection ended up; the first outcome counts. */
  finish(outcome: ConnectionOutcome): void {
    if (this.outcome !== undefined) return;
    this.outcome = outcome;
    this.metrics.connections.inc({ listener: this.listener.name, outcome, transport: "tcp" });
    if (outcome === "forwarded" || outcome === "redirected") this.admission.leftPreAuth();
  }

  /** A limit refused this connection's login (counted beside the connection limits). */
  countRefusal(reason: string): void {
    this.metrics.rejected.inc({ reason });
  }

  /** The balancer ends the connection with a stream error. */
  rejected(condition: StreamErrorCondition): void {
    this.metrics.streamErrors.inc({ condition });
    this.finish("rejected");
  }

  /**
   * Routes the client's bytes and FIN to `input` (null: nobody reads, the
   * socket is paused). Whatever arrives while nobody reads is kept for the
   * next reader, never dropped.
   */
  readWith(input: ClientInput | null): void {
    this.input = input;
    if (input === null) {
      this.socket.pause();
      return;
    }
    const unread = this.unread;
    this.unread = NOTHING_HELD;
    for (const chunk of unread) if (this.input === input) input.data(chunk);
    if (this.unreadEnd && this.input === input) input.end();
    this.unreadEnd = false;
    if (this.input === input) this.socket.resume();
  }

  /** The transport is now TLS over the raw socket. */
  upgraded(secure: Socket): void {
    this.socket.off("data", onClientData).off("end", onClientEnd);
    (secure as ConnectionSocket)[CONNECTION] = this;
    this.socket = secure;
    this.listen(secure);
  }

  /**
   * Keeps what the client sends while its node is chosen and dialed (at most
   * `maxBytes`: beyond that the client is cut off). A FIN meanwhile means the
   * client left: the dial is abandoned.
   */
  hold(maxBytes: number): void {
    this.held = [];
    this.heldBytes = 0;
    this.heldEnded = false;
    this.readWith({
      data: (chunk) => {
        this.heldBytes += chunk.length;
        if (this.heldBytes > maxBytes) {
          this.finish("rejected");
          this.socket.destroy();
          return;
        }
        this.held.push(chunk);
      },
      end: () => {
        this.heldEnded = true;
        this.left?.abort(CLIENT_LEFT);
      },
    });
  }

  /** Ends the hold: what arrived meanwhile. Nobody reads the client until readWith(). */
  release(): HeldInput {
    const released = { chunks: this.held, ended: this.heldEnded };
    this.held = NOTHING_HELD;
    this.heldBytes = 0;
    this.readWith(null);
    return released;
  }

  /** Stops reading for the relay, which attaches its own listeners to the socket. A shutdown then lets it drain. */
  handOver(): Socket {
    this.socket.off("data", onClientData).off("end", onClientEnd);
    // Bytes nobody has read yet go back into the socket, for the relay's first read.
    if (this.unread.length > 0) this.socket.unshift(Buffer.concat(this.unread));
    this.unread = this.held = NOTHING_HELD;
    this.input = null;
    this.shutdownHandler = LEAVE_TO_DRAIN;
    this.left = null;
    return this.socket;
  }

  /** What a shutdown does to this connection now (the dialogue: <system-shutdown/>). */
  onShutdown(handler: () => void): void {
    this.shutdownHandler = handler;
  }

  shutdown(): void {
    this.shutdownHandler.call(this);
  }

  /** Ends the client's side after `data`, destroying it if it does not close within `lingerMs`. */
  close(lingerMs: number, data?: string): void {
    this.readWith(null);
    endThenDestroy(this.socket, lingerMs, data);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private listen(socket: Socket): void {
    socket.on("data", onClientData).on("end", onClientEnd);
  }

  /** A chunk from the client, for whoever reads it now, or kept for the next reader. */
  received(chunk: Buffer): void {
    if (this.input !== null) this.input.data(chunk);
    else if (this.unread === NOTHING_HELD) this.unread = [chunk];
    else this.unread.push(chunk);
  }

  /** The client's FIN. */
  ended(): void {
    if (this.input !== null) this.input.end();
    else this.unreadEnd = true;
  }
}

/** Every open client connection: the balancer's shutdown handle. */
export class ClientConnections {
  private readonly open = new Set<ClientConnection>();
  private nextId = 0;

  constructor(
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly admission: AdmissionGate,
    /** The domain a refusal's stream header names (the first served). */
    private readonly domain: string,
  ) {}

  /**
   * Takes a new connection, or refuses it (null) when a limit is reached;
   * `client` is the address a PROXY header gave, if any. With `--workers` the
   * verdict comes from the primary: meanwhile the socket keeps what arrives.
   */
  async accept(raw: Socket, listener: ListenerConfig, client?: ClientAddress): Promise<ClientConnection | null> {
    const address = client ?? { address: raw.remoteAddress ?? "", port: raw.remotePort ?? 0 };
    raw.on("error", ignoreError);
    const refusal = await this.admission.admit(address.address);
    raw.off("error", ignoreError);
    if (refusal !== null) {
      this.refuse(raw, listener, address, refusal);
      return null;
    }
    if (raw.closed) {
      // Gone while the verdict was awaited: nothing will report its close.
      this.admission.closed(address.address, true);
      return null;
    }
    this.metrics.activeConnections.inc({ listener: listener.name });
    const id = (++this.nextId).toString(36);
    const conn = new ClientConnection(raw, id, listener, address, this.log, this.metrics, new AdmissionTicket(this.admission, address.address), this.open);
    this.open.add(conn);
    return conn;
  }

  get size(): number {
    return this.open.size;
  }

  /**
   * A limit says no: on a STARTTLS listener the client reads why (the
   * balancer's stream header and <policy-violation/>, RFC 6120 4.9.3.14);
   * before a TLS handshake nothing can be said, the connection is closed.
   * Logged at debug: a flood must not flood the log.
   */
  private refuse(raw: Socket, listener: ListenerConfig, client: ClientAddress, reason: Refusal): void {
    this.metrics.rejected.inc({ reason });
    this.metrics.connections.inc({ listener: listener.name, outcome: "rejected", transport: "tcp" });
    this.log.debug({ client: `${client.address}:${client.port}`, listener: listener.name, reason }, "connection refused by a limit");
    raw.on("error", () => {});
    if (listener.kind !== "starttls") return void raw.destroy();
    const xml = streamOpenXml({ from: this.domain, id: "refused" }) + streamErrorXml("policy-violation", REFUSAL_TEXT[reason]);
    endThenDestroy(raw, LINGER_MS.rejected, xml);
  }

  /** Asks each connection to stop: a dialogue answers <system-shutdown/>, a relayed session is left to drain. */
  shutdown(): void {
    for (const conn of this.open) conn.shutdown();
  }

  destroyAll(): void {
    for (const conn of this.open) conn.destroy();
  }
}
