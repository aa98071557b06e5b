import { randomUUID } from "node:crypto";
import type { Element } from "@xmpp/xml";
import { SaslError, StreamError } from "../errors.js";
import type { ListenerConfig } from "../listener/listener.js";
import { LINGER_MS } from "../net/linger.js";
import { parseBareJid } from "../xmpp/jid.js";
import type { ClientTls } from "../control/offered-logins.js";
import { NO_LOGIN, type LoginOffer } from "../xmpp/login-offer.js";
import { NS_CLIENT, NS_FAST, NS_SASL, NS_SASL2, NS_TLS, STANZA_NAMES } from "../xmpp/namespaces.js";
import { PROCEED_XML, TLS_FAILURE_XML, abortXml, authXml, authenticateXml, emptyChallengeXml, responseXml } from "../xmpp/nonzas.js";
import { decodeSaslPayload, saslIdentity, tokenBinding } from "../xmpp/sasl-identity.js";
import { saslFailureXml } from "../xmpp/stream-error.js";
import type { StreamHeader } from "../xmpp/stream-header.js";
import type { AuthFailureGate } from "./auth-failures.js";
import type { ClientEvent, ClientLink, HeldInput } from "./client-link.js";
import type { AttemptEnd, ForwardedLogin } from "./forwarded-login.js";
import type { Handoff, Login } from "./handoff.js";

export interface DialogueSettings {
  listener: ListenerConfig;
  domains: ReadonlySet<string>;
  /** What a client on `tls` may log in to `domain` with now (the configured mechanisms its nodes support, SASL2, -PLUS where binding holds). */
  loginOffer: (domain: string, tls: ClientTls | undefined) => LoginOffer;
  allowPlaintext: boolean;
  loginTimeoutMs: number;
  maxPreauthBytes: number;
  /** Failed logins per client address and JID: past the limits, a login is refused before any node sees it. */
  authFailures: AuthFailureGate;
}

type State = "header" | "features" | "sasl-response" | "deciding" | "exchange" | "done";
/** What the dialogue does after one event: read on, upgrade to TLS, or decide. */
type Step = { kind: "read" } | { kind: "starttls" } | { kind: "decide"; login: Login };

const READ_ON: Step = { kind: "read" };
/** SASL attempts refused on one stream (by the balancer or a node) before it is closed. */
const MAX_SASL_FAILURES = 3;

/**
 * The pre-auth dialogue of one client, the same for every transport: the
 * balancer speaks XMPP itself (stream opening, STARTTLS where the transport
 * has it, SASL mechanisms) until it knows who logs in, then hands the client
 * to Handoff (redirect or forward). A forwarded login stays in the dialogue
 * until the node's verdict: a refusal gives the client back, so its next
 * `<auth/>` is decided afresh. Bad input ends with the RFC 6120 stream error
 * that fits; nothing a client sends can throw out of here.
 */
export class LoginDialogue {
  private state: State = "header";
  private header: StreamHeader | undefined;
  private headerSent = false;
  private bytesSeen = 0;
  private saslFailures = 0;
  private mechanism: string | undefined;
  /** Whether the attempt under way is SASL2 (XEP-0388): its elements, failures and challenges are in that namespace. */
  private sasl2 = false;
  /** SASL2: the client's `<authenticate/>`, kept while its initial response is asked for. */
  private pendingAuthenticate: Element | undefined;
  /** What this stream's features offered (the nodes' support may change meanwhile). */
  private offered: LoginOffer = NO_LOGIN;
  private streamId = randomUUID();
  /** The JID the attempt with a node named (each attempt is charged to its own). */
  private jid: string | null = null;
  /** The attempt a node is running now (state exchange). */
  private attempt: ForwardedLogin | undefined;
  private readonly timer: NodeJS.Timeout;
  private readonly onClosed = (): void => {
    clearTimeout(this.timer);
    this.state = "done";
    this.dropAttempt();
  };

  constructor(
    private readonly link: ClientLink,
    private readonly settings: DialogueSettings,
    private readonly handoff: Handoff,
  ) {
    this.timer = setTimeout(() => this.fail(new StreamError("connection-timeout", "the login took too long")), settings.loginTimeoutMs).unref();
    link.onClosed(this.onClosed);
    link.onShutdown(() => this.fail(new StreamError("system-shutdown", "the service is shutting down")));
    if (settings.listener.kind === "direct-tls") this.upgradeToTls();
    else link.readWith(this.input);
  }

  private readonly input = {
    data: (chunk: Buffer): void => this.onData(chunk),
    end: (): void => this.onClientEnd(),
  };

  private onData(chunk: Buffer): void {
    if (this.state === "done") return;
    try {
      this.take(chunk);
      this.readEvents();
    } catch (err) {
      this.fail(err);
    }
  }

  /** Counts bytes against the pre-auth limit and hands them to the framing. */
  private take(chunk: Buffer): void {
    this.bytesSeen += chunk.length;
    if (this.bytesSeen > this.settings.maxPreauthBytes) throw new StreamError("policy-violation", "too much data before login");
    this.link.frames.push(chunk);
  }

  /** Takes events until the framing needs more input or a step leaves the dialogue. */
  private readEvents(): void {
    for (let event = this.link.frames.next(); event !== null; event = this.link.frames.next()) {
      const step = this.onEvent(event);
      if (step.kind === "starttls") return this.upgradeToTls();
      if (step.kind === "decide") return void this.decide(step.login);
      if (this.state === "done") return;
    }
  }

  /** A client's FIN before the decision: it has left; close at once. */
  private onClientEnd(): void {
    if (this.state === "done") return;
    this.link.log.info("the client closed its side before login");
    this.link.finish("abandoned");
    this.closeWith(this.headerSent ? [this.link.closeXml] : []);
  }

  private onEvent(event: ClientEvent): Step {
    switch (event.kind) {
      case "open":
        return this.onStreamOpen(event.header, event.raw);
      case "element":
        return this.onElement(event.element);
      case "close":
        this.link.finish("abandoned");
        this.closeWith(this.headerSent ? [this.link.closeXml] : []);
        return READ_ON;
    }
  }

  private onStreamOpen(header: StreamHeader, raw: Buffer): Step {
    // A WebSocket client may send <open/> again before it logs in, never while a node runs its login.
    if (this.state !== "header" && this.state !== "features") throw new StreamError("unsupported-stanza-type", "a new stream cannot start during the login");
    this.header = header;
    if (!this.settings.domains.has(header.to)) {
      throw new StreamError("host-unknown", `this service does not serve '${header.to}'`);
    }
    // Phase open: browsers' clients send no `from`; a WebSocket page may name the account in the URL instead.
    const from = header.from ?? this.link.fromHint;
    const claimed = from === undefined ? null : parseBareJid(from);
    if (this.link.secure && this.settings.listener.phase === "open" && claimed !== null && claimed.domain === header.to) {
      // Phase open: decide on the opening; the node gets the client's own.
      return { kind: "decide", login: { jid: claimed.bare, domain: header.to, replay: raw, pendingOpen: this.openXml() } };
    }
    this.send(this.openXml());
    this.send(this.features());
    this.headerSent = true;
    this.state = "features";
    return READ_ON;
  }

  private onElement(el: Element): Step {
    const ns = el.getNS();
    const name = el.getName();
    const prefix = el.name.includes(":") ? el.name.slice(0, el.name.indexOf(":")) : undefined;
    if (prefix !== undefined && ns === undefined) throw new StreamError("bad-namespace-prefix", `prefix '${prefix}' is not bound`);
    if (ns === NS_TLS && name === "starttls" && this.state === "features") return this.onStartTls();
    if (ns === NS_SASL || ns === NS_SASL2) {
      const sasl2 = ns === NS_SASL2;
      if (this.state === "exchange" && this.attempt !== undefined && (name === "response" || name === "abort")) {
        // The node runs this exchange: the client's steps go to it; nothing else may come before its verdict.
        this.attempt.send(name === "response" ? responseXml(el.getText(), sasl2) : abortXml(sasl2));
        return READ_ON;
      }
      if (name === (sasl2 ? "authenticate" : "auth") && this.state === "features") return this.onAuth(el, sasl2);
      if (name === "response" && this.state === "sasl-response" && this.mechanism !== undefined && sasl2 === this.sasl2) return this.onInitialResponse(this.mechanism, el.getText());
      if (name === "abort") {
        this.sasl2 = sasl2;
        this.saslFailed(new SaslError("aborted", "the client aborted the login"));
        return READ_ON;
      }
    }
    // A WebSocket message has no stream around it: an unqualified stanza is the client namespace's.
    if ((ns === NS_CLIENT || ns === undefined || ns === "") && STANZA_NAMES.has(name)) throw new StreamError("not-authorized", "stanzas are not allowed before login");
    throw new StreamError("unsupported-stanza-type", `<${name}/> is not expected here`);
  }

  // --- steps -----------------------------------------------------------------

  private features(): string {
    this.offered = this.mayAuthenticate() && this.header !== undefined ? this.settings.loginOffer(this.header.to, this.link.clientTls()) : NO_LOGIN;
    const starttls = !this.link.canStartTls() ? "none" : this.settings.allowPlaintext ? "optional" : "required";
    return this.link.featuresXml(starttls, this.offered);
  }

  private mayAuthenticate(): boolean {
    return this.link.secure || this.settings.allowPlaintext;
  }

  private onStartTls(): Step {
    if (!this.link.canStartTls()) {
      this.link.finish("rejected");
      this.closeWith([TLS_FAILURE_XML + this.link.closeXml]);
      return READ_ON;
    }
    this.send(PROCEED_XML);
    return { kind: "starttls" };
  }

  /** `<auth/>` (RFC 6120) or SASL2's `<authenticate/>` (XEP-0388), whose initial response is a child. */
  private onAuth(el: Element, sasl2: boolean): Step {
    if (!this.mayAuthenticate()) throw new StreamError("policy-violation", "STARTTLS is required before login");
    this.sasl2 = sasl2;
    this.pendingAuthenticate = sasl2 ? el : undefined;
    const mechanism = el.attrs.mechanism ?? "";
    if (!this.isOffered(mechanism, sasl2)) {
      this.saslFailed(new SaslError("invalid-mechanism", `mechanism '${mechanism}' is not offered`));
      return READ_ON;
    }
    const text = (sasl2 ? el.getChild("initial-response") : el)?.getText() ?? "";
    if (text.trim() === "") {
      // No initial response (RFC 6120 6.4.2): ask for it with an empty challenge.
      this.mechanism = mechanism;
      this.state = "sasl-response";
      this.send(emptyChallengeXml(sasl2));
      return READ_ON;
    }
    return this.onInitialResponse(mechanism, text);
  }

  /** SASL2 offers FAST token mechanisms inside its inline features, not in its mechanism list. */
  private isOffered(mechanism: string, sasl2: boolean): boolean {
    if (!sasl2) return this.offered.mechanisms.includes(mechanism);
    const offer = this.offered.sasl2;
    if (offer === null) return false;
    if (offer.mechanisms.includes(mechanism)) return true;
    return tokenBinding(mechanism) !== undefined && (offer.inline?.getChild("fast", NS_FAST)?.getChildren("mechanism").some((m) => m.getText().trim() === mechanism) ?? false);
  }

  private onInitialResponse(mechanism: string, text: string): Step {
    const domain = this.header!.to;
    let jid: string | null;
    try {
      jid = saslIdentity(mechanism, decodeSaslPayload(text), domain);
    } catch (err) {
      if (!(err instanceof SaslError)) throw err;
      this.saslFailed(err);
      return READ_ON;
    }
    // The node gets the client's own <authenticate/> (its user agent and inline requests with it), with the initial response in it.
    const replay = this.pendingAuthenticate !== undefined ? authenticateXml(this.pendingAuthenticate, text.trim()) : authXml(mechanism, text.trim());
    const token = tokenBinding(mechanism) !== undefined;
    return { kind: "decide", login: { jid, domain, mechanism, sasl2: this.sasl2, token, replay: Buffer.from(replay) } };
  }

  private saslFailed(err: SaslError): void {
    this.mechanism = undefined;
    this.pendingAuthenticate = undefined;
    this.state = "features";
    this.link.log.info({ condition: err.condition, reason: err.message }, "SASL attempt refused");
    this.send(saslFailureXml(err.condition, err.message, this.sasl2));
    this.countSaslFailure();
  }

  /** Refusals by the balancer and by nodes alike: past the limit the stream is closed. */
  private countSaslFailure(): void {
    this.saslFailures += 1;
    if (this.saslFailures >= MAX_SASL_FAILURES) throw new StreamError("policy-violation", "too many failed login attempts");
  }

  private upgradeToTls(): void {
    this.link.readWith(null);
    const started = this.link.startTls(() => {
      this.link.frames.restart();
      this.header = undefined;
      this.headerSent = false;
      // RFC 6120 4.7.3: every stream the balancer opens has a new id.
      this.streamId = randomUUID();
      this.state = "header";
      this.link.readWith(this.input);
    });
    if (!started) this.fail(new StreamError("internal-server-error", "no TLS certificate"));
  }

  // --- the decision ----------------------------------------------------------

  private async decide(login: Login): Promise<void> {
    this.state = "deciding";
    this.jid = login.jid;
    // Bytes already read past the decisive element stay with the framing until the node is known.
    const unread = this.link.frames.takeRest();
    this.link.hold(this.settings.maxPreauthBytes - this.bytesSeen);
    // Asked once the client is held: with --workers the answer comes from the primary.
    const throttled = await this.settings.authFailures.blocked(this.link.client.address, login.jid);
    if (this.settled) return; // timed out or closed meanwhile
    if (throttled !== null) {
      this.link.countRefusal(throttled);
      return this.fail(new StreamError("policy-violation", "too many failed logins; try again later"));
    }
    // The open phase hands the node everything; in the login phase what follows the <auth/> is the dialogue's to read.
    const forNode = login.mechanism === undefined && unread.length > 0 ? { ...login, replay: Buffer.concat([login.replay, unread]) } : login;
    try {
      const result = this.settings.listener.mode === "redirect" ? await this.handoff.redirect(this.link, forNode) : await this.handoff.forward(this.link, forNode);
      if (this.settled) {
        // Timed out or closed meanwhile: an attempt already with its node goes.
        if (result.outcome === "authenticating") {
          this.attempt = result.attempt;
          this.dropAttempt();
        }
        return;
      }
      if (result.outcome === "no-node") return this.noNode(login, login.mechanism === undefined ? Buffer.alloc(0) : unread);
      if (result.outcome === "authenticating") return this.authenticate(result.attempt, result.held, login.mechanism === undefined ? Buffer.alloc(0) : unread);
      this.link.finish(result.outcome);
      if (result.outcome === "abandoned") {
        this.link.log.info("the client left before its node answered");
        return this.closeWith([]);
      }
      this.handedOff();
    } catch (err) {
      this.link.log.error({ err }, "handoff failed");
      this.link.finish("failed");
      this.closeWith([this.pendingOpen(), ...this.link.errorParts("internal-server-error")]);
    }
  }

  /** The client is the relay's (or closing after a redirect): nothing may keep this dialogue, its framing and parser alive. */
  private handedOff(): void {
    this.state = "done";
    clearTimeout(this.timer);
    this.link.offClosed(this.onClosed);
  }

  /** The node has the client's `<auth/>`: the client's SASL elements go to it one by one until its verdict; the login timeout still runs. */
  private authenticate(attempt: ForwardedLogin, held: HeldInput, unread: Buffer): void {
    this.attempt = attempt;
    this.state = "exchange";
    attempt.start((data) => this.link.send(data), this.onVerdict);
    this.link.readWith(this.input);
    this.readAgain(unread, held.chunks);
  }

  private readonly onVerdict = (end: AttemptEnd): void => {
    const attempt = this.attempt;
    this.attempt = undefined;
    if (attempt === undefined || this.state !== "exchange") return;
    if (end === "success") {
      this.link.finish("forwarded");
      this.handedOff();
      this.handoff.relayAfterLogin(this.link, attempt, this.link.frames.takeRest());
      return;
    }
    if (end === "node-closed") {
      this.link.log.info("the node closed the connection during the login");
      this.link.finish("failed");
      return this.closeWith([]);
    }
    // Refused: the client is the dialogue's again; its next <auth/> passes the limits and the routing afresh.
    this.state = "features";
    this.handoff.loginRefused(this.link, attempt, this.jid);
    this.link.log.info({ node: attempt.decision.node.id }, "the node refused the login");
    try {
      this.countSaslFailure();
    } catch (err) {
      this.fail(err);
    }
  };

  /** Input the dialogue must read (again) after a decision: it counts against the pre-auth limit once, here. */
  private readAgain(unread: Buffer, held: readonly Buffer[]): void {
    try {
      // Unread bytes were counted when they came.
      if (unread.length > 0) this.link.frames.push(unread);
      for (const chunk of held) this.take(chunk);
      this.readEvents();
    } catch (err) {
      this.fail(err);
    }
  }

  /** No node could take the login: a SASL failure the client may retry, or (open phase) a stream error. */
  private noNode(login: Login, unread: Buffer): void {
    const held = this.link.release();
    this.link.log.warn({ jid: login.jid, domain: login.domain }, "no cluster node available for this login");
    if (held.ended) return this.onClientEnd();
    if (login.pendingOpen !== undefined || login.mechanism === undefined) {
      this.link.finish("failed");
      this.closeWith([this.pendingOpen(), ...this.link.errorParts("remote-connection-failed", "no cluster node is available")]);
      return;
    }
    this.state = "features";
    this.link.readWith(this.input);
    try {
      this.saslFailed(new SaslError("temporary-auth-failure", "no cluster node is available; try again later"));
    } catch (err) {
      this.link.finish("failed");
      return this.fail(err);
    }
    // What followed the <auth/> is read as the next steps of the dialogue.
    this.readAgain(unread, held.chunks);
  }

  /** Read through a getter: the state changes while a decision is awaited. */
  private get settled(): boolean {
    return this.state === "done";
  }

  // --- output ----------------------------------------------------------------

  private openXml(): string {
    const domain = this.header?.to ?? [...this.settings.domains][0] ?? "localhost";
    return this.link.openXml(domain, this.streamId, this.header?.lang);
  }

  /** The balancer's own opening, when a last word must come before any was sent. */
  private pendingOpen(): string {
    return this.headerSent ? "" : this.openXml();
  }

  private send(xml: string): void {
    this.link.send(xml);
  }

  /** An attempt still with its node when the dialogue ends: the node stream goes, and so does the claim it made. */
  private dropAttempt(): void {
    const attempt = this.attempt;
    this.attempt = undefined;
    attempt?.abort();
  }

  private closeWith(parts: string[]): void {
    this.state = "done";
    clearTimeout(this.timer);
    this.dropAttempt();
    // Mid-handshake nothing can be said: close at once rather than linger.
    if (this.link.handshaking) this.link.destroy();
    else this.link.close(parts.filter((p) => p !== ""), LINGER_MS.rejected);
  }

  /** Ends the connection with the stream error that fits `err` (client mistakes are not logged as errors). */
  private fail(err: unknown): void {
    if (this.state === "done") return;
    const streamError = err instanceof StreamError ? err : new StreamError("internal-server-error", "internal error", { cause: err });
    if (err instanceof StreamError) this.link.log.info({ condition: err.condition, reason: err.message }, "client rejected");
    else this.link.log.error({ err }, "unexpected error in the pre-auth dialogue");
    this.link.rejected(streamError.condition);
    this.closeWith([this.pendingOpen(), ...this.link.errorParts(streamError.condition, streamError.message)]);
  }
}
