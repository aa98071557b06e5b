import type { Socket } from "node:net";
import type { Element } from "@xmpp/xml";
import { performance } from "node:perf_hooks";
import type { NodeView } from "../cluster/node.js";
import type { NodeHealth } from "../control/health.js";
import { UpstreamError } from "../errors.js";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { RouteDecision, RouteRequest, Router } from "../router/router.js";
import type { ClusterStore } from "../store/store.js";
import { dialNode, type NodeDialOptions } from "../upstream/node-stream.js";
import { relay } from "../upstream/relay.js";
import { saslMechanismsOf } from "../xmpp/features.js";
import { seeOtherHostXml } from "../xmpp/see-other-host.js";
import type { RedirectMemory } from "./redirect-memory.js";

const REDIRECT_LINGER_MS = 5000;

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

export type HandoffResult = { outcome: "redirected" | "forwarded"; node: NodeView } | { outcome: "no-node" } | { outcome: "abandoned" };

export interface HandoffOptions {
  /** How nodes are dialed for clients: TLS to the node, CA, deadline, header limit. */
  dial: Omit<NodeDialOptions, "domain" | "openStream">;
  /** TCP keepalive on node sockets (0: off). */
  keepAliveMs: number;
  redirects: RedirectMemory;
}

/** After the decision: redirect the client, or dial a node and relay (trying the next node when a dial fails). */
export class Handoff {
  constructor(
    private readonly router: Router,
    private readonly store: ClusterStore,
    private readonly health: NodeHealth,
    private readonly metrics: Metrics,
    private readonly options: HandoffOptions,
  ) {}

  /** Node configuration warnings already given ("kind node"): once per node is enough. */
  private readonly warned = new Set<string>();

  private warnOnce(kind: string, nodeId: string, log: Logger, fields: object, message: string): void {
    const key = `${kind} ${nodeId}`;
    if (this.warned.has(key)) return;
    this.warned.add(key);
    log.warn({ node: nodeId, ...fields }, message);
  }

  /** Configuration mistakes that break logins, said where an operator looks. */
  private checkMechanisms(features: Element, nodeId: string, mechanism: string | undefined, log: Logger): void {
    const offered = saslMechanismsOf(features);
    if (mechanism !== undefined && offered.length > 0 && !offered.includes(mechanism)) {
      log.warn({ node: nodeId, mechanism, offered }, "the node does not offer the client's SASL mechanism; check --sasl-mechanisms");
    }
    if (offered.some((m) => m.endsWith("-PLUS"))) {
      this.warnOnce("plus", nodeId, log, { offered }, "the node offers channel binding (-PLUS) to the balancer: SCRAM clients that support binding will be refused as a downgrade; disable -PLUS on the node");
    }
  }

  private async route(req: RouteRequest): Promise<RouteDecision | null> {
    const started = performance.now();
    const decision = await this.router.route(req);
    this.metrics.routingDuration.observe({ via: decision?.via ?? "none" }, (performance.now() - started) / 1000);
    return decision;
  }

  async redirect(client: Socket, login: Login, log: Logger): Promise<HandoffResult> {
    if (login.jid !== null && this.options.redirects.cameBack(client.remoteAddress ?? "", login.jid)) {
      this.metrics.redirectLoops.inc();
      log.info({ jid: login.jid }, "the client came back right after a redirect: forwarding it instead");
      return this.forward(client, login, log);
    }
    const decision = await this.route({ jid: login.jid, domain: login.domain });
    if (decision === null) return { outcome: "no-node" };
    const { node } = decision;
    await this.store.redirected(login.jid, node.id);
    client.end((login.pendingHeader ?? "") + seeOtherHostXml(node.external.host, node.external.port));
    // The client should close once it has read the redirect; do not wait for it forever.
    setTimeout(() => client.destroy(), REDIRECT_LINGER_MS).unref();
    log.info({ jid: login.jid, node: node.id, via: decision.via, to: `${node.external.host}:${node.external.port}` }, "redirected");
    return { outcome: "redirected", node };
  }

  async forward(client: Socket, login: Login, log: Logger): Promise<HandoffResult> {
    const exclude = new Set<string>();
    const attempts = this.router.table.nodes.length;
    for (let attempt = 0; attempt < attempts; attempt++) {
      const decision = await this.route({ jid: login.jid, domain: login.domain, exclude });
      if (decision === null) return { outcome: "no-node" };
      const { node } = decision;
      let connection;
      try {
        connection = await dialNode(node.internal, { ...this.options.dial, domain: login.domain, openStream: login.pendingHeader === undefined });
      } catch (err) {
        if (!(err instanceof UpstreamError)) throw err;
        exclude.add(node.id);
        this.metrics.dialFailures.inc({ node: node.id });
        log.warn({ node: node.id, err: err.message, code: err.code }, "node dial failed; trying the next one");
        if (err.nodeFault) this.health.markDown(node.id, err.message);
        continue;
      }
      const upstream = connection.socket;
      if (client.destroyed || client.writableEnded) {
        upstream.destroy();
        return { outcome: "abandoned" };
      }
      if (connection.features !== undefined) this.checkMechanisms(connection.features, node.id, login.mechanism, log);
      if (connection.tlsRequiredByNode) {
        this.warnOnce("tls", node.id, log, {}, "the node requires TLS before SASL: the balancer uses STARTTLS to it (--backend-tls makes this explicit; phase open needs it)");
      }
      if (this.options.keepAliveMs > 0) upstream.setKeepAlive(true, this.options.keepAliveMs);
      upstream.setNoDelay(true);
      if (connection.leftover.length > 0) client.write(connection.leftover);
      upstream.write(login.replay);
      void this.store.connectionOpened(login.jid, node.id).catch((err: Error) => log.warn({ err: err.message }, "store: cannot record the connection"));
      this.metrics.forwardedActive.inc({ node: node.id });
      relay(client, upstream, (stats) => {
        this.metrics.forwardedActive.dec({ node: node.id });
        this.metrics.relayBytes.inc({ direction: "up" }, stats.up);
        this.metrics.relayBytes.inc({ direction: "down" }, stats.down);
        void this.store.connectionClosed(login.jid, node.id).catch((err: Error) => log.warn({ err: err.message }, "store: cannot record the close"));
        log.info({ node: node.id, up: stats.up, down: stats.down }, "forwarded connection closed");
      });
      log.info({ jid: login.jid, node: node.id, via: decision.via, internal: `${node.internal.host}:${node.internal.port}` }, "forwarded");
      return { outcome: "forwarded", node };
    }
    return { outcome: "no-node" };
  }
}
