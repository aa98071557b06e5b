import type { Element } from "@xmpp/xml";
import type { RawData, WebSocket } from "ws";
import type { NodeView } from "../cluster/node.js";
import { StreamError, type StreamErrorCondition } from "../errors.js";
import type { ListenerConfig } from "../listener/listener.js";
import { servedCertificate } from "../listener/tls-context.js";
import { allowMessagesUpTo, type WebSocketClient } from "../listener/websocket-listener.js";
import { BoundLogger, type LineLogger, type Logger } from "../log.js";
import type { ConnectionOutcome, Metrics } from "../metrics.js";
import { dialNodeWebSocket, toBuffer } from "../upstream/node-websocket.js";
import type { ClientTrafficLimit } from "../upstream/traffic-limit.js";
import { relayWebSockets } from "../upstream/websocket-relay.js";
import { FRAMING_CLOSE_XML, NS_FRAMING, framedFeaturesXml, framedStreamErrorXml, framingOpenXml, seeOtherUriXml } from "../xmpp/framing.js";
import { MessageReader } from "../xmpp/message-reader.js";
import type { ClientTls } from "../control/offered-logins.js";
import type { LoginOffer } from "../xmpp/login-offer.js";
import { watchNodeOutput, type ClientEvent, type ClientFrames, type ClientInput, type ClientLink, type HeldInput, type NodeLeg, type RelayOutcome } from "./client-link.js";
import type { NodeDial } from "./node-dialer.js";

/**
 * The longest message before login, held to on the wire (the listener's
 * maxPayload, checked at each frame header before its payload is buffered):
 * a SASL initial response fits many times over.
 */
export const MAX_PREAUTH_MESSAGE_BYTES = 16 * 1024;

/** The largest message after login, either way (Prosody's default websocket_frame_buffer_limit is 2 MiB). */
export const MAX_MESSAGE_BYTES = 2 * 1024 * 1024;

export interface WebSocketLinkSettings {
  maxPreauthBytes: number;
  dialTimeoutMs: number;
  /** CA for wss:// nodes; without it their certificates are not verified. */
  backendCa?: Buffer;
}

const EMPTY = Buffer.alloc(0);

/** RFC 7395 framing: each message one element; `<open/>` and `<close/>` frame the stream. */
class MessageFrames implements ClientFrames {
  private readonly reader: MessageReader;
  private readonly queue: Buffer[] = [];
  private opened = false;

  constructor(maxMessageBytes: number) {
    this.reader = new MessageReader(maxMessageBytes);
  }

  push(input: Buffer): void {
    this.queue.push(input);
  }

  next(): ClientEvent | null {
    const message = this.queue.shift();
    if (message === undefined) return null;
    const element = this.reader.read(message);
    if (element.getNS() === NS_FRAMING && element.getName() === "open") {
      this.opened = true;
      return { kind: "open", header: openingOf(element), raw: message };
    }
    if (element.getNS() === NS_FRAMING && element.getName() === "close") return { kind: "close" };
    if (!this.opened) throw new StreamError("invalid-namespace", "the first message must be an RFC 7395 <open/>");
    return { kind: "element", element };
  }

  takeRest(): Buffer {
    return EMPTY;
  }

  restart(): void {}
}

function openingOf(el: Element): { to: string; from?: string; lang?: string } {
  const header: { to: string; from?: string; lang?: string } = { to: (el.attrs.to ?? "").toLowerCase() };
  if (el.attrs.from !== undefined) header.from = el.attrs.from;
  if (el.attrs["xml:lang"] !== undefined) header.lang = el.attrs["xml:lang"];
  return header;
}

/** A node's own XMPP-over-WebSocket endpoint, set up by dialNodeWebSocket. */
class WebSocketNodeLeg implements NodeLeg {
  readonly tlsRequiredByNode = false;
  private stopWatching: (() => void) | undefined;

  constructor(
    readonly socket: WebSocket,
    readonly features: Element | undefined,
  ) {
    socket.on("error", () => socket.terminate());
  }

  send(data: Buffer | string): void {
    // Text frames: RFC 7395 3.2, and Prosody closes on a binary one (1003).
    if (this.socket.readyState === this.socket.OPEN) this.socket.send(data, { binary: false });
  }

  watch(inspect: (data: Buffer) => boolean, toClient: (data: Buffer) => void, onStop: (closed: boolean) => void): void {
    this.stopWatching = watchNodeOutput(this.socket, "message", toBuffer, inspect, toClient, (closed) => {
      this.stopWatching = undefined;
      onStop(closed);
    });
  }

  end(): void {
    this.stopWatching?.();
    this.socket.close(1000);
  }

  destroy(): void {
    this.stopWatching?.();
    this.socket.terminate();
  }
}

/** The shutdown handler of a relayed client: it is left to drain. */
const LEAVE_TO_DRAIN = (): void => {};

/**
 * A client on a WebSocket listener (RFC 7395): each message one element, no
 * STARTTLS (the WebSocket's own TLS, or the front's, protects it),
 * see-other-uri to the node's `ws=` URL, a node reached at its own WebSocket
 * endpoint (`ws-internal=`), and a relay of message for message.
 */
export class WebSocketLink implements ClientLink {
  readonly transport = "websocket";
  readonly frames: ClientFrames;
  readonly secure = true;
  readonly handshaking = false;
  readonly closeXml = FRAMING_CLOSE_XML;
  readonly fromHint: string | undefined;
  readonly log: LineLogger;
  private input: ClientInput | null = null;
  private unread: Buffer[] = [];
  private held: Buffer[] = [];
  private heldBytes = 0;
  private readonly left = new AbortController();
  private outcome: ConnectionOutcome | undefined;
  private shutdownHandler: () => void = () => this.destroy();

  constructor(
    private readonly socket: WebSocket,
    private readonly webClient: WebSocketClient,
    readonly listener: ListenerConfig,
    private readonly settings: WebSocketLinkSettings,
    private readonly metrics: Metrics,
    parentLog: Logger,
  ) {
    this.log = new BoundLogger(parentLog, this);
    this.frames = new MessageFrames(Math.min(MAX_PREAUTH_MESSAGE_BYTES, settings.maxPreauthBytes));
    // Browsers' clients send no `from`: a page may name the account in the URL (phase open).
    this.fromHint = listener.phase === "open" ? (webClient.query.get("from") ?? undefined) : undefined;
    metrics.activeConnections.inc({ listener: listener.name });
    socket.on("message", this.onMessage);
    socket.once("close", () => {
      webClient.admission.closed();
      this.left.abort();
      metrics.activeConnections.dec({ listener: listener.name });
      this.finish("abandoned"); // only if nothing else was recorded
    });
    socket.on("error", (err: Error & { code?: string }) => {
      if (err.code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH" && this.outcome === undefined) {
        // Refused at the frame header, before its payload was buffered: ws closes with 1009 (Message Too Big).
        this.log.info({ limit: MAX_PREAUTH_MESSAGE_BYTES }, "client rejected: a message larger than the pre-login limit");
        this.finish("rejected");
      } else {
        this.log.info({ err: err.message }, "WebSocket error from the client");
      }
      socket.terminate();
    });
  }

  get client(): ClientLink["client"] {
    return this.webClient;
  }
  get leftSignal(): AbortSignal {
    return this.left.signal;
  }

  logBindings(): { listener: string; client: string; transport: "websocket" } {
    return { listener: this.listener.name, client: `${this.webClient.address}:${this.webClient.port}`, transport: "websocket" };
  }

  private readonly onMessage = (data: RawData): void => {
    const message = toBuffer(data);
    if (this.input !== null) this.input.data(message);
    else this.unread.push(message);
  };

  readWith(input: ClientInput | null): void {
    this.input = input;
    if (input === null) return;
    const unread = this.unread;
    this.unread = [];
    for (const message of unread) if (this.input === input) input.data(message);
  }

  hold(maxBytes: number): void {
    this.held = [];
    this.heldBytes = 0;
    this.readWith({
      data: (message) => {
        this.heldBytes += message.length;
        if (this.heldBytes > maxBytes) {
          this.finish("rejected");
          this.destroy();
          return;
        }
        this.held.push(message);
      },
      end: () => {},
    });
  }

  release(): HeldInput {
    const chunks = this.held;
    this.held = [];
    this.heldBytes = 0;
    this.readWith(null);
    return { chunks, ended: false };
  }

  onClosed(handler: () => void): void {
    this.socket.once("close", handler);
  }
  offClosed(handler: () => void): void {
    this.socket.off("close", handler);
  }
  onShutdown(handler: () => void): void {
    this.shutdownHandler = handler;
  }
  /** The balancer stops: a client in the dialogue is told so; a relayed one is left to drain. */
  shutdown(): void {
    this.shutdownHandler();
  }

  canStartTls(): boolean {
    return false;
  }
  startTls(): boolean {
    return false;
  }

  openXml(from: string, id: string, lang: string | undefined): string {
    return framingOpenXml({ from, id, lang });
  }
  clientTls(): ClientTls | undefined {
    return this.webClient.tls === undefined ? { certificate: undefined } : servedCertificate(this.webClient.tls);
  }

  featuresXml(_starttls: "required" | "optional" | "none", offer: LoginOffer): string {
    return framedFeaturesXml(offer);
  }
  /** RFC 7395 3.6: the stream error in a message of its own, then `<close/>`. */
  errorParts(condition: StreamErrorCondition, text?: string): string[] {
    return [framedStreamErrorXml(condition, text), FRAMING_CLOSE_XML];
  }
  /** RFC 7395 3.6.1: the answer to the `<open/>` itself, so no opening of the balancer's precedes it. */
  redirectTo(node: NodeView): { to: string; parts: string[] } | null {
    return node.ws === undefined ? null : { to: node.ws, parts: [seeOtherUriXml(node.ws)] };
  }

  send(xml: string | Buffer): void {
    if (this.socket.readyState === this.socket.OPEN) this.socket.send(xml, { binary: false });
  }

  /** Sends the last messages, then closes the WebSocket (and cuts it off if the client does not close its side). */
  close(parts: readonly string[], lingerMs: number): void {
    for (const part of parts) this.send(part);
    if (this.socket.readyState === this.socket.OPEN) this.socket.close(1000);
    setTimeout(() => this.socket.terminate(), lingerMs).unref();
  }

  destroy(): void {
    this.socket.terminate();
  }

  finish(outcome: ConnectionOutcome): void {
    if (this.outcome !== undefined) return;
    this.outcome = outcome;
    if (outcome === "forwarded" || outcome === "redirected") this.webClient.admission.leftPreAuth();
    this.metrics.connections.inc({ listener: this.listener.name, outcome, transport: "websocket" });
  }
  countRefusal(reason: string): void {
    this.metrics.rejected.inc({ reason });
  }
  rejected(condition: StreamErrorCondition): void {
    this.metrics.streamErrors.inc({ condition });
    this.finish("rejected");
  }

  nodeDial(domain: string, stream: { from: string | undefined } | null): NodeDial<NodeLeg> {
    const { settings } = this;
    return {
      unusable: (node) => (node.wsInternal === undefined ? "the node has no ws-internal= URL: WebSocket clients cannot be forwarded to it" : null),
      dial: async (node) => {
        const { socket, features } = await dialNodeWebSocket(node.wsInternal!, {
          domain,
          timeoutMs: settings.dialTimeoutMs,
          ca: settings.backendCa,
          signal: this.left.signal,
          maxMessageBytes: MAX_MESSAGE_BYTES,
          clientAddress: this.webClient.address,
          skipOpen: stream === null,
          ...(stream?.from === undefined ? {} : { from: stream.from }),
        });
        return new WebSocketNodeLeg(socket, features);
      },
    };
  }

  relay(leg: NodeLeg, onClose: (outcome: RelayOutcome) => void, traffic: ClientTrafficLimit | undefined, watcher: ((data: Buffer) => boolean) | undefined): void {
    this.socket.off("message", this.onMessage);
    this.input = null;
    this.shutdownHandler = LEAVE_TO_DRAIN;
    // From here on messages may be as large as the node takes.
    allowMessagesUpTo(this.socket, MAX_MESSAGE_BYTES);
    relayWebSockets(this.socket, (leg as WebSocketNodeLeg).socket, onClose, watcher, traffic);
  }

  cutOff(parts: readonly string[], leg: NodeLeg): void {
    for (const part of parts) this.send(part);
    if (this.socket.readyState === this.socket.OPEN) this.socket.close(1000);
    leg.destroy();
  }
}
