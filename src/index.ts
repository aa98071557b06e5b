import type http from "node:http";
import type { Registry } from "prom-client";
import type { HostPort } from "./cluster/address.js";
import type { NodeTableHolder } from "./cluster/node-table-holder.js";
import { readBackendCa, type BalancerConfig } from "./config.js";
import { startAdminHttp } from "./control/admin-http.js";
import { NodeHealth } from "./control/health.js";
import { Membership } from "./control/membership.js";
import { startDiscovery } from "./control/discovery/discovery.js";
import { OfferedMechanisms } from "./control/offered-mechanisms.js";
import { CountedAdmission } from "./control/counted-admission.js";
import { followNodeMetrics } from "./control/node-metrics.js";
import { RateWindow } from "./control/rate-window.js";
import { listenerStatus, statusReport, type WorkersStatus } from "./control/status-view.js";
import { VERSION } from "./version.js";
import { ConfigError } from "./errors.js";
import { listen, type BoundListener } from "./listener/listener.js";
import type { Socket } from "node:net";
import { proxyHeader, type ProxyAddresses } from "./net/proxy-header.js";
import { readProxyHeader } from "./listener/proxy-reader.js";
import { TlsContextHolder } from "./listener/tls-context.js";
import { createLogger, type Logger } from "./log.js";
import { Metrics } from "./metrics.js";
import { Router } from "./router/router.js";
import { strategyByName } from "./router/strategies.js";
import { LINGER_MS } from "./net/linger.js";
import { PreAuthDialogue, type DialogueSettings } from "./session/dialogue.js";
import { AuthFailures } from "./session/auth-failures.js";
import { LoginVerdicts } from "./session/login-verdict.js";
import { Handoff } from "./session/handoff.js";
import { MAX_PREAUTH_MESSAGE_BYTES as WS_MAX_PREAUTH_MESSAGE_BYTES, WebSocketSession, type WebSocketSessionSettings } from "./session/websocket-session.js";
import { listenWebSocket } from "./listener/websocket-listener.js";
import type { ListenerConfig } from "./listener/listener.js";
import { RedirectMemory } from "./session/redirect-memory.js";
import { ClientConnections, type ClientAddress } from "./session/sessions.js";
import { MemoryStore } from "./store/memory-store.js";
import { RedisStore } from "./store/redis-store.js";
import type { ClusterStore } from "./store/store.js";
import { probeNode } from "./control/node-probe.js";

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
}

/** How many SASL attempts the balancer refuses itself before it closes the stream. */
const MAX_SASL_FAILURES = 3;

/** A connection's own two ends, as a PROXY header's addresses. */
function ownAddresses(socket: Socket): ProxyAddresses {
  return {
    source: { address: socket.localAddress ?? "127.0.0.1", port: socket.localPort ?? 0 },
    destination: { address: socket.remoteAddress ?? "127.0.0.1", port: socket.remotePort ?? 0 },
  };
}

/** The store `--store` names: embedded, or Redis with its round trips in the metrics. */
function openStore(config: BalancerConfig, metrics: Metrics): ClusterStore {
  if (config.store === "memory") return new MemoryStore(config.nodes, { affinityGraceMs: config.affinityGraceMs });
  return new RedisStore(config.store, {
    affinityGraceMs: config.affinityGraceMs,
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
  const offeredMechanisms = new OfferedMechanisms(config.saslMechanisms, log);
  const dialOptions = { tls: config.backendTls ? ("always" as const) : ("when-required" as const), ca: backendCa, timeoutMs: config.dialTimeoutMs, maxHeaderBytes: config.maxHeaderBytes };
  const health = new NodeHealth(
    nodes,
    {
      intervalMs: config.healthIntervalMs,
      fall: config.healthFall,
      rise: config.healthRise,
      // One stream per domain the node serves: its health is the first one's; the mechanisms are learnt per domain.
      probe: async (node) => {
        const domains = node.domains.length > 0 ? node.domains : config.domains;
        // A node that reads PROXY headers gets one on probes too, naming the probe's own connection:
        // it waits for a header otherwise, and ejabberd 23.01 mishandles LOCAL (v2) and UNKNOWN (v1) ones.
        const version = node.proxy ?? config.backendProxyProtocol;
        const proxy = version === undefined ? undefined : (socket: Socket) => proxyHeader(version, ownAddresses(socket));
        const probes = domains.map(async (domain) => {
          const features = await probeNode(node.internal, { ...dialOptions, timeoutMs: config.healthTimeoutMs, domain, proxyHeader: proxy });
          if (features !== undefined) offeredMechanisms.learn(node.id, domain, features);
        });
        const [first] = await Promise.allSettled(probes);
        if (first?.status === "rejected") throw first.reason;
      },
    },
    metrics,
    log.child({ component: "health" }),
  );
  nodes.subscribe((table, previous) => {
    for (const node of previous.nodes) if (table.get(node.id) === undefined) offeredMechanisms.forget(node.id);
  });
  const redirectMemory = new RedirectMemory(config.redirectLoopWindowMs);
  const authFailures = new AuthFailures({ perAddress: config.maxAuthFailuresPerAddress, perJid: config.maxAuthFailuresPerJid, windowMs: config.authFailureWindowMs });
  const verdicts = new LoginVerdicts(metrics, authFailures);
  const handoff = new Handoff(router, nodes, metrics, { dial: dialOptions, keepAliveMs: config.tcpKeepaliveMs, redirects: redirectMemory, backendProxy: config.backendProxyProtocol, verdicts, trafficLimit: config.trafficLimit });

  const domains = new Set(config.domains);
  const admission = new CountedAdmission({
    maxConnections: config.maxConnections,
    maxPerAddress: config.maxConnectionsPerAddress,
    maxRatePerAddress: config.maxConnectionRatePerAddress,
    maxPreAuth: config.maxPreauthConnections,
  });
  // Only a process with listeners applies the limit (with --workers the primary has none): the sum is the instance's.
  if (config.listeners.length > 0) metrics.countPreauth(() => admission.preAuthConnections, config.maxPreauthConnections);
  const stopNodeMetrics = followNodeMetrics(nodes, config.domains, metrics);
  const metricsRegistry = (): Promise<Registry> => deps.aggregateMetrics?.(metrics.registry) ?? Promise.resolve(metrics.registry);
  const rates = new RateWindow(async () => (await metricsRegistry()).getMetricsAsJSON());
  const connections = new ClientConnections(metrics, log, admission, config.domains[0] ?? "localhost");
  const listeners: BoundListener[] = [];
  /** WebSocket sessions and what destroys their listeners' connections: the TCP ones are in `connections`. */
  const webSessions = new Set<WebSocketSession>();
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
    for (const session of webSessions) session.shutdown();
    // Let the <system-shutdown/> errors reach their clients, and forwarded sessions drain, for a while.
    const deadline = setTimeout(() => {
      connections.destroyAll();
      for (const session of webSessions) session.terminate();
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

  /** An RFC 7395 listener: its sessions go through the same router and directory as TCP ones. */
  const startWebSocketListener = async (listenerConfig: ListenerConfig): Promise<BoundListener> => {
    const settings: WebSocketSessionSettings = {
      listener: listenerConfig,
      domains,
      mechanisms: (domain) => offeredMechanisms.forDomain(domain),
      loginTimeoutMs: config.loginTimeoutMs,
      dialTimeoutMs: config.dialTimeoutMs,
      maxPreAuthBytes: config.maxPreAuthBytes,
      maxSaslFailures: MAX_SASL_FAILURES,
      authFailures,
      verdicts,
      trafficLimit: config.trafficLimit,
      backendCa,
    };
    const bound = await listenWebSocket(
      listenerConfig,
      {
        origins: config.wsOrigins,
        maxPayload: WS_MAX_PREAUTH_MESSAGE_BYTES,
        pingIntervalMs: config.wsPingIntervalMs,
        secureContext: () => tlsHolder?.current,
        admission,
        proxyTimeoutMs: config.loginTimeoutMs,
        tlsHandshakeTimeoutMs: config.tlsHandshakeTimeoutMs,
        upgradeTimeoutMs: config.loginTimeoutMs,
        onRefused: (reason, peer) => {
          // The connection limits count as on TCP; the upgrade's own checks and a bad PROXY header by name.
          const upgrade = reason === "subprotocol" || reason === "origin";
          if (reason !== "proxy-header") metrics.rejected.inc({ reason: upgrade ? `websocket-${reason}` : reason });
          metrics.connections.inc({ listener: listenerConfig.name, outcome: "rejected", transport: "websocket" });
          // A limit's refusals are logged at debug: a flood must not flood the log.
          const level = upgrade || reason === "proxy-header" ? "info" : "debug";
          log[level]({ listener: listenerConfig.name, peer, reason }, "WebSocket connection refused");
        },
      },
      (socket, client) => {
        const session = new WebSocketSession(socket, client, settings, router, nodes, metrics, log);
        webSessions.add(session);
        socket.once("close", () => webSessions.delete(session));
      },
    );
    webListenerTeardowns.push(bound.destroyAll);
    log.info({ listener: listenerConfig.name, kind: listenerConfig.kind, mode: listenerConfig.mode, phase: listenerConfig.phase, path: listenerConfig.path, address: bound.address }, "listening");
    return bound;
  };

  try {
    for (const listenerConfig of config.listeners) {
      const settings: DialogueSettings = {
        listener: listenerConfig,
        domains,
        mechanisms: (domain) => offeredMechanisms.forDomain(domain),
        allowPlaintext: config.allowPlaintext,
        secureContext: () => tlsHolder?.current,
        loginTimeoutMs: config.loginTimeoutMs,
        tlsHandshakeTimeoutMs: config.tlsHandshakeTimeoutMs,
        authFailures,
        maxPreAuthBytes: config.maxPreAuthBytes,
        maxHeaderBytes: config.maxHeaderBytes,
        maxSaslFailures: MAX_SASL_FAILURES,
      };
      if (listenerConfig.kind === "ws" || listenerConfig.kind === "wss") {
        listeners.push(await startWebSocketListener(listenerConfig));
        continue;
      }
      const bound = await listen(listenerConfig, config.tcpKeepaliveMs, (socket) => {
        // A connection a limit refuses gets no dialogue (accept answers it).
        const start = (client?: ClientAddress): void => {
          const conn = connections.accept(socket, listenerConfig, client);
          if (conn !== null) new PreAuthDialogue(conn, settings, handoff);
        };
        if (!listenerConfig.proxyProtocol) return start();
        readProxyHeader(socket, config.loginTimeoutMs).then(
          (header) => start(header.addresses?.source),
          (err: Error) => {
            // Not a client's mistake to answer in XMPP: whatever sent it is not the front this listener expects.
            log.info({ listener: listenerConfig.name, peer: `${socket.remoteAddress}:${socket.remotePort}`, reason: err.message }, "connection without a valid PROXY header closed");
            metrics.connections.inc({ listener: listenerConfig.name, outcome: "rejected", transport: "tcp" });
            socket.destroy();
          },
        );
      });
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
    saslMechanisms: (domain) => offeredMechanisms.forDomain(domain),
    reloadTls: () => tlsHolder?.reload(),
    rediscover: () => discovery.refresh(),
    announceShutdown: () => void (stopping = true),
    close: closeAll,
  };
}
