import type { NodeView } from "../cluster/node.js";
import type { NodeTableHolder } from "../cluster/node-table-holder.js";
import type { LineLogger } from "../log.js";
import type { Metrics } from "../metrics.js";
import { LINGER_MS } from "../net/linger.js";
import { giveBack, type RouteDecision, type RouteRequest, type Router } from "../router/router.js";
import type { ClientTrafficLimit, TrafficLimit } from "../upstream/traffic-limit.js";
import type { ChannelBindingMode } from "../control/offered-logins.js";
import { SaslOutcomeScanner } from "../xmpp/sasl-outcome.js";
import { Sasl2SuccessReader } from "../xmpp/sasl2-success.js";
import type { ClientLink, HeldInput, NodeLeg } from "./client-link.js";
import { ForwardedLogin } from "./forwarded-login.js";
import { passHoldingFeatures } from "./node-features-filter.js";
import type { LoginVerdicts } from "./login-verdict.js";
import { NodeAdvice } from "./node-advice.js";
import { dialChosenNode } from "./node-dialer.js";
import type { RedirectMemory } from "./redirect-memory.js";

/** What the pre-auth dialogue learnt, handed over for the decision. */
export interface Login {
  /** Bare JID, or null for a login without identity (ANONYMOUS). */
  jid: string | null;
  domain: string;
  /** The SASL mechanism (login phase). */
  mechanism?: string;
  /** SASL2 (XEP-0388): no stream restart follows the node's success, which may carry a FAST token. */
  sasl2?: boolean;
  /** A FAST token login (XEP-0484): it goes to the node that issued the JID's token, while that node is up. */
  token?: boolean;
  /** What the node receives first: the client's `<auth/>` (login phase), or its stream opening and all that followed (open phase). */
  replay: Buffer;
  /** The balancer's own stream opening still owed to the client (open phase): sent before a redirect. */
  pendingOpen?: string;
}

export type HandoffResult =
  | { outcome: "redirected" | "forwarded"; node: NodeView }
  /** Login phase: the node has the client's `<auth/>`; the dialogue carries the exchange until the node's verdict. */
  | { outcome: "authenticating"; node: NodeView; attempt: ForwardedLogin; held: HeldInput }
  | { outcome: "no-node" }
  | { outcome: "abandoned" };

export interface HandoffOptions {
  /** The longest a node may take to answer a dial, retries included. */
  dialTimeoutMs: number;
  redirects: RedirectMemory;
  /** What the node's verdict on a login does to the directory and the failed-login limits. */
  verdicts: LoginVerdicts;
  /** What a forwarded client may send (`--traffic-limit`); none when absent. */
  trafficLimit?: TrafficLimit;
  /** `--channel-binding`: phase open passes on the node's channel binding only where it holds. */
  channelBinding: ChannelBindingMode;
  /** Whether a node showed SASL2 on a domain's stream: a SASL2 login goes only to such a node. */
  speaksSasl2: (nodeId: string, domain: string) => boolean;
}

/** Phase open cannot tell a token login from a password one: the token's node is preferred for both (either logs in there). */
function routeRequest(login: Login): RouteRequest {
  const token = login.token === true || login.pendingOpen !== undefined;
  return { jid: login.jid, domain: login.domain, ...(token ? { token } : {}) };
}

/** What a forwarded client may send, counted in the metrics and logged (a throttle at debug: a flood must not flood the log). */
export function clientTrafficLimit(limit: TrafficLimit | undefined, metrics: Metrics, log: LineLogger): ClientTrafficLimit | undefined {
  if (limit === undefined) return undefined;
  return {
    limit,
    onLimited: (action, pauseMs) => {
      metrics.trafficLimited.inc({ action });
      if (action === "disconnect") log.info({ limit: limit.text }, "client over its traffic limit: disconnected");
      else log.debug({ limit: limit.text, pauseMs }, "client over its traffic limit: reading paused");
    },
  };
}

/**
 * After the dialogue, for every transport: asks the router for a node, then
 * redirects the client there, or dials the node (asking again when a dial
 * fails), carries the login until the node's verdict and relays. What became
 * of the login goes back to the router through the decision's lease, and a
 * failed dial to the node table holder. How a node is dialed and how bytes
 * are relayed is the link's.
 */
export class Handoff {
  private readonly advice = new NodeAdvice();

  constructor(
    private readonly router: Router,
    private readonly nodes: NodeTableHolder,
    private readonly metrics: Metrics,
    private readonly options: HandoffOptions,
  ) {}

  async redirect(link: ClientLink, login: Login): Promise<HandoffResult> {
    const address = link.client.address;
    if (login.jid !== null && this.options.redirects.cameBack(address, login.jid)) {
      this.metrics.redirectLoops.inc();
      link.log.info({ jid: login.jid }, "the client came back right after a redirect: forwarding it instead");
      return this.forward(link, login);
    }
    const decision = await this.router.route(routeRequest(login), link.log);
    if (decision === null) return { outcome: "no-node" };
    const { node } = decision;
    const redirect = link.redirectTo(node, login.pendingOpen ?? "");
    if (redirect === null) {
      // The claim stays: the forward's decision finds it in the directory.
      link.log.warn({ node: node.id, transport: link.transport }, "the node has no address for this transport to redirect to: forwarding instead");
      return this.forward(link, login);
    }
    decision.lease.redirected();
    if (login.jid !== null) this.options.redirects.remember(address, login.jid);
    link.close(redirect.parts, LINGER_MS.redirected);
    link.log.info({ jid: login.jid, node: node.id, via: decision.via, to: redirect.to }, "redirected");
    return { outcome: "redirected", node };
  }

  /** Dials the node the router names (see dialChosenNode for retries), then starts the login there. */
  async forward(link: ClientLink, login: Login): Promise<HandoffResult> {
    const stream = login.pendingOpen === undefined ? { from: login.jid ?? undefined } : null;
    const dial = link.nodeDial(login.domain, stream);
    // SASL2 was offered from what the probed nodes show: one not probed yet (or without SASL2) cannot take this login.
    const speaks = this.options.speaksSasl2;
    const transport = login.sasl2 !== true ? dial : { ...dial, unusable: (node: NodeView) => dial.unusable(node) ?? (speaks(node.id, login.domain) ? null : "the node has not shown SASL2 on this domain (not probed yet, or without it): this SASL2 login goes to another node") };
    const chosen = await dialChosenNode(this.router, this.nodes, this.metrics, routeRequest(login), transport, {
      timeoutMs: this.options.dialTimeoutMs,
      signal: link.leftSignal,
      log: link.log,
    });
    if ("outcome" in chosen) return chosen;
    return this.startForwarding(link, login, chosen.decision, chosen.connection);
  }

  /**
   * The node answered: in the login phase it gets the `<auth/>` and the
   * dialogue carries the exchange until the node's verdict (ForwardedLogin);
   * in the open phase it gets the client's opening and all that followed,
   * and the relay starts at once.
   */
  private startForwarding(link: ClientLink, login: Login, decision: RouteDecision, leg: NodeLeg): HandoffResult {
    const { node } = decision;
    const held = link.release();
    if (link.leftSignal.aborted || held.ended) {
      // The client left before its node answered: nothing of its login goes to the node.
      leg.destroy();
      giveBack(decision);
      return { outcome: "abandoned" };
    }
    if (leg.features !== undefined) this.advice.checkFeatures(leg.features, node.id, login, link.log);
    if (leg.tlsRequiredByNode) this.advice.tlsRequired(node.id, link.log);
    link.log.info({ jid: login.jid, node: node.id, via: decision.via, transport: link.transport }, "forwarded");
    leg.send(login.replay);
    if (login.mechanism !== undefined) return { outcome: "authenticating", node, attempt: new ForwardedLogin(decision, leg, login.sasl2 === true), held };
    for (const chunk of held.chunks) leg.send(chunk);
    const bindingHolds = this.bindingHolds(link, leg);
    // Nobody reads the client while the node's features are awaited, so its leaving may go unseen: a node that does
    // not answer within the dial timeout is given up, and both sides go.
    const deadline = setTimeout(() => {
      link.log.warn({ node: node.id }, "the node sent no features within --dial-timeout");
      leg.destroy();
      giveBack(decision);
      link.destroy();
    }, this.options.dialTimeoutMs);
    passHoldingFeatures(leg, { secure: link.secure, bindingHolds }, (data) => link.send(data), (closed, changed) => {
      clearTimeout(deadline);
      if (changed) this.advice.featuresFiltered(node.id, bindingHolds, link.log);
      if (closed) {
        link.log.info({ node: node.id }, "the node closed the connection before its features");
        giveBack(decision);
        return link.close([], LINGER_MS.rejected);
      }
      this.relay(link, decision, leg, this.watchOpenPhaseLogin(link, leg, decision, login.jid));
    });
    return { outcome: "forwarded", node };
  }

  /** Phase open: tls-server-end-point holds where the node binds to the certificate this client got (or is told it: --channel-binding tls-server-end-point). */
  private bindingHolds(link: ClientLink, leg: NodeLeg): boolean {
    const mode = this.options.channelBinding;
    if (mode === "none") return false;
    const node = leg.certificate;
    const tls = node === undefined ? undefined : link.clientTls();
    if (node === undefined || tls === undefined) return false;
    return mode === "tls-server-end-point" || node === tls.certificate;
  }

  /** The node accepted a login-phase attempt: from here on both ways are relayed; `rest` is what the dialogue read past its last element. */
  relayAfterLogin(link: ClientLink, attempt: ForwardedLogin, rest: Buffer): void {
    this.options.verdicts.accepted(attempt.decision);
    const tokenExpiry = attempt.tokenExpiry();
    if (tokenExpiry !== undefined) attempt.decision.lease.tokenIssued(tokenExpiry);
    if (rest.length > 0) attempt.leg.send(rest);
    this.relay(link, attempt.decision, attempt.leg, undefined);
  }

  /** The node refused a login-phase attempt: counted against the client's address and the attempt's JID. */
  loginRefused(link: ClientLink, attempt: ForwardedLogin, jid: string | null): void {
    this.options.verdicts.refused(attempt.decision, link.client.address, jid);
  }

  private relay(link: ClientLink, decision: RouteDecision, leg: NodeLeg, watcher: ((data: Buffer) => boolean) | undefined): void {
    const { node } = decision;
    // What the close needs, apart: an idle relayed session must not keep the link (its framing and parser) alive.
    const { log } = link;
    const { metrics } = this;
    metrics.forwardedActive.inc({ node: node.id });
    link.relay(
      leg,
      (outcome) => {
        metrics.forwardedActive.dec({ node: node.id });
        metrics.relayBytes.inc({ direction: "up" }, outcome.up);
        metrics.relayBytes.inc({ direction: "down" }, outcome.down);
        decision.lease.closed(outcome.clean);
        log.info({ node: node.id, ...outcome }, "forwarded connection closed");
      },
      clientTrafficLimit(this.options.trafficLimit, metrics, log),
      watcher,
    );
  }

  /** Reads a success the node sent to its end: false once done (a FAST token it issued is remembered). */
  private readSuccess(success: Sasl2SuccessReader, data: Buffer, decision: RouteDecision): boolean {
    if (success.push(data)) return true;
    const expiry = success.tokenExpiry();
    if (expiry !== undefined) decision.lease.tokenIssued(expiry);
    return false;
  }

  /**
   * Phase open: the client logs in with the node's own features, so the
   * node's SASL verdict is read from what it sends the client, until its
   * `<success/>`. Each refusal counts against the client's address and the
   * opening's `from`; past a limit the client is cut off after the
   * `<failure/>`, so further attempts must come through the dialogue again.
   */
  private watchOpenPhaseLogin(link: ClientLink, leg: NodeLeg, decision: RouteDecision, jid: string | null): (data: Buffer) => boolean {
    const scanner = new SaslOutcomeScanner();
    let success: Sasl2SuccessReader | undefined;
    let settled = false;
    const onLeft = (): void => {
      if (settled) return;
      settled = true;
      link.log.debug({ node: decision.node.id }, "the forwarded connection closed before a successful login");
      decision.lease.refused();
    };
    link.onClosed(onLeft);
    return (data) => {
      if (success !== undefined) return this.readSuccess(success, data, decision);
      const verdict = scanner.push(data);
      if (verdict === "success") {
        settled = true;
        link.offClosed(onLeft);
        this.options.verdicts.accepted(decision);
        // Read to its end, for the FAST token a SASL2 success may issue.
        success = new Sasl2SuccessReader();
        return this.readSuccess(success, data, decision);
      }
      if (verdict === "failure") {
        this.options.verdicts.refused(decision, link.client.address, jid);
        void this.options.verdicts.pastLimit(link.client.address, jid).then((refusal) => {
          if (refusal === null) return;
          link.countRefusal(refusal);
          link.log.info({ jid }, "too many failed logins: the forwarded connection is closed");
          // After the piece with the <failure/> has reached the client: a stream error, then both sides go.
          setImmediate(() => link.cutOff(link.errorParts("policy-violation", "too many failed logins; try again later"), leg));
        });
      }
      return true;
    };
  }
}
