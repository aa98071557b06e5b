import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import tls from "node:tls";
import type { Element } from "@xmpp/xml";
import type { ListenerConfig } from "../config.js";
import { SaslError, StreamError } from "../errors.js";
import type { Logger } from "../log.js";
import type { ConnectionOutcome, Metrics } from "../metrics.js";
import { EMPTY_CHALLENGE_XML, PROCEED_XML, STREAM_CLOSE_XML, featuresXml } from "../xmpp/features.js";
import { parseBareJid } from "../xmpp/jid.js";
import { NS_CLIENT, NS_SASL, NS_TLS } from "../xmpp/namespaces.js";
import { decodeSaslPayload, saslIdentity, type Mechanism } from "../xmpp/sasl-identity.js";
import { saslFailureXml, streamErrorXml } from "../xmpp/stream-error.js";
import { readStreamHeader, streamOpenXml, type StreamHeader } from "../xmpp/stream-header.js";
import { StreamReader, type StreamHandler } from "../xmpp/stream-reader.js";
import type { Handoff, Login } from "./handoff.js";

export interface DialogueSettings {
  listener: ListenerConfig;
  domains: ReadonlySet<string>;
  /** SASL mechanisms to offer now (the configured ones that the nodes support). */
  mechanisms: () => readonly Mechanism[];
  allowPlaintext: boolean;
  /** The current TLS context (reloadable), or undefined when the balancer has no certificate. */
  secureContext: () => tls.SecureContext | undefined;
  loginTimeoutMs: number;
  maxPreAuthBytes: number;
  maxHeaderBytes: number;
  /** SASL attempts the balancer answers itself (malformed, unknown mechanism, no node) before it gives up. */
  maxSaslFailures: number;
}

type State = "header" | "features" | "sasl-response" | "deciding" | "done";
type Next = { kind: "starttls" } | { kind: "decide"; login: Login } | null;

const STANZAS = new Set(["message", "presence", "iq"]);
/** How long a rejected client may take to read its stream error before the socket is destroyed. */
const CLOSE_GRACE_MS = 2000;

/**
 * The pre-auth dialogue of one client connection: the balancer speaks XMPP
 * itself (stream header, STARTTLS, SASL mechanisms) until it knows who logs in,
 * then hands the connection to Handoff (redirect or forward). Bad input ends
 * with the RFC 6120 stream error that fits; nothing a client sends can throw
 * out of here.
 */
export class PreAuthDialogue implements StreamHandler {
  private socket: Socket;
  /** Dropped once the connection is handed over: a forwarded session keeps no parser. */
  private reader: StreamReader | null;
  private state: State = "header";
  private secure: boolean;
  private header: StreamHeader | undefined;
  private headerSent = false;
  private bytesSeen = 0;
  private saslFailures = 0;
  private mechanism: Mechanism | undefined;
  /** What this connection's features offered (the nodes' support may change meanwhile). */
  private offered: readonly Mechanism[] = [];
  private next: Next = null;
  private readonly timer: NodeJS.Timeout;
  private outcome: ConnectionOutcome | undefined;
  private readonly streamId = randomBytes(8).toString("hex");

  constructor(
    raw: Socket,
    private readonly settings: DialogueSettings,
    private readonly handoff: Handoff,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    this.socket = raw;
    this.secure = false;
    this.reader = new StreamReader(this, settings.maxHeaderBytes);
    this.timer = setTimeout(() => this.fail(new StreamError("connection-timeout", "the login took too long")), settings.loginTimeoutMs);
    this.timer.unref();
    raw.on("error", this.onSocketError);
    raw.once("close", this.onClose);
    if (settings.listener.kind === "direct-tls") this.upgradeToTls();
    else raw.on("data", this.onData);
  }

  private readonly onSocketError = (err: Error): void => {
    this.log.debug({ err: err.message }, "client socket error");
  };

  private readonly onClose = (): void => {
    clearTimeout(this.timer);
    this.state = "done";
    if (this.outcome === undefined) this.finish("abandoned");
    this.metrics.activeConnections.dec({ listener: this.settings.listener.name });
  };

  /** Records how the connection ended up (the first outcome counts). */
  private finish(outcome: ConnectionOutcome): void {
    if (this.outcome !== undefined) return;
    this.outcome = outcome;
    clearTimeout(this.timer);
    this.metrics.connections.inc({ listener: this.settings.listener.name, outcome });
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.state === "done" || this.state === "deciding") return;
    this.bytesSeen += chunk.length;
    try {
      if (this.bytesSeen > this.settings.maxPreAuthBytes) throw new StreamError("policy-violation", "too much data before login");
      const rest = this.reader?.push(chunk);
      if (rest !== undefined) this.act(rest);
    } catch (err) {
      this.fail(err);
    }
  };

  private act(rest: Buffer): void {
    const next = this.next;
    this.next = null;
    if (next?.kind === "starttls") this.upgradeToTls();
    else if (next?.kind === "decide") void this.decide(next.login, rest);
  }

  /** Whether the dialogue is over (handed over, refused, or the client left). */
  get settled(): boolean {
    return this.state === "done";
  }

  /** Closes the client's connection at once (and, through the relay, its node's). */
  destroy(): void {
    this.socket.destroy();
  }

  /** The balancer is stopping: a client still in the dialogue gets `<system-shutdown/>`. */
  shutdown(): void {
    this.fail(new StreamError("system-shutdown", "the service is shutting down"));
  }

  // --- StreamHandler -------------------------------------------------------

  onStreamStart(el: Element, rawHeader: Buffer): boolean {
    const header = readStreamHeader(el);
    this.header = header;
    if (!this.settings.domains.has(header.to)) {
      throw new StreamError("host-unknown", `this service does not serve '${header.to}'`);
    }
    const claimed = header.from === undefined ? null : parseBareJid(header.from);
    if (this.secure && this.settings.listener.phase === "open" && claimed !== null && claimed.domain === header.to) {
      // Phase open: decide on the stream header; the node gets the client's own header.
      this.next = { kind: "decide", login: { jid: claimed.bare, domain: header.to, replay: rawHeader, pendingHeader: this.streamOpen() } };
      this.state = "deciding";
      return true;
    }
    this.send(this.streamOpen() + this.features());
    this.headerSent = true;
    this.state = "features";
    return false;
  }

  onElement(el: Element): boolean {
    const ns = el.getNS();
    if (ns === NS_TLS && el.getName() === "starttls" && this.state === "features") return this.onStartTls();
    if (ns === NS_SASL) {
      const name = el.getName();
      if (name === "auth" && this.state === "features") return this.onAuth(el);
      if (name === "response" && this.state === "sasl-response" && this.mechanism !== undefined) return this.onInitialResponse(this.mechanism, el.getText());
      if (name === "abort") {
        this.saslFailed(new SaslError("aborted", "the client aborted the login"));
        return false;
      }
    }
    if (ns === NS_CLIENT && STANZAS.has(el.getName())) throw new StreamError("not-authorized", "stanzas are not allowed before login");
    throw new StreamError("unsupported-stanza-type", `<${el.getName()}/> is not expected here`);
  }

  onStreamEnd(): void {
    this.finish("abandoned");
    this.closeWith(this.headerSent ? STREAM_CLOSE_XML : "");
  }

  // --- steps -----------------------------------------------------------------

  private features(): string {
    const tlsAvailable = this.settings.secureContext() !== undefined;
    this.offered = this.mayAuthenticate() ? this.settings.mechanisms() : [];
    const starttls = this.secure || !tlsAvailable ? "none" : this.settings.allowPlaintext ? "optional" : "required";
    return featuresXml({ starttls, mechanisms: this.offered });
  }

  private mayAuthenticate(): boolean {
    return this.secure || this.settings.allowPlaintext;
  }

  private onStartTls(): boolean {
    if (this.secure || this.settings.secureContext() === undefined) {
      // RFC 6120 5.4.2.2: <failure/> in the TLS namespace, then close.
      this.finish("rejected");
      this.closeWith(`<failure xmlns='${NS_TLS}'/>${STREAM_CLOSE_XML}`);
      return true;
    }
    this.send(PROCEED_XML);
    this.next = { kind: "starttls" };
    return true;
  }

  private onAuth(el: Element): boolean {
    if (!this.mayAuthenticate()) throw new StreamError("policy-violation", "STARTTLS is required before login");
    const mechanism = el.attrs.mechanism ?? "";
    const offered = this.offered.find((m) => m === mechanism);
    if (offered === undefined) {
      this.saslFailed(new SaslError("invalid-mechanism", `mechanism '${mechanism}' is not offered`));
      return false;
    }
    const text = el.getText();
    if (text.trim() === "") {
      // No initial response (RFC 6120 6.4.2): ask for it with an empty challenge.
      this.mechanism = offered;
      this.state = "sasl-response";
      this.send(EMPTY_CHALLENGE_XML);
      return false;
    }
    return this.onInitialResponse(offered, text);
  }

  private onInitialResponse(mechanism: Mechanism, text: string): boolean {
    const domain = this.header!.to;
    let jid: string | null;
    try {
      jid = saslIdentity(mechanism, decodeSaslPayload(text), domain);
    } catch (err) {
      if (!(err instanceof SaslError)) throw err;
      this.saslFailed(err);
      return false;
    }
    // The node gets a whole <auth/> with the initial response, even when the client sent it as a <response/>.
    const auth = Buffer.from(`<auth xmlns='${NS_SASL}' mechanism='${mechanism}'>${text.trim()}</auth>`);
    this.next = { kind: "decide", login: { jid, domain, mechanism, replay: auth } };
    this.state = "deciding";
    return true;
  }

  private saslFailed(err: SaslError): void {
    this.saslFailures += 1;
    this.mechanism = undefined;
    this.state = "features";
    this.log.info({ condition: err.condition, reason: err.message }, "SASL attempt refused");
    this.send(saslFailureXml(err.condition, err.message));
    if (this.saslFailures >= this.settings.maxSaslFailures) throw new StreamError("policy-violation", "too many failed login attempts");
  }

  private upgradeToTls(): void {
    const context = this.settings.secureContext();
    const raw = this.socket;
    raw.off("data", this.onData);
    if (context === undefined) {
      this.fail(new StreamError("internal-server-error", "no TLS certificate"));
      return;
    }
    // XEP-0368: direct TLS speaks ALPN xmpp-client; after STARTTLS no ALPN is expected.
    const alpn = this.settings.listener.kind === "direct-tls" ? ["xmpp-client"] : undefined;
    const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: context, ALPNProtocols: alpn });
    this.socket = secure;
    secure.on("error", (err: Error) => {
      this.log.info({ err: err.message }, this.secure ? "TLS error" : "TLS handshake failed");
      this.finish("rejected");
      secure.destroy();
    });
    secure.once("close", () => raw.destroy());
    secure.once("secure", () => {
      this.secure = true;
      this.reader?.restart();
      this.header = undefined;
      this.headerSent = false;
      this.state = "header";
      secure.on("data", this.onData);
    });
  }

  private async decide(login: Login, rest: Buffer): Promise<void> {
    const socket = this.socket;
    socket.off("data", this.onData);
    socket.pause();
    const replay = rest.length > 0 ? Buffer.concat([login.replay, rest]) : login.replay;
    const { mode } = this.settings.listener;
    try {
      const result = mode === "redirect" ? await this.handoff.redirect(socket, { ...login, replay }, this.log) : await this.handoff.forward(socket, { ...login, replay }, this.log);
      if (this.state === "done") return; // timed out meanwhile
      if (result.outcome === "no-node") {
        this.noNode(login, rest);
        return;
      }
      this.state = "done";
      this.reader = null;
      this.finish(result.outcome);
    } catch (err) {
      this.log.error({ err }, "handoff failed");
      this.finish("failed");
      this.closeWith(this.pendingHeader() + streamErrorXml("internal-server-error"));
    }
  }

  /** No node could take the login: a SASL failure the client may retry, or (open phase) a stream error. */
  private noNode(login: Login, unread: Buffer): void {
    this.log.warn({ jid: login.jid, domain: login.domain }, "no cluster node available for this login");
    if (login.pendingHeader !== undefined || login.mechanism === undefined) {
      this.finish("failed");
      this.closeWith(this.pendingHeader() + streamErrorXml("remote-connection-failed", "no cluster node is available"));
      return;
    }
    try {
      this.saslFailed(new SaslError("temporary-auth-failure", "no cluster node is available; try again later"));
    } catch (err) {
      this.finish("failed");
      this.fail(err);
      return;
    }
    // Whatever followed the <auth/> is read as the next steps of the dialogue.
    this.socket.on("data", this.onData);
    this.socket.resume();
    if (unread.length > 0) this.onData(unread);
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
    if (!this.socket.destroyed) this.socket.write(xml);
  }

  private closeWith(xml: string): void {
    this.state = "done";
    this.socket.off("data", this.onData);
    if (!this.socket.destroyed) this.socket.end(xml);
    const socket = this.socket;
    setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
  }

  /** Ends the connection with the stream error that fits `err` (client mistakes are not logged as errors). */
  private fail(err: unknown): void {
    if (this.state === "done") return;
    const streamError = err instanceof StreamError ? err : new StreamError("internal-server-error", "internal error", { cause: err });
    if (err instanceof StreamError) this.log.info({ condition: err.condition, reason: err.message }, "client rejected");
    else this.log.error({ err }, "unexpected error in the pre-auth dialogue");
    this.metrics.streamErrors.inc({ condition: streamError.condition });
    this.finish("rejected");
    this.closeWith(this.pendingHeader() + streamErrorXml(streamError.condition, streamError.message));
  }
}
