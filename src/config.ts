import { readFileSync } from "node:fs";
import { ConfigError } from "./errors.js";
import type { HostPort } from "./cluster/address.js";
import type { NodeSpec, ProxyVersion } from "./cluster/node.js";
import type { ListenerConfig, Mode, Phase } from "./listener/listener.js";
import type { LogFormat, LogLevel } from "./log.js";
import type { StrategyName } from "./router/strategies.js";
import type { Mechanism } from "./xmpp/sasl-identity.js";
import type { DiscoverySpec } from "./control/discovery/discovery-url.js";
import type { ClientTlsConfig } from "./listener/tls-context.js";
import type { TrafficLimit } from "./upstream/traffic-limit.js";
import { readAdminToken } from "./control/admin-access.js";
import { hostPort, oneOf } from "./flag-values.js";
import { flagFields, readFlags, type ConfigInput, type FlagValues } from "./flags.js";

export type { ConfigInput } from "./flags.js";

/**
 * The validated configuration of one balancer: what createBalancer() takes.
 * Field names follow the flags (src/flags.ts): camelCase, plural for a
 * repeatable flag, and `Ms` for a flag given in seconds, since the value here
 * is converted to milliseconds (`--affinity-ttl` is `affinityTtlMs`).
 */
export interface BalancerConfig {
  listeners: ListenerConfig[];
  /** Domains served: a stream `to` outside them gets `<host-unknown/>`. */
  domains: string[];
  /** Client-facing TLS: one or more certificate chains (ECDSA and RSA side by side), ciphers, lowest version. */
  tls?: ClientTlsConfig;
  allowPlaintext: boolean;
  nodes: NodeSpec[];
  /** `memory` (embedded, one instance) or a Redis URL (redis://, rediss://, redis-sentinel://, redis-cluster://). */
  store: string;
  /** Key prefix in Redis. */
  storePrefix: string;
  /** No login waits longer than this for the store; beyond it routing falls back to hashing. */
  storeTimeoutMs: number;
  strategy: StrategyName;
  /** Offered in this order; a -PLUS twin only where channel binding holds (channelBinding). */
  saslMechanisms: Mechanism[];
  /** STARTTLS from the balancer to nodes. */
  backendTls: boolean;
  /** When SCRAM-*-PLUS with tls-server-end-point is offered to clients. */
  channelBinding: "auto" | "tls-server-end-point" | "none";
  /** CA bundle that node certificates are verified against; without it they are not verified. */
  backendCa?: string;
  /** PROXY protocol header sent to nodes (a node's own `proxy=` wins). */
  backendProxyProtocol?: ProxyVersion;
  metrics?: HostPort;
  /** Names the admin endpoint answers to besides its own address (`--admin-host`): lower case, no trailing dot. */
  adminHosts: string[];
  /** Bearer token every admin POST must carry (`--admin-token`, or read from `--admin-token-file` at start). */
  adminToken?: string;
  logLevel: LogLevel;
  /** `--log-format`: `pretty` when stdout is a terminal, `json` otherwise, unless chosen. */
  logFormat: LogFormat;
  /** The balancer's zone: nodes of this zone are preferred. */
  zone?: string;
  /** How long a JID stays on its node after its last connection. */
  affinityTtlMs: number;
  /** A client (address + JID) back within this time after a redirect is forwarded instead; 0 disables. */
  redirectLoopWindowMs: number;
  loginTimeoutMs: number;
  dialTimeoutMs: number;
  /** Silence before TCP keepalive probes start, on both sides of a connection; 0 disables. No idle timeout otherwise. */
  tcpKeepaliveMs: number;
  maxPreauthBytes: number;
  maxHeaderBytes: number;
  healthIntervalMs: number;
  healthTimeoutMs: number;
  /** Processes running the data path (Node's cluster); 1: this process alone. */
  workers: number;
  /** Connection limits (0: none): in all, per client address at once and per second, in the pre-auth dialogue. */
  maxConnections: number;
  maxConnectionsPerAddress: number;
  maxConnectionRatePerAddress: number;
  maxPreauthConnections: number;
  tlsHandshakeTimeoutMs: number;
  /** Bytes a forwarded client may send per minute and per connection, and what happens beyond (`--traffic-limit`); none by default. */
  trafficLimit?: TrafficLimit;
  /** Failed logins (the node's SASL failure) per client address and per JID within the window, before logins are refused (0: no limit). */
  maxAuthFailuresPerAddress: number;
  maxAuthFailuresPerJid: number;
  authFailureWindowMs: number;
  /** After SIGTERM, how long forwarded sessions may run on before they are closed. */
  shutdownTimeoutMs: number;
  /** Consecutive failed probes that take an up node out. */
  healthFall: number;
  /** Consecutive good probes that bring a down node back. */
  healthRise: number;
  /** Membership sources followed at run time (`--discover`): DNS A/AAAA, DNS SRV, nodes files. */
  discovery: DiscoverySpec[];
  /** Resolvers for DNS discovery (`--dns-server`, as setServers() takes them); empty: the system's. */
  dnsServers: string[];
  /** DNS is re-resolved at the record TTL, never sooner than this (SRV, which has no TTL here: at this pace); nodes files are stat()ed this often. */
  discoverMinIntervalMs: number;
  /** …and never later than this. */
  discoverMaxIntervalMs: number;
  /** Origins a WebSocket client may come from (`--ws-origin`); empty: any. */
  wsOrigins: string[];
  /** WebSocket ping interval; a client that has not answered the previous ping is cut off (0: no pings). */
  wsPingIntervalMs: number;
}

/** `[starttls://|direct-tls://]HOST:PORT[,mode=M][,phase=P][,proxy]`, or `ws://HOST:PORT/PATH` and `wss://HOST:PORT/PATH` (RFC 7395). */
export function parseListen(text: string, defaults: { mode: Mode; phase: Phase; proxyProtocol: boolean }): ListenerConfig {
  const [address = "", ...options] = text.split(",");
  const match = /^(?:([a-z-]+):\/\/)?([^/]+)(\/.*)?$/.exec(address.trim());
  const kind = oneOf("listen", match?.[1] ?? "starttls", ["starttls", "direct-tls", "ws", "wss"] as const);
  const { host, port } = hostPort("listen", match?.[2] ?? "");
  const listener: ListenerConfig = { name: text, kind, host, port, mode: defaults.mode, phase: defaults.phase, proxyProtocol: defaults.proxyProtocol };
  const path = match?.[3];
  if (kind === "ws" || kind === "wss") listener.path = path ?? "/xmpp-websocket";
  else if (path !== undefined) throw new ConfigError(`--listen: a path is only for ws:// and wss:// listeners in '${text}'`);
  for (const option of options) {
    const [key, value = ""] = option.split("=", 2);
    if (key === "mode") listener.mode = oneOf("listen mode", value, ["redirect", "forward"] as const);
    else if (key === "phase") listener.phase = oneOf("listen phase", value, ["open", "login"] as const);
    else if (key === "proxy" && value === "") listener.proxyProtocol = true;
    else if (key === "forwarded-for" && value === "" && listener.path !== undefined) listener.forwardedFor = true;
    else if (key === "forwarded-for") throw new ConfigError(`--listen: forwarded-for is only for ws:// and wss:// listeners in '${text}'`);
    else throw new ConfigError(`--listen: unknown option '${key}' in '${text}' (mode=, phase=, proxy, forwarded-for)`);
  }
  return listener;
}

/** The CA bundle node certificates are verified against (--backend-ca), read at start. */
export function readBackendCa(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new ConfigError(`cannot read --backend-ca: ${(err as Error).message}`);
  }
}

/** Validates flag-shaped input into a BalancerConfig; throws ConfigError with one clear sentence. */
export function resolveConfig(input: ConfigInput): BalancerConfig {
  const values = readFlags(input);
  const fields = flagFields(values);
  if (fields.discoverMaxIntervalMs < fields.discoverMinIntervalMs) throw new ConfigError("--discover-max-interval must not be below --discover-min-interval");
  const listeners = values.listen.map((text) => parseListen(text, { mode: values.mode, phase: values.phase, proxyProtocol: values.proxyProtocol }));
  const config: BalancerConfig = { ...fields, listeners, domains: servedDomains(values.domain, fields) };
  const tls = clientTls(values, listeners);
  if (tls !== undefined) config.tls = tls;
  const adminToken = readAdminToken(values);
  if (adminToken !== undefined) config.adminToken = adminToken;
  return config;
}

/** `--domain`, and the domains the nodes and discovery sources name. */
function servedDomains(given: string[], { nodes, discovery }: Pick<BalancerConfig, "nodes" | "discovery">): string[] {
  const discovered = discovery.flatMap((d) => (d.kind === "file" ? [] : d.domains));
  const domains = [...new Set([...given, ...nodes.flatMap((n) => n.domains), ...discovered])];
  if (domains.length === 0) throw new ConfigError("--domain is required: the XMPP domain(s) this cluster serves");
  return domains;
}

/** `--tls-cert`/`--tls-key` pairs, `--tls-ciphers` and `--tls-min-version`; none, only with `--allow-plaintext` and no TLS listener. */
function clientTls(values: FlagValues, listeners: ListenerConfig[]): ClientTlsConfig | undefined {
  const { tlsCert, tlsKey } = values;
  if (tlsCert.length !== tlsKey.length) {
    throw new ConfigError("--tls-cert and --tls-key go together: one --tls-key for each --tls-cert, in the same order");
  }
  if (tlsCert.length === 0) {
    if (!values.allowPlaintext) throw new ConfigError("--tls-cert and --tls-key are required (or --allow-plaintext, for a test bed only)");
    const tlsListener = listeners.find((l) => l.kind === "direct-tls" || l.kind === "wss");
    if (tlsListener !== undefined) throw new ConfigError(`a ${tlsListener.kind}:// listener needs --tls-cert and --tls-key`);
    return undefined;
  }
  const tls: ClientTlsConfig = { certificates: tlsCert.map((certFile, i) => ({ certFile, keyFile: tlsKey[i]! })), minVersion: values.tlsMinVersion };
  const ciphers = values.tlsCiphers?.trim();
  if (ciphers !== undefined && ciphers !== "") tls.ciphers = ciphers;
  return tls;
}
