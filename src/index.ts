import type http from "node:http";
import type { Registry } from "prom-client";
import type { HostPort } from "./cluster/address.js";
import type { NodeTableHolder } from "./cluster/node-table-holder.js";
import { readBackendCa, type BalancerConfig } from "./config.js";
import { startAdminHttp } from "./control/admin-http.js";
import { NodeHealth } from "./control/health.js";
import { Membership } from "./control/membership.js";
import { startDiscovery } from "./control/discovery/discovery.js";
import { OfferedLogins } from "./control/offered-logins.js";
import { CountedAdmission } from "./control/counted-admission.js";
import { followNodeMetrics } from "./control/node-metrics.js";
import { RateWindow } from "./control/rate-window.js";
import { listenerStatus, statusReport, type WorkersStatus } from "./control/status-view.js";
import { VERSION } from "./version.js";
import { ConfigError } from "./errors.js";
import { listen, type BoundListener } from "./listener/listener.js";
import { admissionLimits, type AdmissionGate } from "./listener/admission.js";
import { TlsContextHolder } from "./listener/tls-context.js";
import { createLogger, type Logger } from "./log.js";
import { Metrics } from "./metrics.js";
import { Router } from "./router/router.js";
import { strategyByName } from "./router/strategies.js";
import { LINGER_MS } from "./net/linger.js";
import { LoginDialogue, type DialogueSettings } from "./session/dialogue.js";
import { TcpLink, type TcpLinkSettings } from "./session/tcp-link.js";
import { MAX_PREAUTH_MESSAGE_BYTES, WebSocketLink } from "./session/websocket-link.js";
import { tcpIntake } from "./listener/tcp-intake.js";
import { AuthFailures, authFailureLimits, type AuthFailureGate } from "./session/auth-failures.js";
import { LoginVerdicts } from "./session/login-verdict.js";
import { Handoff } from "./session/handoff.js";
import { listenWebSocket } from "./listener/websocket-listener.js";
import type { ListenerConfig } from "./listener/listener.js";
import { RedirectMemory } from "./session/redirect-memory.js";
import { ClientConnections } from "./session/sessions.js";
import { MemoryStore } from "./store/memory-store.js";
import { RedisStore } from "./store/redis-store.js";
import type { ClusterStore } from "./store/store.js";
import { probeNodeDomains, type NodeProbePlan } from "./control/node-probe.js";

export type { BalancerConfig, ConfigInput } from "./config.js";
export type { ListenerConfig } from "./listener/listener.js";
export { resolveConfig } from "./config.js";
export { ConfigError, SaslError, StreamError, UPSTREAM_ERRORS, UpstreamError, XmppLbError } from "./errors.js";

export interface Balancer {
  /** Bound listeners with their real addresses (port 0 resolved). */
  readonly listeners: readonly BoundListener[];
  /** Where /metrics, /healthz and /nodes answer, when --metrics is set. */
  readonly adminAddress: HostPort | undefined;
  /** The current node table, and its one writer's API. */
  readonly nodes: NodeTableHolder;
  readonly store: ClusterStore;
  readonly metrics: Metrics;
  readonly health: NodeHealth;
  /** SASL mechanisms offered now on a stream to `domain`: the configured ones every node serving it supports. */
  readonly saslMechanisms: (domain: string) => readonly string[];
  /** Re-reads the TLS certificate and key (new connections only). */
  reloadTls(): void;
  /** Re-reads the nodes files and re-resolves the DNS of `--discover` now (SIGHUP). */
  rediscover(): void;
  /**
   * From now on /healthz answers 503 (shutting down), so a front sends no
   * more clients here. close() starts with it; a `--workers` primary calls it
   * while its workers drain.
   */
  announceShutdown(): void;
  /**
   * Stops accepting, answers clients still in the pre-auth dialogue with
   * `<system-shutdown/>`, lets forwarded sessions run for up to `drainMs`
   * (default 0: closed at once; clients that close on their own go sooner),
   * then closes what is left.
   */
  close(drainMs?: number): Promise<void>;
}

export interface BalancerDeps {
  logger?: Logger;
  store?: ClusterStore;
  /** What /metrics answers and the status page's rates read, when not this process's own registry (--workers: every process's, summed). */
  aggregateMetrics?: (own: Registry) => Promise<Registry>;
  /** --workers: the processes that run the data path, and the listeners they share, for the status page. */
  dataPath?: { workers: () => WorkersStatus; listeners: readonly ListenerConfig[] };
  /** Where the connection and failed-login counts are kept, when not in this process (--workers: the primary). */
  limits?: { admission: AdmissionGate; authFailures: AuthFailureGate };
}


/** The limits' counts in this process; one with listeners publishes its pre-auth count (with --workers, the primary does). */
function ownLimits(config: BalancerConfig, metrics: Metrics): { admission: AdmissionGate; authFailures: AuthFailureGate } {
  const admission = new CountedAdmission(admissionLimits(config));
  if (config.listeners.length > 0) metrics.countPreauth(() => admission.preAuthConnections, config.maxPreauthConnections);
  return { admission, authFailures: new AuthFailures(authFailureLimits(config)) };
}

/** The store `--store` names: embedded, or Redis with its round trips in the metrics. */
function openStore(config: BalancerConfig, metrics: Metrics): ClusterStore {
  if (config.store === "memory") return new MemoryStore(config.nodes, { affinityTtlMs: config.affinityTtlMs });
  return new RedisStore(config.store, {
    affinityTtlMs: config.affinityTtlMs,
    prefix: config.storePrefix,
    timeoutMs: config.storeTimeoutMs,
    staticNodes: config.nodes,
    // A registered node whose heartbeat stopped expires silently (no announcement): re-read every second.
    nodeRefreshMs: 1000,
    observe: (op, seconds, ok) => {
      metrics.storeDuration.observe({ op }, seconds);
      if (!ok) metrics.storeErrors.inc({ op });
    },
  });
}

/** Starts a balancer: listeners, routing over the store, health probes and the admin endpoint. */
export async function createBalancer(config: BalancerConfig, deps: BalancerDeps = {}): Promise<Balancer> {
  const startedAt = Date.now();
  const log = deps.logger ?? createLogger(config.logLevel, config.logFormat);
  const metrics = new Metrics();
  const tlsHolder = config.tls === undefined ? undefined : new TlsContextHolder(config.tls);
  const backendCa = config.backendCa === undefined ? undefined : readBackendCa(config.backendCa);

  const store = deps.store ?? openStore(config, metrics);
  const membership = await Membership.start(store, config.nodes, metrics, log);
  const { nodes } = membership;
  const discovery = await startDiscovery(config, { membership, nodes, metrics, log: log.child({ component: "discovery" }) });
  const router = new Router(store, strategyByName(config.strategy), nodes, { zone: config.zone, storeTimeoutMs: config.storeTimeoutMs, metrics });
  const offeredLogins = new OfferedLogins(config.saslMechanisms, config.channelBinding, log);
  const dialOptions = { tls: config.backendTls ? ("always" as const) : ("when-required" as const), ca: backendCa, timeoutMs: config.dialTimeoutMs, maxHeaderBytes: config.maxHeaderBytes };
  const probePlan: NodeProbePlan = {
    dial: { ...dialOptions, timeoutMs: config.healthTimeoutMs },
    domains: config.domains,
    backendProxy: config.backendProxyProtocol,
    learn: (nodeId, domain, features) => offeredLogins.learn(nodeId, domain, features),
  };
  const health = new NodeHealth(
    nodes,
    {
      intervalMs: config.healthIntervalMs,
      fall: config.healthFall,
      rise: config.healthRise,
      probe: (node) => probeNodeDomains(node, probePlan),
    },
    metrics,
    log.child({ component: "health" }),
  );
  nodes.subscribe((table, previous) => {
    for (const node of previous.nodes) if (table.get(node.id) === undefined) offeredLogins.forget(node.id);
  });
  const redirectMemory = new RedirectMemory(config.redirectLoopWindowMs);
  const { admission, authFailures } = deps.limits ?? ownLimits(config, metrics);
  const verdicts = new LoginVerdicts(metrics, authFailures);
  const handoff = new Handoff(router, nodes, metrics, { dialTimeoutMs: config.dialTimeoutMs, redirects: redirectMemory, verdicts, trafficLimit: config.trafficLimit, channelBinding: config.channelBinding, speaksSasl2: (nodeId, domain) => offeredLogins.speaksSasl2(nodeId, domain) });

  const domains = new Set(config.domains);
  const stopNodeMetrics = followNodeMetrics(nodes, config.domains, metrics);
  const metricsRegistry = (): Promise<Registry> => deps.aggregateMetrics?.(metrics.registry) ?? Promise.resolve(metrics.registry);
  const rates = new RateWindow(async () => (await metricsRegistry()).getMetricsAsJSON());
  const connections = new ClientConnections(metrics, log, admission, config.domains[0] ?? "localhost");
  const listeners: BoundListener[] = [];
  /** WebSocket clients and what destroys their listeners' connections: the TCP ones are in `connections`. */
  const webLinks = new Set<WebSocketLink>();
  const webListenerTeardowns: (() => void)[] = [];
  let admin: { server: http.Server; address: HostPort } | undefined;
  let stopping = false;
  const closeAll = async (drainMs = 0): Promise<void> => {
    stopping = true;
    health.stop();
    membership.stop();
    rates.stop();
    stopNodeMetrics();
    redirectMemory.close();
    admission.close();
    authFailures.close();
    // server.close() only calls back once every connection is gone: stop accepting, then close them.
    const closed = listeners.map((l) => new Promise<void>((resolve) => l.server.close(() => resolve())));
    connections.shutdown();
    for (const link of webLinks) link.shutdown();
    // Let the <system-shutdown/> errors reach their clients, and forwarded sessions drain, for a while.
    const deadline = setTimeout(() => {
      connections.destroyAll();
      for (const link of webLinks) link.destroy();
      for (const teardown of webListenerTeardowns) teardown();
    }, Math.max(drainMs, LINGER_MS.shutdown));
    await Promise.all(closed);
    clearTimeout(deadline);
    if (admin !== undefined) {
      const adminClosed = new Promise<void>((resolve) => admin!.server.close(() => resolve()));
      admin.server.closeAllConnections();
      await adminClosed;
    }
    await store.close();
  };

  const dialogueSettings = (listener: ListenerConfig): DialogueSettings => ({
    listener,
    domains,
    loginOffer: (domain, tls) => offeredLogins.offer(domain, tls),
    allowPlaintext: config.allowPlaintext,
    loginTimeoutMs: config.loginTimeoutMs,
    maxPreauthBytes: config.maxPreauthBytes,
    authFailures,
  });
  const tcpLinkSettings: TcpLinkSettings = {
    secureContext: () => tlsHolder?.current,
    tlsHandshakeTimeoutMs: config.tlsHandshakeTimeoutMs,
    maxHeaderBytes: config.maxHeaderBytes,
    maxPreauthBytes: config.maxPreauthBytes,
    dial: dialOptions,
    keepAliveMs: config.tcpKeepaliveMs,
    backendProxy: config.backendProxyProtocol,
  };
  const webLinkSettings = { maxPreauthBytes: config.maxPreauthBytes, dialTimeoutMs: config.dialTimeoutMs, backendCa };

  /** An RFC 7395 listener: its clients go through the same dialogue, router and directory as TCP ones. */
  const startWebSocketListener = async (listenerConfig: ListenerConfig): Promise<BoundListener> => {
    const settings = dialogueSettings(listenerConfig);
    const bound = await listenWebSocket(
      listenerConfig,
      {
        origins: config.wsOrigins,
        maxPayload: MAX_PREAUTH_MESSAGE_BYTES,
        pingIntervalMs: config.wsPingIntervalMs,
        secureContext: () => tlsHolder?.current,
        admission,
        proxyTimeoutMs: config.loginTimeoutMs,
        tlsHandshakeTimeoutMs: config.tlsHandshakeTimeoutMs,
        upgradeTimeoutMs: config.loginTimeoutMs,
        metrics,
        log,
      },
      (socket, client) => {
        const link = new WebSocketLink(socket, client, listenerConfig, webLinkSettings, metrics, log);
        webLinks.add(link);
        socket.once("close", () => webLinks.delete(link));
        new LoginDialogue(link, settings, handoff);
      },
    );
    webListenerTeardowns.push(bound.destroyAll);
    log.info({ listener: listenerConfig.name, kind: listenerConfig.kind, mode: listenerConfig.mode, phase: listenerConfig.phase, path: listenerConfig.path, address: bound.address }, "listening");
    return bound;
  };

  try {
    for (const listenerConfig of config.listeners) {
      if (listenerConfig.kind === "ws" || listenerConfig.kind === "wss") {
        listeners.push(await startWebSocketListener(listenerConfig));
        continue;
      }
      const settings = dialogueSettings(listenerConfig);
      const intake = tcpIntake(listenerConfig, { connections, proxyTimeoutMs: config.loginTimeoutMs, metrics, log }, (conn) => new LoginDialogue(new TcpLink(conn, tcpLinkSettings), settings, handoff));
      const bound = await listen(listenerConfig, config.tcpKeepaliveMs, intake);
      listeners.push(bound);
      log.info({ listener: listenerConfig.name, kind: listenerConfig.kind, mode: listenerConfig.mode, phase: listenerConfig.phase, address: bound.address }, "listening");
    }
    if (config.metrics !== undefined) {
      admin = await startAdminHttp(config.metrics, {
        metrics,
        nodes,
        store,
        hosts: config.adminHosts,
        token: config.adminToken,
        stopping: () => stopping,
        log: log.child({ component: "admin" }),
        metricsText: async () => (await metricsRegistry()).metrics(),
        status: () =>
          statusReport({
            nodes,
            store,
            rates,
            discovery: () => discovery.sources(),
            listeners: () => (deps.dataPath === undefined ? listeners.map((l) => listenerStatus(l.config, l.address)) : deps.dataPath.listeners.map((l) => listenerStatus(l))),
            workers: deps.dataPath?.workers ?? (() => ({ configured: 1, running: 1, restarts: 0 })),
            version: VERSION,
            startedAt,
            tokenRequired: config.adminToken !== undefined,
          }),
      });
      rates.start();
      log.info({ address: admin.address }, "admin endpoint: / (status page) /status /metrics /healthz /nodes");
    }
  } catch (err) {
    await closeAll();
    const e = err as NodeJS.ErrnoException;
    if (e.code === "EADDRINUSE" || e.code === "EACCES" || e.code === "EADDRNOTAVAIL") throw new ConfigError(`cannot listen: ${e.message}`);
    throw err;
  }
  if (nodes.table.nodes.length === 0 && config.discovery.length === 0) log.warn("no cluster nodes are configured (--node): every login will fail");
  health.start();

  return {
    listeners,
    adminAddress: admin?.address,
    nodes,
    store,
    metrics,
    health,
    saslMechanisms: (domain) => offeredLogins.forDomain(domain),
    reloadTls: () => tlsHolder?.reload(),
    rediscover: () => discovery.refresh(),
    announceShutdown: () => void (stopping = true),
    close: closeAll,
  };
}
