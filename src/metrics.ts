import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** What `Registry.getMetricsAsJSON()` gives (prom-client does not export the type by name): how `--workers` processes send their metrics. */
export type MetricsJson = Awaited<ReturnType<Registry["getMetricsAsJSON"]>>;

export type ConnectionOutcome = "redirected" | "forwarded" | "rejected" | "failed" | "abandoned";

/** The balancer's Prometheus metrics, on a Registry it owns (never the global one). */
export class Metrics {
  readonly registry: Registry;
  readonly connections: Counter<"listener" | "outcome" | "transport">;
  readonly activeConnections: Gauge<"listener">;
  readonly routingDuration: Histogram<"via">;
  readonly forwardedActive: Gauge<"node">;
  readonly nodeUp: Gauge<"node">;
  readonly dialFailures: Counter<"node">;
  readonly streamErrors: Counter<"condition">;
  readonly relayBytes: Counter<"direction">;
  readonly redirectLoops: Counter;
  readonly authFailures: Counter<"node">;
  readonly rejected: Counter<"reason">;
  readonly trafficLimited: Counter<"action">;
  readonly storeUp: Gauge;
  readonly storeDuration: Histogram<"op">;
  readonly storeErrors: Counter<"op">;
  readonly nodes: Gauge<"state" | "source">;
  readonly discoveryUp: Gauge<"source">;
  readonly discoveryNodes: Gauge<"source">;
  readonly nodeState: Gauge<"node" | "state">;
  readonly domainNodesUp: Gauge<"domain">;
  readonly preauthConnections: Gauge;
  readonly preauthLimit: Gauge;
  readonly workerRestarts: Counter;
  private preauthSource: () => number = () => 0;

  constructor(registry = new Registry()) {
    this.registry = registry;
    const registers = [registry];
    this.connections = new Counter({
      name: "xmpp_lb_connections_total",
      help: "Client connections by listener, outcome (redirected, forwarded, rejected, failed, abandoned) and transport (tcp, websocket)",
      labelNames: ["listener", "outcome", "transport"],
      registers,
    });
    this.activeConnections = new Gauge({
      name: "xmpp_lb_active_connections",
      help: "Client connections open now, in the pre-auth dialogue or forwarded",
      labelNames: ["listener"],
      registers,
    });
    this.routingDuration = new Histogram({
      name: "xmpp_lb_routing_decision_seconds",
      help: "Time to choose a node for a login (directory lookup, strategy, claim)",
      labelNames: ["via"],
      buckets: [0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1],
      registers,
    });
    this.forwardedActive = new Gauge({
      name: "xmpp_lb_forwarded_connections",
      help: "Forwarded connections open now, per node",
      labelNames: ["node"],
      registers,
    });
    this.nodeUp = new Gauge({
      name: "xmpp_lb_node_up",
      help: "1 when the node takes new users (up), 0 when down or draining",
      labelNames: ["node"],
      // With --workers each process probes on its own: the node is up if any sees it up.
      aggregator: "max",
      registers,
    });
    this.dialFailures = new Counter({
      name: "xmpp_lb_node_dial_failures_total",
      help: "Failed attempts to open a stream to a node for a client",
      labelNames: ["node"],
      registers,
    });
    this.streamErrors = new Counter({
      name: "xmpp_lb_stream_errors_total",
      help: "Stream errors the balancer sent to clients, by RFC 6120 condition",
      labelNames: ["condition"],
      registers,
    });
    this.relayBytes = new Counter({
      name: "xmpp_lb_relay_bytes_total",
      help: "Bytes relayed on forwarded connections after the decision (counted when a connection closes)",
      labelNames: ["direction"],
      registers,
    });
    this.redirectLoops = new Counter({
      name: "xmpp_lb_redirect_loops_total",
      help: "Clients that came back within the redirect-loop window after a redirect, and were forwarded instead",
      registers,
    });
    this.rejected = new Counter({
      name: "xmpp_lb_rejected_total",
      help: "Connections refused by a limit: max-connections, preauth-connections, address-connections, address-rate",
      labelNames: ["reason"],
      registers,
    });
    this.trafficLimited = new Counter({
      name: "xmpp_lb_traffic_limited_total",
      help: "Forwarded clients over --traffic-limit: disconnect (closed), throttle (each pause of reading)",
      labelNames: ["action"],
      registers,
    });
    this.authFailures = new Counter({
      name: "xmpp_lb_auth_failures_total",
      help: "Forwarded logins the node refused (its SASL <failure/>): no directory entry is kept for them",
      labelNames: ["node"],
      registers,
    });
    this.storeUp = new Gauge({
      name: "xmpp_lb_store_up",
      help: "1 while the cluster store answers; 0 while routing hashes over the last known nodes",
      aggregator: "min",
      registers,
    });
    this.storeDuration = new Histogram({
      name: "xmpp_lb_store_duration_seconds",
      help: "Round trips to the cluster store, by operation",
      labelNames: ["op"],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    this.storeErrors = new Counter({
      name: "xmpp_lb_store_errors_total",
      help: "Store operations that failed or timed out, by operation",
      labelNames: ["op"],
      registers,
    });
    this.nodes = new Gauge({
      name: "xmpp_lb_nodes",
      help: "Nodes known, by state (up, suspect, down, draining) and source (static: --node, registered: the store, dns or file: --discover)",
      labelNames: ["state", "source"],
      aggregator: "max",
      registers,
    });
    this.discoveryUp = new Gauge({
      name: "xmpp_lb_discovery_up",
      help: "1 while a discovery source (--discover) answers; 0 while it fails and its last known nodes stay in use",
      labelNames: ["source"],
      aggregator: "max",
      registers,
    });
    this.discoveryNodes = new Gauge({
      name: "xmpp_lb_discovery_nodes",
      help: "Nodes a discovery source (--discover) lists now (its last known list while it fails)",
      labelNames: ["source"],
      aggregator: "max",
      registers,
    });
    this.nodeState = new Gauge({
      name: "xmpp_lb_node_state",
      help: "1 for each node's current state (up, suspect, down, draining), 0 for the others",
      labelNames: ["node", "state"],
      aggregator: "max",
      registers,
    });
    this.domainNodesUp = new Gauge({
      name: "xmpp_lb_domain_nodes_up",
      help: "Nodes that take new users for each domain served (up, not draining, serving it)",
      labelNames: ["domain"],
      aggregator: "max",
      registers,
    });
    const preauth = (): number => this.preauthSource();
    this.preauthConnections = new Gauge({
      name: "xmpp_lb_preauth_connections",
      help: "Client connections in the pre-auth dialogue now: what --max-preauth-connections bounds",
      registers,
      // Read at each scrape: accepting a connection costs no metric update.
      collect() {
        this.set(preauth());
      },
    });
    this.preauthLimit = new Gauge({
      name: "xmpp_lb_preauth_connections_limit",
      help: "The --max-preauth-connections that xmpp_lb_preauth_connections is held to (0: no limit)",
      registers,
    });
    this.workerRestarts = new Counter({
      name: "xmpp_lb_worker_restarts_total",
      help: "Worker processes (--workers) that died and were started again",
      registers,
    });
    collectDefaultMetrics({ register: registry, prefix: "xmpp_lb_" });
  }

  /** Where `xmpp_lb_preauth_connections` reads the count (the admission's), and the limit it is held to. */
  countPreauth(source: () => number, limit: number): void {
    this.preauthSource = source;
    this.preauthLimit.set(limit);
  }
}
