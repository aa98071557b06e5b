import type { HostPort } from "../cluster/address.js";
import type { NodeTableHolder } from "../cluster/node-table-holder.js";
import type { NodeSource, NodeState } from "../cluster/node.js";
import type { ListenerConfig } from "../listener/listener.js";
import type { ClusterStore, NodeLoad } from "../store/store.js";
import type { DiscoverySourceStatus } from "./discovery/discovery.js";
import type { RateWindow, Rates } from "./rate-window.js";

/** The data path's processes: 1 without `--workers`. */
export interface WorkersStatus {
  configured: number;
  running: number;
  /** Workers that died and were started again. */
  restarts: number;
}

export interface ListenerStatus {
  name: string;
  kind: ListenerConfig["kind"];
  address: string;
  mode: ListenerConfig["mode"];
  phase: ListenerConfig["phase"];
  proxyProtocol: boolean;
  path?: string;
}

export interface NodeStatus {
  id: string;
  state: NodeState;
  source: NodeSource;
  zone: string | null;
  weight: number;
  /** Empty: every domain the balancer serves. */
  domains: readonly string[];
  maxconn: number | null;
  internal: string;
  external: string;
  /** Cluster-wide, as `least-conn` counts them: open forwarded connections plus recent redirects; null while the store does not answer. */
  sessions: number | null;
  /** Cluster-wide open forwarded connections whose login the node accepted (what `maxconn=` counts). */
  forwarded: number | null;
}

/** What `GET /status` answers, and the status page shows. */
export interface StatusReport {
  instance: { version: string; pid: number; nodeVersion: string; startedAt: string; uptimeSeconds: number; workers: WorkersStatus };
  /** Whether drain and undrain need the admin token. */
  admin: { tokenRequired: boolean };
  store: { kind: ClusterStore["kind"]; up: boolean };
  discovery: DiscoverySourceStatus[];
  listeners: ListenerStatus[];
  nodes: NodeStatus[];
  /** null when the counters could not be read (with --workers, a worker that did not answer). */
  rates: Rates | null;
}

export interface StatusSources {
  nodes: NodeTableHolder;
  store: ClusterStore;
  rates: RateWindow;
  discovery: () => DiscoverySourceStatus[];
  listeners: () => ListenerStatus[];
  workers: () => WorkersStatus;
  version: string;
  startedAt: number;
  tokenRequired: boolean;
}

const hostPort = ({ host, port }: HostPort): string => (host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`);

/** A listener as configured, at the address it is bound to (when this process holds it). */
export function listenerStatus(config: ListenerConfig, bound?: HostPort): ListenerStatus {
  const status: ListenerStatus = { name: config.name, kind: config.kind, address: hostPort(bound ?? config), mode: config.mode, phase: config.phase, proxyProtocol: config.proxyProtocol };
  if (config.path !== undefined) status.path = config.path;
  return status;
}

/** The instance as the status page shows it: the node table with each node's load, the store, discovery, listeners and rates. */
export async function statusReport(sources: StatusSources, now = Date.now()): Promise<StatusReport> {
  // Neither the store nor the counters may keep the page from showing the rest.
  const [loads, rates] = await Promise.all([sources.store.loads().catch((): ReadonlyMap<string, NodeLoad> | null => null), sources.rates.rates().catch((): Rates | null => null)]);
  const nodes = sources.nodes.table.nodes.map((n): NodeStatus => {
    const load = loads === null ? null : (loads.get(n.id) ?? { connections: 0, redirects: 0 });
    return {
      id: n.id,
      state: n.state,
      source: n.source,
      zone: n.zone ?? null,
      weight: n.weight,
      domains: n.domains,
      maxconn: n.maxconn ?? null,
      internal: hostPort(n.internal),
      external: hostPort(n.external),
      sessions: load === null ? null : load.connections + load.redirects,
      forwarded: load === null ? null : load.connections,
    };
  });
  return {
    instance: {
      version: sources.version,
      pid: process.pid,
      nodeVersion: process.version,
      startedAt: new Date(sources.startedAt).toISOString(),
      uptimeSeconds: Math.round((now - sources.startedAt) / 1000),
      workers: sources.workers(),
    },
    admin: { tokenRequired: sources.tokenRequired },
    store: { kind: sources.store.kind, up: sources.store.up },
    discovery: sources.discovery(),
    listeners: sources.listeners(),
    nodes,
    rates,
  };
}
