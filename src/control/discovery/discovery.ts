import { promises as dns } from "node:dns";
import type { NodeTableHolder } from "../../cluster/node-table-holder.js";
import type { BalancerConfig } from "../../config.js";
import type { DiscoverySpec } from "./discovery-url.js";
import type { Logger } from "../../log.js";
import type { Metrics } from "../../metrics.js";
import type { Membership } from "../membership.js";
import { DnsSource, type DnsResolver } from "./dns-source.js";
import { FileSource } from "./file-source.js";

/** How long start-up waits for the first answer of every discovery source before it goes on with what it has. */
const STARTUP_WAIT_MS = 3000;
/** Per query: how long one server has to answer, and how many tries. */
const RESOLVER_TIMEOUT_MS = 1500;
const RESOLVER_TRIES = 2;

export interface Discovery {
  /** Re-reads every nodes file and re-resolves every DNS source now (SIGHUP). */
  refresh(): void;
  /** Each source as given to `--discover`, with what it said last. */
  sources(): DiscoverySourceStatus[];
}

export interface DiscoverySourceStatus {
  source: string;
  kind: DiscoverySpec["kind"];
  /** `down`: it fails, and its last known nodes stay in use. */
  state: "unknown" | "up" | "down";
  /** The nodes it lists now (its last known list while it fails). */
  nodes: number;
}

export interface DiscoveryDeps {
  membership: Membership;
  /** The node table (SRV priorities follow the health of the lowest priority's nodes). */
  nodes: NodeTableHolder;
  metrics: Metrics;
  log: Logger;
  /** A resolver of the caller's own (tests); otherwise node:dns's, on --dns-server or the system's servers. */
  resolver?: DnsResolver;
}

/**
 * Starts every `--discover` source and has the membership follow it (its
 * stop() stops them); resolves once each has answered or failed once, or
 * after a few seconds, so the balancer starts on the nodes it found.
 */
export async function startDiscovery(config: BalancerConfig, deps: DiscoveryDeps): Promise<Discovery> {
  if (config.discovery.length === 0) return { refresh: () => {}, sources: () => [] };
  let resolver = deps.resolver;
  if (resolver === undefined && config.discovery.some((d) => d.kind !== "file")) {
    const own = new dns.Resolver({ timeout: RESOLVER_TIMEOUT_MS, tries: RESOLVER_TRIES });
    if (config.dnsServers.length > 0) own.setServers(config.dnsServers);
    resolver = own;
  }
  const common = { metrics: deps.metrics, log: deps.log };
  const sources = config.discovery.map((spec) =>
    spec.kind === "file"
      ? new FileSource(spec, { ...common, pollMs: config.discoverMinIntervalMs })
      : new DnsSource(spec, { ...common, resolver: resolver!, minIntervalMs: config.discoverMinIntervalMs, maxIntervalMs: config.discoverMaxIntervalMs, table: deps.nodes }),
  );
  for (const source of sources) deps.membership.follow(source);
  let waited: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(sources.map((s) => s.status.ready)), new Promise<void>((resolve) => (waited = setTimeout(resolve, STARTUP_WAIT_MS)))]);
  clearTimeout(waited);
  return {
    refresh: () => {
      deps.log.info({ sources: sources.map((s) => s.name) }, "re-reading the discovery sources");
      for (const source of sources) source.refresh();
    },
    sources: () => sources.map((s, i) => ({ source: s.name, kind: config.discovery[i]!.kind, state: s.status.current, nodes: s.status.nodes.length })),
  };
}
