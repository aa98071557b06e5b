import { randomBytes } from "node:crypto";
import type { Element } from "@xmpp/xml";
import type { RawData, WebSocket } from "ws";
import type { NodeView } from "../cluster/node.js";
import type { NodeTableHolder } from "../cluster/node-table-holder.js";
import { SaslError, StreamError } from "../errors.js";
import type { ListenerConfig } from "../listener/listener.js";
import { allowMessagesUpTo, type WebSocketClient } from "../listener/websocket-listener.js";
import { BoundLogger, type Logger } from "../log.js";
import type { ConnectionOutcome, Metrics } from "../metrics.js";
import type { RouteDecision, Router } from "../router/router.js";
import { dialNodeWebSocket, toBuffer } from "../upstream/node-websocket.js";
import type { TrafficLimit } from "../upstream/traffic-limit.js";
import { relayWebSockets } from "../upstream/websocket-relay.js";
import { SaslOutcomeScanner } from "../xmpp/sasl-outcome.js";
import { FRAMING_CLOSE_XML, NS_FRAMING, framedFeaturesXml, framedStreamErrorXml, framingOpenXml, seeOtherUriXml } from "../xmpp/framing.js";
import { parseBareJid } from "../xmpp/jid.js";
import { MessageReader } from "../xmpp/message-reader.js";
import { NS_CLIENT, NS_SASL, STANZA_NAMES } from "../xmpp/namespaces.js";
import { EMPTY_CHALLENGE_XML, authXml } from "../xmpp/nonzas.js";
import { decodeSaslPayload, saslIdentity, type Mechanism } from "../xmpp/sasl-identity.js";
import { saslFailureXml } from "../xmpp/stream-error.js";
import type { AuthFailures } from "./auth-failures.js";
import { clientTrafficLimit } from "./handoff.js";
import type { LoginVerdicts } from "./login-verdict.js";
import { dialChosenNode } from "./node-dialer.js";

export interface WebSocketSessionSettings {
  listener: ListenerConfig;
  domains: ReadonlySet<string>;
  mechanisms: (domain: string) => readonly Mechanism[];
  loginTimeoutMs: number;
  dialTimeoutMs: number;
  maxPreauthBytes: number;
  maxSaslFailures: number;
  authFailures: AuthFailures;
  /** What the node's verdict on a login does to the directory and the failed-login limits. */
  verdicts: LoginVerdicts;
  /** What a forwarded client may send (`--traffic-limit`). */
  trafficLimit?: TrafficLimit;
  backendCa?: Buffer;
}

/**
 * The longest message before login, held to on the wire (the listener's
 * maxPayload, checked at each frame header before its payload is buffered):
 * a SASL initial response fits many times over.
 */
export const MAX_PREAUTH_MESSAGE_BYTES = 16 * 1024;

/** The largest message after login, either way (Prosody's default websocket_frame_buffer_limit is 2 MiB). */
export const MAX_MESSAGE_BYTES = 2 * 1024 * 1024;

type State = "open" | "features" | "sasl-response" | "deciding" | "exchange" | "done";

/** One SASL attempt a node is running for the client (state exchange). */
class WebSocketAttempt {
  constructor(
    /** The JID this attempt named: its refusal is charged to it. */
    readonly jid: string | null,
    readonly decision: RouteDecision,
    readonly upstream: WebSocket,
  ) {}
}

/**
 * One XMPP-over-WebSocket client (RFC 7395) from upgrade to relay: the same
 * pre-auth dialogue as on TCP, minus STARTTLS (the WebSocket's own TLS, or the
 * front's, protects it), then a see-other-uri redirect or a forward to the
 * node's own WebSocket endpoint with the client's login replayed.
 */
export class WebSocketSession {
  private state: State = "open";
  private domain = "";
  private lang: string | undefined;
  private readonly reader: MessageReader;
  private bytesSeen = 0;
  private saslFailures = 0;
  private offered: readonly Mechanism[] = [];
  private mechanism: Mechanism | undefined;
  private attempt: WebSocketAttempt | undefined;
  /** Messages that arrived while the node was chosen and dialed: replayed after the login. */
  private held: Buffer[] = [];
  private readonly left = new AbortController();
  private readonly timer: NodeJS.Timeout;
  private outcome: ConnectionOutcome | undefined;
  /** This session's lines: the balancer's logger with its listener and client. */
  private readonly log: BoundLogger;

  constructor(
    private readonly socket: WebSocket,
    private readonly client: WebSocketClient,
    private readonly settings: WebSocketSessionSettings,
    private readonly router: Router,
    private readonly nodes: NodeTableHolder,
    private readonly metrics: Metrics,
    parentLog: Logger,
  ) {
    this.log = new BoundLogger(parentLog, this);
    this.reader = new MessageReader(Math.min(MAX_PREAUTH_MESSAGE_BYTES, settings.maxPreauthBytes));
    this.timer = setTimeout(() => this.fail(new StreamError("connection-timeout", "the login took too long")), settings.loginTimeoutMs).unref();
    metrics.activeConnections.inc({ listener: settings.listener.name });
    socket.on("message", this.onMessage);
    socket.once("close", () => {
      clearTimeout(this.timer);
      client.admission.closed();
      this.left.abort();
      this.dropAttempt();
      metrics.activeConnections.dec({ listener: settings.listener.name });
      if (this.state !== "done") {
        this.state = "done";
        this.finish("abandoned");
      }
    });
    socket.on("error", (err: Error & { code?: string }) => {
      if (err.code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH" && this.state !== "done") {
        // Refused at the frame header, before its payload was buffered: ws closes with 1009 (Message Too Big).
        this.log.info({ limit: MAX_PREAUTH_MESSAGE_BYTES }, "client rejected: a message larger than the pre-login limit");
        this.finish("rejected");
        this.state = "done";
        clearTimeout(this.timer);
        this.dropAttempt();
      } else {
        this.log.info({ err: err.message }, "WebSocket error from the client");
      }
      socket.terminate();
    });
  }

  logBindings(): { listener: string; client: string; transport: "websocket" } {
    return { listener: this.settings.listener.name, client: `${this.client.address}:${this.client.port}`, transport: "websocket" };
  }

  private readonly onMessage = (data: RawData): void => {
    if (this.state === "done") return;
    const message = toBuffer(data);
    if (this.state === "deciding") {
      this.bytesSeen += message.length;
      if (this.bytesSeen > this.settings.maxPreauthBytes) return this.fail(new StreamError("policy-violation", "too much data before login"));
      this.held.push(message);
      return;
    }
    try {
      this.bytesSeen += message.length;
      if (this.bytesSeen > this.settings.maxPreauthBytes || message.length > MAX_PREAUTH_MESSAGE_BYTES) throw new StreamError("policy-violation", "too much data before login");
      this.onElement(this.reader.read(message), message);
    } catch (err) {
      this.fail(err);
    }
  };

  private onElement(el: Element, raw: Buffer): void {
    const name = el.getName();
    const ns = el.getNS();
    if (ns === NS_FRAMING && name === "close") {
      this.finish("abandoned");
      return this.end(FRAMING_CLOSE_XML);
    }
    if (ns === NS_FRAMING && name === "open") return this.onOpen(el, raw);
    if (this.state === "open") throw new StreamError("invalid-namespace", "the first message must be an RFC 7395 <open/>");
    if (ns === NS_SASL) {
      if (this.state === "exchange" && this.attempt !== undefined && (name === "response" || name === "abort")) {
        // The node runs this exchange: the client's steps go to it as they came.
        return void this.attempt.upstream.send(raw, { binary: false });
      }
      if (name === "auth" && this.state === "features") return this.onAuth(el);
      if (name === "response" && this.state === "sasl-response" && this.mechanism !== undefined) return this.onInitialResponse(this.mechanism, el.getText());
      if (name === "abort") return this.saslFailed(new SaslError("aborted", "the client aborted the login"));
    }
    if ((ns === NS_CLIENT || ns === "") && STANZA_NAMES.has(name)) throw new StreamError("not-authorized", "stanzas are not allowed before login");
    throw new StreamError("unsupported-stanza-type", `<${name}/> is not expected here`);
  }

  private onOpen(el: Element, raw: Buffer): void {
    const to = (el.attrs.to ?? "").toLowerCase();
    this.lang = el.attrs["xml:lang"];
    if (!this.settings.domains.has(to)) throw new StreamError("host-unknown", `this service does not serve '${to}'`);
    this.domain = to;
    // Phase open: browsers' clients send no `from`; the page may name the account in the URL (?from=) instead.
    const from = el.attrs.from ?? (this.settings.listener.phase === "open" ? (this.client.query.get("from") ?? undefined) : undefined);
    const claimed = from === undefined ? null : parseBareJid(from);
    if (this.settings.listener.phase === "open" && claimed !== null && claimed.domain === to) {
      // Phase open: the node gets the client's own <open/> and answers with its own features.
      return void this.decide(claimed.bare, undefined, [raw], false);
    }
    this.send(framingOpenXml({ from: to, id: randomBytes(8).toString("hex"), lang: this.lang }));
    this.offered = this.settings.mechanisms(to);
    this.send(framedFeaturesXml(this.offered));
    this.state = "features";
  }

  private onAuth(el: Element): void {
    const mechanism = this.offered.find((m) => m === (el.attrs.mechanism ?? ""));
    if (mechanism === undefined) return this.saslFailed(new SaslError("invalid-mechanism", `mechanism '${el.attrs.mechanism ?? ""}' is not offered`));
    const text = el.getText();
    if (text.trim() === "") {
      this.mechanism = mechanism;
      this.state = "sasl-response";
      return this.send(EMPTY_CHALLENGE_XML);
    }
    this.onInitialResponse(mechanism, text);
  }

  private onInitialResponse(mechanism: Mechanism, text: string): void {
    let jid: string | null;
    try {
      jid = saslIdentity(mechanism, decodeSaslPayload(text), this.domain);
    } catch (err) {
      if (!(err instanceof SaslError)) throw err;
      return this.saslFailed(err);
    }
    void this.decide(jid, mechanism, [Buffer.from(authXml(mechanism, text.trim()))], true);
  }

  private saslFailed(err: SaslError): void {
    this.mechanism = undefined;
    this.state = "features";
    this.log.info({ condition: err.condition, reason: err.message }, "SASL attempt refused");
    this.send(saslFailureXml(err.condition, err.message));
    this.countSaslFailure();
  }

  /** Refusals by the balancer and by nodes alike: past the limit the stream is closed. */
  private countSaslFailure(): void {
    this.saslFailures += 1;
    if (this.saslFailures >= this.settings.maxSaslFailures) throw new StreamError("policy-violation", "too many failed login attempts");
  }

  // --- the decision ------------------------------------------------------------

  private async decide(jid: string | null, mechanism: Mechanism | undefined, replay: Buffer[], openStream: boolean): Promise<void> {
    const throttled = this.settings.authFailures.blocked(this.client.address, jid);
    if (throttled !== null) {
      this.metrics.rejected.inc({ reason: throttled });
      return this.fail(new StreamError("policy-violation", "too many failed logins; try again later"));
    }
    this.state = "deciding";
    try {
      if (this.settings.listener.mode === "redirect") {
        const decision = await this.router.route({ jid, domain: this.domain }, this.log);
        if (this.settled) return;
        if (decision !== null && decision.node.ws !== undefined) return this.redirect(jid, decision);
        if (decision !== null) this.log.warn({ node: decision.node.id }, "the node has no ws= URL to redirect WebSocket clients to: forwarding instead");
      }
      await this.forward(jid, mechanism, replay, openStream);
    } catch (err) {
      this.log.error({ err }, "WebSocket handoff failed");
      this.fail(new StreamError("internal-server-error", "internal error"));
    }
  }

  private redirect(jid: string | null, decision: RouteDecision): void {
    decision.lease.redirected();
    this.finish("redirected");
    this.log.info({ jid, node: decision.node.id, via: decision.via, to: decision.node.ws }, "redirected");
    this.end(seeOtherUriXml(decision.node.ws!));
  }

  private async forward(jid: string | null, mechanism: Mechanism | undefined, replay: Buffer[], openStream: boolean): Promise<void> {
    const signal = this.left.signal;
    const chosen = await dialChosenNode(this.router, this.nodes, this.metrics, { jid, domain: this.domain }, {
      unusable: (node) => (node.wsInternal === undefined ? "the node has no ws-internal= URL: WebSocket clients cannot be forwarded to it" : null),
      dial: (node) => dialNodeWebSocket(node.wsInternal!, { domain: this.domain, timeoutMs: this.settings.dialTimeoutMs, ca: this.settings.backendCa, signal, maxMessageBytes: MAX_MESSAGE_BYTES, clientAddress: this.client.address, skipOpen: !openStream }),
    }, { timeoutMs: this.settings.dialTimeoutMs, signal, log: this.log });
    if (!("connection" in chosen)) {
      if (chosen.outcome === "no-node" && !this.settled) this.noNode(jid, mechanism);
      return;
    }
    const { decision, connection: upstream } = chosen;
    if (this.state === "done" || this.socket.readyState !== this.socket.OPEN) {
      upstream.terminate();
      if (decision.via === "strategy") decision.lease.refused();
      return;
    }
    this.log.info({ jid, node: decision.node.id, via: decision.via, internal: decision.node.wsInternal }, "forwarded");
    // Text frames: RFC 7395 3.2, and Prosody closes on a binary one (1003).
    for (const message of replay) upstream.send(message, { binary: false });
    if (mechanism !== undefined) return this.authenticate(new WebSocketAttempt(jid, decision, upstream));
    for (const message of this.held) upstream.send(message, { binary: false });
    this.held = [];
    this.relay(decision, upstream, this.watchOpenPhaseLogin(jid, decision, upstream));
  }

  /**
   * Login phase: the node has the client's `<auth/>`; the client's SASL
   * messages go to it one by one (onElement) and the node's come back, until
   * its verdict. A refusal gives the client back to the dialogue, so its next
   * `<auth/>` passes the limits and the routing afresh.
   */
  private authenticate(attempt: WebSocketAttempt): void {
    this.attempt = attempt;
    this.state = "exchange";
    const scanner = new SaslOutcomeScanner();
    const onNodeMessage = (data: RawData): void => {
      const message = toBuffer(data);
      const verdict = scanner.push(message);
      this.sendRaw(message);
      if (verdict === null) return;
      detach();
      this.attempt = undefined;
      if (verdict === "success") return this.loginAccepted(attempt);
      attempt.upstream.close(1000);
      this.state = "features";
      this.settings.verdicts.refused(attempt.decision, this.client.address, attempt.jid);
      this.log.info({ node: attempt.decision.node.id }, "the node refused the login");
      try {
        this.countSaslFailure();
      } catch (err) {
        this.fail(err);
      }
    };
    const onNodeClose = (): void => {
      detach();
      if (this.attempt !== attempt) return;
      this.attempt = undefined;
      attempt.decision.lease.refused();
      this.log.info("the node closed the connection during the login");
      this.finish("failed");
      this.end("");
    };
    const detach = (): void => {
      attempt.upstream.off("message", onNodeMessage).off("close", onNodeClose);
      attempt.upstream.pause();
    };
    attempt.upstream.on("message", onNodeMessage).once("close", onNodeClose).on("error", () => attempt.upstream.terminate());
    attempt.upstream.resume();
    const held = this.held;
    this.held = [];
    try {
      for (const message of held) this.onElement(this.reader.read(message), message);
    } catch (err) {
      this.fail(err);
    }
  }

  private loginAccepted(attempt: WebSocketAttempt): void {
    this.settings.verdicts.accepted(attempt.decision);
    this.relay(attempt.decision, attempt.upstream, undefined);
  }

  /** From here on messages are relayed both ways, as large as the node takes. */
  private relay(decision: RouteDecision, upstream: WebSocket, watcher: ((message: Buffer) => boolean) | undefined): void {
    const node: NodeView = decision.node;
    this.state = "done";
    clearTimeout(this.timer);
    this.socket.off("message", this.onMessage);
    allowMessagesUpTo(this.socket, MAX_MESSAGE_BYTES);
    this.finish("forwarded");
    this.metrics.forwardedActive.inc({ node: node.id });
    relayWebSockets(
      this.socket,
      upstream,
      (stats) => {
        this.metrics.forwardedActive.dec({ node: node.id });
        this.metrics.relayBytes.inc({ direction: "up" }, stats.up);
        this.metrics.relayBytes.inc({ direction: "down" }, stats.down);
        decision.lease.closed();
        this.log.info({ node: node.id, up: stats.up, down: stats.down, code: stats.code, by: stats.closedBy }, "forwarded WebSocket closed");
      },
      watcher,
      clientTrafficLimit(this.settings.trafficLimit, this.metrics, this.log),
    );
  }

  /**
   * Phase open: the client logs in with the node's own features; the node's
   * verdict is read from its messages. Each refusal counts against the
   * client's address and the `<open/>`'s `from`; past a limit the client is
   * cut off after the `<failure/>`, so further attempts come through the
   * dialogue again.
   */
  private watchOpenPhaseLogin(jid: string | null, decision: RouteDecision, upstream: WebSocket): (message: Buffer) => boolean {
    const scanner = new SaslOutcomeScanner();
    let settled = false;
    upstream.once("close", () => {
      if (!settled) decision.lease.refused();
    });
    return (message) => {
      const verdict = scanner.push(message);
      if (verdict === "success") {
        settled = true;
        this.settings.verdicts.accepted(decision);
        return false;
      }
      if (verdict === "failure") {
        const refusal = this.settings.verdicts.refused(decision, this.client.address, jid);
        if (refusal !== null) {
          this.metrics.rejected.inc({ reason: refusal });
          this.log.info({ jid }, "too many failed logins: the forwarded connection is closed");
          // After this message (the <failure/>) has gone to the client: a stream error, then both sides go.
          setImmediate(() => {
            this.sendRaw(framedStreamErrorXml("policy-violation", "too many failed logins; try again later"));
            this.socket.close(1000);
            upstream.terminate();
          });
          return false;
        }
      }
      return true;
    };
  }

  private noNode(jid: string | null, mechanism: Mechanism | undefined): void {
    this.log.warn({ jid, domain: this.domain }, "no cluster node available for this login");
    if (mechanism === undefined) return this.fail(new StreamError("remote-connection-failed", "no cluster node is available"));
    this.state = "features";
    const held = this.held;
    this.held = [];
    try {
      this.saslFailed(new SaslError("temporary-auth-failure", "no cluster node is available; try again later"));
      for (const message of held) this.onElement(this.reader.read(message), message);
    } catch (err) {
      this.fail(err);
    }
  }

  /** An attempt still with its node when the session ends: the node's socket goes, and so does the claim it made. */
  private dropAttempt(): void {
    const attempt = this.attempt;
    this.attempt = undefined;
    if (attempt === undefined) return;
    attempt.upstream.terminate();
    attempt.decision.lease.refused();
  }

  /** Read through a getter: the state changes while a decision is awaited. */
  private get settled(): boolean {
    return this.state === "done";
  }

  /** The balancer stops: a client still in the dialogue is told so; a relayed one is left to drain. */
  shutdown(): void {
    if (this.state !== "done") this.fail(new StreamError("system-shutdown", "the service is shutting down"));
  }

  /** Cuts the client off (and, through the relay, its node). */
  terminate(): void {
    this.socket.terminate();
  }

  // --- output ----------------------------------------------------------------

  private send(xml: string): void {
    if (this.socket.readyState === this.socket.OPEN) this.socket.send(xml);
  }

  /** A node's message, passed on as it came (a text frame). */
  private sendRaw(message: Buffer | string): void {
    if (this.socket.readyState === this.socket.OPEN) this.socket.send(message, { binary: false });
  }

  private finish(outcome: ConnectionOutcome): void {
    if (this.outcome !== undefined) return;
    this.outcome = outcome;
    if (outcome === "forwarded" || outcome === "redirected") this.client.admission.leftPreAuth();
    this.metrics.connections.inc({ listener: this.settings.listener.name, outcome, transport: "websocket" });
  }

  /** Sends the last message, then closes the WebSocket (and cuts it off if the client does not close its side). */
  private end(lastMessage: string): void {
    this.state = "done";
    clearTimeout(this.timer);
    this.dropAttempt();
    if (lastMessage !== "") this.send(lastMessage);
    if (this.socket.readyState === this.socket.OPEN) this.socket.close(1000);
    setTimeout(() => this.socket.terminate(), 2000).unref();
  }

  /** RFC 7395 3.6: the stream error in a message of its own, then `<close/>`. Client mistakes are logged at info. */
  private fail(err: unknown): void {
    if (this.state === "done") return;
    const streamError = err instanceof StreamError ? err : new StreamError("internal-server-error", "internal error", { cause: err });
    if (err instanceof StreamError) this.log.info({ condition: err.condition, reason: err.message }, "client rejected");
    else this.log.error({ err }, "unexpected error in the WebSocket dialogue");
    this.metrics.streamErrors.inc({ condition: streamError.condition });
    this.finish("rejected");
    if (this.domain === "" && this.state === "open") this.send(framingOpenXml({ from: [...this.settings.domains][0] ?? "localhost", id: randomBytes(8).toString("hex") }));
    this.send(framedStreamErrorXml(streamError.condition, streamError.message));
    this.end(FRAMING_CLOSE_XML);
  }
}
