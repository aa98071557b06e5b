import net, { type Socket } from "node:net";
import type { NodeView, ProxyVersion } from "../cluster/node.js";
import { proxyHeader } from "../net/proxy-header.js";
import type { NodeTableHolder } from "../cluster/node-table-holder.js";
import type { LineLogger } from "../log.js";
import type { Metrics } from "../metrics.js";
import { LINGER_MS } from "../net/linger.js";
import type { RouteDecision, Router } from "../router/router.js";
import { dialNode, type NodeConnection, type NodeDialOptions } from "../upstream/node-stream.js";
import { relay, type ClientTrafficLimit, type NodeWatcher } from "../upstream/relay.js";
import { dialChosenNode } from "./node-dialer.js";
import type { TrafficLimit } from "../upstream/traffic-limit.js";
import { SaslOutcomeScanner } from "../xmpp/sasl-outcome.js";
import { seeOtherHostXml } from "../xmpp/see-other-host.js";
import { streamErrorXml } from "../xmpp/stream-error.js";
import { NodeAdvice } from "./node-advice.js";
import { ForwardedLogin } from "./forwarded-login.js";
import type { LoginVerdicts } from "./login-verdict.js";
import type { RedirectMemory } from "./redirect-memory.js";
import type { ClientConnection, HeldInput } from "./sessions.js";

/** What the pre-auth dialogue learnt, handed over for the decision. */
export interface Login {
  /** Bare JID, or null for a login without identity (ANONYMOUS). */
  jid: string | null;
  domain: string;
  /** The SASL mechanism (login phase). */
  mechanism?: string;
  /** What the node receives first: the client's stream header (open phase) or its `<auth/>` and all that followed (login phase). */
  replay: Buffer;
  /** The balancer's own stream header still owed to the client (open phase): sent before a redirect. */
  pendingHeader?: string;
}

export type HandoffResult =
  | { outcome: "redirected" | "forwarded"; node: NodeView }
  /** Login phase: the node has the client's `<auth/>`; the dialogue carries the exchange until the node's verdict. */
  | { outcome: "authenticating"; node: NodeView; attempt: ForwardedLogin; held: HeldInput }
  | { outcome: "no-node" }
  | { outcome: "abandoned" };

export interface HandoffOptions {
  /** How nodes are dialed for clients: TLS to the node, CA, deadline, header limit. */
  dial: Omit<NodeDialOptions, "domain" | "openStream" | "signal">;
  /** TCP keepalive on node sockets (0: off). */
  keepAliveMs: number;
  redirects: RedirectMemory;
  /** PROXY protocol header version for nodes without their own `proxy=`. */
  backendProxy?: ProxyVersion;
  /** What the node's verdict on a login does to the directory and the failed-login limits. */
  verdicts: LoginVerdicts;
  /** What a forwarded client may send (`--traffic-limit`); none when absent. */
  trafficLimit?: TrafficLimit;
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
 * After the dialogue: asks the router for a node, then redirects the client
 * there, or dials the node and relays (asking again when a dial fails). What
 * became of the login goes back to the router through the decision's lease,
 * and a failed dial to the node table holder.
 */
export class Handoff {
  private readonly advice = new NodeAdvice();

  constructor(
    private readonly router: Router,
    private readonly nodes: NodeTableHolder,
    private readonly metrics: Metrics,
    private readonly options: HandoffOptions,
  ) {}

  async redirect(conn: ClientConnection, login: Login): Promise<HandoffResult> {
    const address = conn.client.address;
    if (login.jid !== null && this.options.redirects.cameBack(address, login.jid)) {
      this.metrics.redirectLoops.inc();
      conn.log.info({ jid: login.jid }, "the client came back right after a redirect: forwarding it instead");
      return this.forward(conn, login);
    }
    const decision = await this.router.route({ jid: login.jid, domain: login.domain }, conn.log);
    if (decision === null) return { outcome: "no-node" };
    const { node } = decision;
    decision.lease.redirected();
    if (login.jid !== null) this.options.redirects.remember(address, login.jid);
    conn.close(LINGER_MS.redirected, (login.pendingHeader ?? "") + seeOtherHostXml(node.external.host, node.external.port));
    conn.log.info({ jid: login.jid, node: node.id, via: decision.via, to: `${node.external.host}:${node.external.port}` }, "redirected");
    return { outcome: "redirected", node };
  }

  /** Dials the node the router names (see dialChosenNode for retries) and relays. */
  async forward(conn: ClientConnection, login: Login): Promise<HandoffResult> {
    const chosen = await dialChosenNode(this.router, this.nodes, this.metrics, { jid: login.jid, domain: login.domain }, {
      unusable: () => null,
      dial: (node) => dialNode(node.internal, { ...this.options.dial, domain: login.domain, openStream: login.pendingHeader === undefined, signal: conn.leftSignal, proxyHeader: this.proxyHeaderFor(node, conn) }),
    }, { timeoutMs: this.options.dial.timeoutMs, signal: conn.leftSignal, log: conn.log });
    if ("outcome" in chosen) return chosen;
    return this.startForwarding(conn, login, chosen.decision, chosen.connection);
  }

  /** The client's address for a node that reads PROXY headers: the real client, and the listener it reached. */
  private proxyHeaderFor(node: NodeView, conn: ClientConnection): Buffer | undefined {
    const version = node.proxy ?? this.options.backendProxy;
    if (version === undefined) return undefined;
    const destination = { address: conn.socket.localAddress ?? "", port: conn.socket.localPort ?? 0 };
    return proxyHeader(version, net.isIP(conn.client.address) === 0 ? null : { source: conn.client, destination });
  }

  /**
   * The node answered: in the login phase it gets the `<auth/>` and the
   * dialogue carries the exchange until the node's verdict (ForwardedLogin);
   * in the open phase it gets the client's stream header and all that
   * followed, and the relay starts at once.
   */
  private startForwarding(conn: ClientConnection, login: Login, decision: RouteDecision, connection: NodeConnection): HandoffResult {
    const { node } = decision;
    const upstream = connection.socket;
    const held = conn.release();
    if (conn.leftSignal.aborted || held.ended) {
      // The client left before its node answered: nothing of its login goes to the node.
      upstream.destroy();
      return this.abandoned(decision);
    }
    if (connection.features !== undefined) this.advice.checkFeatures(connection.features, node.id, login.mechanism, conn.log);
    if (connection.tlsRequiredByNode) this.advice.tlsRequired(node.id, conn.log);
    if (this.options.keepAliveMs > 0) upstream.setKeepAlive(true, this.options.keepAliveMs);
    upstream.setNoDelay(true);
    if (connection.leftover.length > 0) conn.socket.write(connection.leftover);
    conn.log.info({ jid: login.jid, node: node.id, via: decision.via, internal: `${node.internal.host}:${node.internal.port}` }, "forwarded");
    if (login.mechanism !== undefined) {
      upstream.write(login.replay);
      return { outcome: "authenticating", node, attempt: new ForwardedLogin(() => conn.socket, decision, upstream), held };
    }
    const client = conn.handOver();
    upstream.write(held.bytes.length > 0 ? Buffer.concat([login.replay, held.bytes]) : login.replay);
    this.relay(conn, decision, client, upstream, this.watchOpenPhaseLogin(client, upstream, decision, conn, login.jid));
    return { outcome: "forwarded", node };
  }

  /** The node accepted a login-phase attempt: from here on bytes are relayed both ways; `rest` is what the dialogue read past its last element. */
  relayAfterLogin(conn: ClientConnection, attempt: ForwardedLogin, rest: Buffer): void {
    this.options.verdicts.accepted(attempt.decision);
    const client = conn.handOver();
    if (rest.length > 0) attempt.node.write(rest);
    this.relay(conn, attempt.decision, client, attempt.node, undefined);
  }

  /** The node refused a login-phase attempt: counted against the client's address and the attempt's JID. */
  loginRefused(conn: ClientConnection, attempt: ForwardedLogin, jid: string | null): void {
    this.options.verdicts.refused(attempt.decision, conn.client.address, jid);
  }

  private relay(conn: ClientConnection, decision: RouteDecision, client: Socket, upstream: Socket, watcher: NodeWatcher | undefined): void {
    const { node } = decision;
    this.metrics.forwardedActive.inc({ node: node.id });
    relay(client, upstream, (stats) => {
      this.metrics.forwardedActive.dec({ node: node.id });
      this.metrics.relayBytes.inc({ direction: "up" }, stats.up);
      this.metrics.relayBytes.inc({ direction: "down" }, stats.down);
      decision.lease.closed(stats.clean);
      conn.log.info({ node: node.id, up: stats.up, down: stats.down, clean: stats.clean }, "forwarded connection closed");
    }, clientTrafficLimit(this.options.trafficLimit, this.metrics, conn.log), watcher);
  }

  /**
   * Phase open: the client logs in with the node's own features, so the
   * node's SASL verdict is read from what it sends the client (the relay
   * shows it each chunk before forwarding it untouched), until its
   * `<success/>`. Each refusal counts against the client's address and the
   * stream's `from`; past a limit the connection is closed after the
   * `<failure/>`, so further attempts must come through the dialogue again.
   */
  private watchOpenPhaseLogin(client: Socket, upstream: Socket, decision: RouteDecision, conn: ClientConnection, jid: string | null): NodeWatcher {
    const scanner = new SaslOutcomeScanner();
    const onClose = (): void => {
      conn.log.debug({ node: decision.node.id }, "the forwarded connection closed before a successful login");
      decision.lease.refused();
    };
    upstream.once("close", onClose);
    return (chunk) => {
      const outcome = scanner.push(chunk);
      if (outcome === "failure") {
        const refusal = this.options.verdicts.refused(decision, conn.client.address, jid);
        if (refusal !== null) {
          conn.countRefusal(refusal);
          conn.log.info({ jid }, "too many failed logins: the forwarded connection is closed");
          // After this chunk (the <failure/>) has reached the client: a stream error, then both sides go.
          setImmediate(() => {
            if (!client.destroyed) client.write(streamErrorXml("policy-violation", "too many failed logins; try again later"));
            upstream.destroy();
          });
          return false;
        }
      } else if (outcome === "success") {
        upstream.off("close", onClose);
        this.options.verdicts.accepted(decision);
        return false;
      }
      return true;
    };
  }

  private abandoned(decision: RouteDecision): HandoffResult {
    if (decision.via === "strategy") decision.lease.refused();
    return { outcome: "abandoned" };
  }
}
