import { randomUUID } from "node:crypto";
import tls from "node:tls";
import type { Socket } from "node:net";
import type { Element } from "@xmpp/xml";
import { SaslError, StreamError } from "../errors.js";
import type { ListenerConfig } from "../listener/listener.js";
import { LINGER_MS } from "../net/linger.js";
import { featuresXml } from "../xmpp/features.js";
import { parseBareJid } from "../xmpp/jid.js";
import { NS_CLIENT, NS_SASL, NS_TLS, STANZA_NAMES } from "../xmpp/namespaces.js";
import { ABORT_XML, EMPTY_CHALLENGE_XML, PROCEED_XML, STREAM_CLOSE_XML, TLS_FAILURE_XML, authXml, responseXml } from "../xmpp/nonzas.js";
import { decodeSaslPayload, saslIdentity, type Mechanism } from "../xmpp/sasl-identity.js";
import { saslFailureXml, streamErrorXml } from "../xmpp/stream-error.js";
import { readStreamHeader, streamOpenXml, type StreamHeader } from "../xmpp/stream-header.js";
import { StreamReader, type StreamEvent } from "../xmpp/stream-reader.js";
import type { AuthFailures } from "./auth-failures.js";
import type { AttemptEnd, ForwardedLogin } from "./forwarded-login.js";
import type { Handoff, Login } from "./handoff.js";
import type { ClientConnection, HeldInput } from "./sessions.js";

export interface DialogueSettings {
  listener: ListenerConfig;
  domains: ReadonlySet<string>;
  /** SASL mechanisms to offer now on a stream to a domain (the configured ones that its nodes support). */
  mechanisms: (domain: string) => readonly Mechanism[];
  allowPlaintext: boolean;
  /** The current TLS context (reloadable), or undefined when the balancer has no certificate. */
  secureContext: () => tls.SecureContext | undefined;
  loginTimeoutMs: number;
  /** A TLS handshake (STARTTLS or direct) that takes longer is cut off: a stalled one must not hold its slot for the whole login timeout. */
  tlsHandshakeTimeoutMs: number;
  maxPreauthBytes: number;
  maxHeaderBytes: number;
  /** SASL attempts the balancer answers itself (malformed, unknown mechanism, no node) before it gives up. */
  maxSaslFailures: number;
  /** Failed logins per client address and JID: past the limits, a login is refused before any node sees it. */
  authFailures: AuthFailures;
}

type State = "header" | "features" | "sasl-response" | "deciding" | "exchange" | "done";
/** What the dialogue does after one event: read on, upgrade to TLS, or decide. */
type Step = { kind: "read" } | { kind: "starttls" } | { kind: "decide"; login: Login };

const READ_ON: Step = { kind: "read" };
/** The longest tag (or text and tag) a client may send before login: a SASL initial response fits many times over. */
const MAX_TAG_BYTES = 16 * 1024;

/**
 * The pre-auth dialogue of one client connection: the balancer speaks XMPP
 * itself (stream header, STARTTLS, SASL mechanisms) until it knows who logs in,
 * then hands the connection to Handoff (redirect or forward). Bad input ends
 * with the RFC 6120 stream error that fits; nothing a client sends can throw
 * out of here.
 */
export class PreAuthDialogue {
  private readonly reader: StreamReader;
  private state: State = "header";
  private secure = false;
  private header: StreamHeader | undefined;
  private headerSent = false;
  private bytesSeen = 0;
  private saslFailures = 0;
  private mechanism: Mechanism | undefined;
  /** The JID the attempt with a node named (each attempt is charged to its own). */
  private jid: string | null = null;
  /** The attempt a node is running now (state exchange). */
  private attempt: ForwardedLogin | undefined;
  /** What this connection's features offered (the nodes' support may change meanwhile). */
  private offered: readonly Mechanism[] = [];
  private streamId = newStreamId();
  /** The socket whose close ends the dialogue (the first one: a TLS socket closes with it). */
  private readonly closedSocket: Socket;
  private readonly onClosed = (): void => {
    clearTimeout(this.timer);
    this.state = "done";
    this.dropAttempt();
  };
  /** Between STARTTLS (or a direct-TLS accept) and the end of the handshake. */
  private handshaking = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly conn: ClientConnection,
    private readonly settings: DialogueSettings,
    private readonly handoff: Handoff,
  ) {
    this.reader = new StreamReader({ maxHeaderBytes: settings.maxHeaderBytes, maxTagBytes: Math.min(MAX_TAG_BYTES, settings.maxPreauthBytes), childElements: false });
    this.timer = setTimeout(() => this.fail(new StreamError("connection-timeout", "the login took too long")), settings.loginTimeoutMs).unref();
    this.closedSocket = conn.socket;
    this.closedSocket.once("close", this.onClosed);
    conn.onShutdown(() => this.fail(new StreamError("system-shutdown", "the service is shutting down")));
    if (settings.listener.kind === "direct-tls") this.upgradeToTls();
    else conn.readWith(this.input);
  }

  private readonly input = {
    data: (chunk: Buffer): void => this.onData(chunk),
    end: (): void => this.onClientEnd(),
  };

  private onData(chunk: Buffer): void {
    if (this.state === "done") return;
    this.bytesSeen += chunk.length;
    try {
      if (this.bytesSeen > this.settings.maxPreauthBytes) throw new StreamError("policy-violation", "too much data before login");
      this.reader.push(chunk);
      this.readEvents();
    } catch (err) {
      this.fail(err);
    }
  }

  /** Takes events until the reader needs more bytes or a step leaves the dialogue. */
  private readEvents(): void {
    for (let event = this.reader.next(); event !== null; event = this.reader.next()) {
      const step = this.onEvent(event);
      if (step.kind === "starttls") return this.upgradeToTls();
      if (step.kind === "decide") return void this.decide(step.login);
      if (this.state === "done") return;
    }
  }

  /** A client's FIN before the decision: it has left; close at once. */
  private onClientEnd(): void {
    if (this.state === "done") return;
    this.conn.log.info("the client closed its side before login");
    this.conn.finish("abandoned");
    this.closeWith(this.headerSent ? STREAM_CLOSE_XML : "");
  }

  private onEvent(event: StreamEvent): Step {
    switch (event.kind) {
      case "start":
        return this.onStreamStart(event.element, event.raw);
      case "element":
        return this.onElement(event.element);
      case "end":
        this.conn.finish("abandoned");
        this.closeWith(this.headerSent ? STREAM_CLOSE_XML : "");
        return READ_ON;
    }
  }

  private onStreamStart(el: Element, rawHeader: Buffer): Step {
    const header = readStreamHeader(el);
    this.header = header;
    if (!this.settings.domains.has(header.to)) {
      throw new StreamError("host-unknown", `this service does not serve '${header.to}'`);
    }
    const claimed = header.from === undefined ? null : parseBareJid(header.from);
    if (this.secure && this.settings.listener.phase === "open" && claimed !== null && claimed.domain === header.to) {
      // Phase open: decide on the stream header; the node gets the client's own header.
      return { kind: "decide", login: { jid: claimed.bare, domain: header.to, replay: rawHeader, pendingHeader: this.streamOpen() } };
    }
    this.send(this.streamOpen() + this.features());
    this.headerSent = true;
    this.state = "features";
    return READ_ON;
  }

  private onElement(el: Element): Step {
    const ns = el.getNS();
    const prefix = el.name.includes(":") ? el.name.slice(0, el.name.indexOf(":")) : undefined;
    if (prefix !== undefined && ns === undefined) throw new StreamError("bad-namespace-prefix", `prefix '${prefix}' is not bound`);
    if (ns === NS_TLS && el.getName() === "starttls" && this.state === "features") return this.onStartTls();
    if (ns === NS_SASL) {
      const name = el.getName();
      if (this.state === "exchange" && this.attempt !== undefined) {
        // The node runs this exchange: the client's steps go to it, nothing else may come before its verdict.
        if (name === "response" || name === "abort") {
          this.attempt.send(name === "response" ? responseXml(el.getText()) : ABORT_XML);
          return READ_ON;
        }
      }
      if (name === "auth" && this.state === "features") return this.onAuth(el);
      if (name === "response" && this.state === "sasl-response" && this.mechanism !== undefined) return this.onInitialResponse(this.mechanism, el.getText());
      if (name === "abort") {
        this.saslFailed(new SaslError("aborted", "the client aborted the login"));
        return READ_ON;
      }
    }
    if (ns === NS_CLIENT && STANZA_NAMES.has(el.getName())) throw new StreamError("not-authorized", "stanzas are not allowed before login");
    throw new StreamError("unsupported-stanza-type", `<${el.getName()}/> is not expected here`);
  }

  // --- steps -----------------------------------------------------------------

  private features(): string {
    const tlsAvailable = this.settings.secureContext() !== undefined;
    this.offered = this.mayAuthenticate() && this.header !== undefined ? this.settings.mechanisms(this.header.to) : [];
    const starttls = this.secure || !tlsAvailable ? "none" : this.settings.allowPlaintext ? "optional" : "required";
    return featuresXml({ starttls, mechanisms: this.offered });
  }

  private mayAuthenticate(): boolean {
    return this.secure || this.settings.allowPlaintext;
  }

  private onStartTls(): Step {
    if (this.secure || this.settings.secureContext() === undefined) {
      this.conn.finish("rejected");
      this.closeWith(TLS_FAILURE_XML + STREAM_CLOSE_XML);
      return READ_ON;
    }
    this.send(PROCEED_XML);
    return { kind: "starttls" };
  }

  private onAuth(el: Element): Step {
    if (!this.mayAuthenticate()) throw new StreamError("policy-violation", "STARTTLS is required before login");
    const mechanism = el.attrs.mechanism ?? "";
    const offered = this.offered.find((m) => m === mechanism);
    if (offered === undefined) {
      this.saslFailed(new SaslError("invalid-mechanism", `mechanism '${mechanism}' is not offered`));
      return READ_ON;
    }
    const text = el.getText();
    if (text.trim() === "") {
      // No initial response (RFC 6120 6.4.2): ask for it with an empty challenge.
      this.mechanism = offered;
      this.state = "sasl-response";
      this.send(EMPTY_CHALLENGE_XML);
      return READ_ON;
    }
    return this.onInitialResponse(offered, text);
  }

  private onInitialResponse(mechanism: Mechanism, text: string): Step {
    const domain = this.header!.to;
    let jid: string | null;
    try {
      jid = saslIdentity(mechanism, decodeSaslPayload(text), domain);
    } catch (err) {
      if (!(err instanceof SaslError)) throw err;
      this.saslFailed(err);
      return READ_ON;
    }
    return { kind: "decide", login: { jid, domain, mechanism, replay: Buffer.from(authXml(mechanism, text.trim())) } };
  }

  private saslFailed(err: SaslError): void {
    this.mechanism = undefined;
    this.state = "features";
    this.conn.log.info({ condition: err.condition, reason: err.message }, "SASL attempt refused");
    this.send(saslFailureXml(err.condition, err.message));
    this.countSaslFailure();
  }

  /** Refusals by the balancer and by nodes alike: past the limit the stream is closed. */
  private countSaslFailure(): void {
    this.saslFailures += 1;
    if (this.saslFailures >= this.settings.maxSaslFailures) throw new StreamError("policy-violation", "too many failed login attempts");
  }

  private upgradeToTls(): void {
    const context = this.settings.secureContext();
    this.conn.readWith(null);
    if (context === undefined) {
      this.fail(new StreamError("internal-server-error", "no TLS certificate"));
      return;
    }
    // XEP-0368: direct TLS speaks ALPN xmpp-client; after STARTTLS no ALPN is expected.
    const alpn = this.settings.listener.kind === "direct-tls" ? ["xmpp-client"] : undefined;
    const secure = serverTls(this.conn, context, alpn, this.settings.tlsHandshakeTimeoutMs);
    this.handshaking = true;
    secure.once("secure", () => {
      this.handshaking = false;
      this.secure = true;
      this.reader.restart();
      this.header = undefined;
      this.headerSent = false;
      // RFC 6120 4.7.3: every stream the balancer opens has a new id.
      this.streamId = newStreamId();
      this.state = "header";
      this.conn.readWith(this.input);
    });
  }

  private async decide(login: Login): Promise<void> {
    const throttled = this.settings.authFailures.blocked(this.conn.client.address, login.jid);
    if (throttled !== null) {
      this.conn.countRefusal(throttled);
      return this.fail(new StreamError("policy-violation", "too many failed logins; try again later"));
    }
    this.state = "deciding";
    this.jid = login.jid;
    // Bytes already read past the decisive element stay in the reader until the node is known.
    const unread = this.reader.takeRest();
    this.conn.hold(this.settings.maxPreauthBytes - this.bytesSeen);
    // The open phase hands the node everything; in the login phase what follows the <auth/> is the dialogue's to read.
    const replay = login.mechanism === undefined && unread.length > 0 ? Buffer.concat([login.replay, unread]) : login.replay;
    const { mode } = this.settings.listener;
    try {
      const result = mode === "redirect" ? await this.handoff.redirect(this.conn, { ...login, replay }) : await this.handoff.forward(this.conn, { ...login, replay });
      if (this.settled) {
        // Timed out or closed meanwhile: an attempt already with its node goes.
        if (result.outcome === "authenticating") {
          this.attempt = result.attempt;
          this.dropAttempt();
        }
        return;
      }
      if (result.outcome === "no-node") return this.noNode(login, unread);
      if (result.outcome === "authenticating") return this.authenticate(result.attempt, result.held, login.mechanism === undefined ? Buffer.alloc(0) : unread);
      this.conn.finish(result.outcome);
      if (result.outcome === "abandoned") {
        this.conn.log.info("the client left before its node answered");
        return this.closeWith("");
      }
      this.handedOff();
    } catch (err) {
      this.conn.log.error({ err }, "handoff failed");
      this.conn.finish("failed");
      this.closeWith(this.pendingHeader() + streamErrorXml("internal-server-error"));
    }
  }

  /** The connection is the relay's (or closing after a redirect): nothing may keep this dialogue, its reader and parser alive. */
  private handedOff(): void {
    this.state = "done";
    clearTimeout(this.timer);
    this.closedSocket.off("close", this.onClosed);
  }

  /**
   * The node has the client's `<auth/>`: the client's SASL elements go to it
   * one by one until its verdict; the login timeout still runs.
   */
  private authenticate(attempt: ForwardedLogin, held: HeldInput, unread: Buffer): void {
    this.attempt = attempt;
    this.state = "exchange";
    attempt.start(this.onVerdict);
    this.conn.readWith(this.input);
    this.readAgain(unread, held.bytes);
  }

  private readonly onVerdict = (end: AttemptEnd): void => {
    const attempt = this.attempt;
    this.attempt = undefined;
    if (attempt === undefined || this.state !== "exchange") return;
    if (end === "success") {
      this.conn.finish("forwarded");
      this.handedOff();
      this.handoff.relayAfterLogin(this.conn, attempt, this.reader.takeRest());
      return;
    }
    if (end === "node-closed") {
      this.conn.log.info("the node closed the connection during the login");
      this.conn.finish("failed");
      return this.closeWith("");
    }
    // Refused: the client is the dialogue's again; its next <auth/> passes the limits and the routing afresh.
    this.state = "features";
    this.handoff.loginRefused(this.conn, attempt, this.jid);
    this.conn.log.info({ node: attempt.decision.node.id }, "the node refused the login");
    try {
      this.countSaslFailure();
    } catch (err) {
      this.fail(err);
    }
  };

  /** Pushes bytes the dialogue must read (again) through the reader: they count against the pre-auth bytes once, here. */
  private readAgain(...chunks: Buffer[]): void {
    try {
      for (const chunk of chunks) {
        if (chunk.length === 0) continue;
        this.bytesSeen += chunk.length;
        if (this.bytesSeen > this.settings.maxPreauthBytes) throw new StreamError("policy-violation", "too much data before login");
        this.reader.push(chunk);
      }
      this.readEvents();
    } catch (err) {
      this.fail(err);
    }
  }

  /** No node could take the login: a SASL failure the client may retry, or (open phase) a stream error. */
  private noNode(login: Login, unread: Buffer): void {
    const held = this.conn.release();
    this.conn.log.warn({ jid: login.jid, domain: login.domain }, "no cluster node available for this login");
    if (held.ended) return this.onClientEnd();
    if (login.pendingHeader !== undefined || login.mechanism === undefined) {
      this.conn.finish("failed");
      this.closeWith(this.pendingHeader() + streamErrorXml("remote-connection-failed", "no cluster node is available"));
      return;
    }
    this.state = "features";
    this.conn.readWith(this.input);
    try {
      this.saslFailed(new SaslError("temporary-auth-failure", "no cluster node is available; try again later"));
    } catch (err) {
      this.conn.finish("failed");
      return this.fail(err);
    }
    // What followed the <auth/> is read as the next steps of the dialogue (unread was counted when it came).
    this.reader.push(unread);
    this.readAgain(held.bytes);
  }

  /** Read through a getter: the state changes while a decision is awaited. */
  private get settled(): boolean {
    return this.state === "done";
  }

  // --- output ----------------------------------------------------------------

  private streamOpen(): string {
    const domain = this.header?.to ?? [...this.settings.domains][0] ?? "localhost";
    return streamOpenXml({ from: domain, id: this.streamId, lang: this.header?.lang });
  }

  private pendingHeader(): string {
    return this.headerSent ? "" : this.streamOpen();
  }

  private send(xml: string): void {
    if (!this.conn.socket.destroyed) this.conn.socket.write(xml);
  }

  /** An attempt still with its node when the dialogue ends: the node stream goes, and so does the claim it made. */
  private dropAttempt(): void {
    const attempt = this.attempt;
    this.attempt = undefined;
    if (attempt === undefined) return;
    attempt.abort();
    attempt.decision.lease.refused();
  }

  private closeWith(xml: string): void {
    this.state = "done";
    clearTimeout(this.timer);
    this.dropAttempt();
    // Mid-handshake nothing can be said, and no FIN goes out: close at once rather than linger.
    if (this.handshaking) this.conn.destroy();
    else this.conn.close(LINGER_MS.rejected, xml);
  }

  /** Ends the connection with the stream error that fits `err` (client mistakes are not logged as errors). */
  private fail(err: unknown): void {
    if (this.state === "done") return;
    const streamError = err instanceof StreamError ? err : new StreamError("internal-server-error", "internal error", { cause: err });
    if (err instanceof StreamError) this.conn.log.info({ condition: err.condition, reason: err.message }, "client rejected");
    else this.conn.log.error({ err }, "unexpected error in the pre-auth dialogue");
    this.conn.rejected(streamError.condition);
    this.closeWith(this.pendingHeader() + streamErrorXml(streamError.condition, streamError.message));
  }
}

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

/** Unpredictable (RFC 6120 4.7.3); randomUUID() draws from a cached pool, randomBytes() asks the system each time. */
function newStreamId(): string {
  return randomUUID();
}
