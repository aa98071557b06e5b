import type { EventEmitter } from "node:events";
import type { Element } from "@xmpp/xml";
import type { NodeView } from "../cluster/node.js";
import type { StreamErrorCondition } from "../errors.js";
import type { ListenerConfig } from "../listener/listener.js";
import type { LineLogger } from "../log.js";
import type { ConnectionOutcome } from "../metrics.js";
import type { ClientTrafficLimit } from "../upstream/traffic-limit.js";
import type { ClientTls } from "../control/offered-logins.js";
import type { LoginOffer } from "../xmpp/login-offer.js";
import type { StreamHeader } from "../xmpp/stream-header.js";
import type { NodeDial } from "./node-dialer.js";

/**
 * The one login dialogue and the one hand-off speak to a client through a
 * ClientLink; a transport (RFC 6120 TCP, RFC 7395 WebSocket) implements it
 * with only what differs on the wire: framing, TLS, how a node is dialed and
 * how bytes are relayed.
 */

/** What the client sent, one event at a time, in the transport's framing. */
export type ClientEvent =
  | { kind: "open"; header: StreamHeader; /** The opening as received, for a node that gets the client's own (phase open). */ raw: Buffer }
  | { kind: "element"; element: Element }
  | { kind: "close" };

/** Turns what the client sends into events; throws the StreamError that fits bad input. */
export interface ClientFrames {
  push(input: Buffer): void;
  next(): ClientEvent | null;
  /** What was received past the last event, untouched (a TCP byte stream; nothing on WebSocket). */
  takeRest(): Buffer;
  /** A new stream on the same transport (after STARTTLS). */
  restart(): void;
}

/** Who reads the client now: the dialogue, the hold during a decision, or nobody. */
export interface ClientInput {
  data(chunk: Buffer): void;
  /** The client half-closed (a FIN on TCP). */
  end(): void;
}

/** What arrived while the client was held for a decision: chunks on TCP, whole messages on WebSocket. */
export interface HeldInput {
  chunks: Buffer[];
  /** Whether the client half-closed meanwhile. */
  ended: boolean;
}

/** What became of a relayed connection, for the metrics and the log. */
export interface RelayOutcome {
  up: number;
  down: number;
  /** TCP: the client's last bytes closed its stream (`</stream:stream>`): nothing to resume, so no affinity window. */
  clean?: boolean;
  /** WebSocket: which side closed first, and its close code. */
  closedBy?: "client" | "node";
  code?: number;
}

/** A node connection made for one client, before its relay: the login goes over it, then the relay takes it. */
export interface NodeLeg {
  /** The node's `<stream:features/>` when the balancer opened the stream. */
  readonly features?: Element;
  /** Whether TLS was used because the node required it. */
  readonly tlsRequiredByNode: boolean;
  /** SHA-256 fingerprint of the certificate the node presented (TLS to the node): channel binding holds only where it is the client's. */
  readonly certificate?: string;
  /** Sends the client's bytes (or one message) to the node. */
  send(data: Buffer | string): void;
  /**
   * Shows each piece the node sends to `inspect`, then passes it to
   * `toClient`, until `inspect` returns false: then reading stops (the leg
   * waits for the relay, or is ended) and `onStop(false)` is called. The
   * node closing meanwhile calls `onStop(true)`.
   */
  watch(inspect: (data: Buffer) => boolean, toClient: (data: Buffer) => void, onStop: (closed: boolean) => void): void;
  /** Ends the node stream politely (after a refused login). */
  end(): void;
  destroy(): void;
}

export interface ClientLink {
  readonly transport: "tcp" | "websocket";
  readonly listener: ListenerConfig;
  readonly client: { address: string; port: number };
  readonly log: LineLogger;
  /** Aborted once the client has gone (closed, or half-closed while held): dials for it stop. */
  readonly leftSignal: AbortSignal;
  readonly frames: ClientFrames;
  /** Whether what the client sends is protected already: TLS on TCP; a WebSocket has its own TLS or the front's. */
  readonly secure: boolean;
  /** Phase open: the account a client named outside its stream header (a WebSocket upgrade URL's `from`). */
  readonly fromHint: string | undefined;

  // --- input -------------------------------------------------------------------
  /** Routes the client's input to `input` (null: nobody reads; what comes is kept for the next reader). */
  readWith(input: ClientInput | null): void;
  /** Keeps what comes while a node is chosen (at most `maxBytes`, beyond which the client is cut off). */
  hold(maxBytes: number): void;
  release(): HeldInput;
  /** Calls `handler` once when the client's connection closes; the dialogue lets go of it at the hand-off. */
  onClosed(handler: () => void): void;
  offClosed(handler: () => void): void;
  /** What a shutdown does to this client now (the dialogue: `<system-shutdown/>`). */
  onShutdown(handler: () => void): void;

  // --- TLS ---------------------------------------------------------------------
  /** Whether STARTTLS can be offered now (a TCP listener with a certificate, not yet on TLS). */
  canStartTls(): boolean;
  /** Puts the link on TLS (after `<proceed/>`, or at once on a direct-TLS listener); `onSecure` once the handshake is done. False: no certificate. */
  startTls(onSecure: () => void): boolean;
  /** Mid-handshake nothing can be said: the link is destroyed rather than closed. */
  readonly handshaking: boolean;
  /** The TLS the client is on, as channel binding sees it; undefined without TLS. */
  clientTls(): ClientTls | undefined;

  // --- framing -----------------------------------------------------------------
  openXml(from: string, id: string, lang: string | undefined): string;
  featuresXml(starttls: "required" | "optional" | "none", offer: LoginOffer): string;
  /** A stream error and the stream's close, as the messages the transport sends them in. */
  errorParts(condition: StreamErrorCondition, text?: string): string[];
  /** The stream's close. */
  readonly closeXml: string;
  /** A redirect to `node`: where it sends the client and what says so, or null when the transport has no address of the node (a WebSocket node without `ws=`). */
  redirectTo(node: NodeView, pendingOpen: string): { to: string; parts: string[] } | null;

  // --- output ------------------------------------------------------------------
  send(xml: string | Buffer): void;
  /** Sends `parts` and closes, destroying the connection if the client does not close within `lingerMs`. */
  close(parts: readonly string[], lingerMs: number): void;
  destroy(): void;

  // --- what became of it -------------------------------------------------------
  /** Records how the connection ended up; the first outcome counts. */
  finish(outcome: ConnectionOutcome): void;
  /** A limit refused this client's login. */
  countRefusal(reason: string): void;
  /** The balancer ends the connection with a stream error. */
  rejected(condition: StreamErrorCondition): void;

  // --- the node side -----------------------------------------------------------
  /**
   * How this transport reaches a node for this login: `from` (the login's
   * JID) names the user on the stream the balancer opens; phase open opens
   * none (the node gets the client's own opening).
   */
  nodeDial(domain: string, stream: { from: string | undefined } | null): NodeDial<NodeLeg>;
  /**
   * From here on the client and its node are relayed byte for byte (or
   * message for message) both ways; `watcher` sees what the node sends until
   * it returns false (phase open's verdict).
   */
  relay(leg: NodeLeg, onClose: (outcome: RelayOutcome) => void, traffic: ClientTrafficLimit | undefined, watcher: ((data: Buffer) => boolean) | undefined): void;
  /** A relayed client is cut off with these last words (past a failed-login limit in phase open); its node goes too. */
  cutOff(parts: readonly string[], leg: NodeLeg): void;
}

/** A node connection as NodeLeg.watch reads it: a socket ('data') or a WebSocket ('message'). */
interface NodeOutput extends EventEmitter {
  pause(): void;
  resume(): void;
}

/**
 * NodeLeg.watch for either kind of node connection: each piece of `event` is
 * shown to `inspect`, then passed to `toClient`, until `inspect` returns
 * false or the node closes. Returns what stops it early.
 */
export function watchNodeOutput<T>(
  source: NodeOutput,
  event: "data" | "message",
  asBuffer: (piece: T) => Buffer,
  inspect: (data: Buffer) => boolean,
  toClient: (data: Buffer) => void,
  onStop: (closed: boolean) => void,
): () => void {
  const stop = (): void => {
    source.off(event, onPiece).off("close", onClose);
    source.pause();
  };
  const onPiece = (piece: T): void => {
    const data = asBuffer(piece);
    const more = inspect(data);
    toClient(data);
    if (more) return;
    stop();
    onStop(false);
  };
  const onClose = (): void => {
    stop();
    onStop(true);
  };
  source.on(event, onPiece).once("close", onClose);
  source.resume();
  return stop;
}
