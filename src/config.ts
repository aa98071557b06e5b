import { readFileSync } from "node:fs";
import os from "node:os";
import { ConfigError } from "./errors.js";
import { parseHostPort, type HostPort } from "./cluster/address.js";
import type { NodeSpec, ProxyVersion } from "./cluster/node.js";
import type { ListenerConfig, Mode, Phase } from "./listener/listener.js";
import { LOG_FORMATS, LOG_LEVELS, defaultLogFormat, type LogFormat, type LogLevel } from "./log.js";
import { STRATEGIES, type StrategyName } from "./router/strategies.js";
import { isSupportedMechanism, type Mechanism } from "./xmpp/sasl-identity.js";
import { normalizeDomain } from "./xmpp/jid.js";
import { parseRedisUrl } from "./store/redis-url.js";
import { parseDiscoverUrl, parseDnsServer, type DiscoverySpec } from "./control/discovery/discovery-url.js";
import { TLS_VERSIONS, type ClientTlsConfig } from "./listener/tls-context.js";
import { parseTrafficLimit, type TrafficLimit } from "./upstream/traffic-limit.js";
import { parseAdminHost, readAdminToken } from "./control/admin-access.js";


/** The validated configuration of one balancer: what createBalancer() takes. */
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
  /** Offered in this order; never a -PLUS mechanism (TLS ends at the balancer). */
  saslMechanisms: Mechanism[];
  /** STARTTLS from the balancer to nodes. */
  backendTls: boolean;
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
  affinityGraceMs: number;
  /** A client (address + JID) back within this time after a redirect is forwarded instead; 0 disables. */
  redirectLoopWindowMs: number;
  loginTimeoutMs: number;
  dialTimeoutMs: number;
  /** Silence before TCP keepalive probes start, on both sides of a connection; 0 disables. No idle timeout otherwise. */
  tcpKeepaliveMs: number;
  maxPreAuthBytes: number;
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

/** Flag-shaped input, as yargs (flags, env, --config JSON) or a test gives it. */
export interface ConfigInput {
  listen?: string | string[];
  mode?: string;
  phase?: string;
  domain?: string | string[];
  tlsCert?: string | string[];
  tlsKey?: string | string[];
  tlsCiphers?: string;
  tlsMinVersion?: string;
  trafficLimit?: string;
  allowPlaintext?: boolean;
  node?: Array<string | Record<string, unknown>> | string | Record<string, unknown>;
  store?: string;
  storePrefix?: string;
  storeTimeout?: number | string;
  strategy?: string;
  saslMechanisms?: string | string[];
  backendTls?: boolean;
  backendCa?: string;
  backendProxyProtocol?: string;
  proxyProtocol?: boolean;
  metrics?: string;
  adminHost?: string | string[];
  adminToken?: string;
  adminTokenFile?: string;
  logLevel?: string;
  logFormat?: string;
  zone?: string;
  affinityTtl?: number | string;
  redirectLoopWindow?: number | string;
  loginTimeout?: number | string;
  dialTimeout?: number | string;
  tcpKeepalive?: number | string;
  maxPreauthBytes?: number | string;
  maxHeaderBytes?: number | string;
  healthInterval?: number | string;
  healthTimeout?: number | string;
  healthFall?: number | string;
  shutdownTimeout?: number | string;
  maxConnections?: number | string;
  maxConnectionsPerAddress?: number | string;
  maxConnectionRatePerAddress?: number | string;
  maxPreauthConnections?: number | string;
  tlsHandshakeTimeout?: number | string;
  maxAuthFailuresPerAddress?: number | string;
  maxAuthFailuresPerJid?: number | string;
  authFailureWindow?: number | string;
  workers?: number | string;
  healthRise?: number | string;
  discover?: string | string[];
  dnsServer?: string | string[];
  discoverMinInterval?: number | string;
  discoverMaxInterval?: number | string;
  wsOrigin?: string | string[];
  wsPingInterval?: number | string;
}

export const DEFAULTS = {
  listen: "0.0.0.0:5222",
  mode: "forward" as Mode,
  phase: "login" as Phase,
  strategy: "least-conn" as StrategyName,
  saslMechanisms: ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"] as Mechanism[],
  logLevel: "info" as LogLevel,
  affinityTtlSeconds: 300,
  redirectLoopWindowSeconds: 30,
  loginTimeoutSeconds: 30,
  dialTimeoutSeconds: 5,
  tcpKeepaliveSeconds: 60,
  maxPreauthBytes: 65536,
  maxHeaderBytes: 8192,
  healthIntervalSeconds: 5,
  storePrefix: "xmpp-lb:",
  storeTimeoutSeconds: 0.25,
  healthTimeoutSeconds: 3,
  healthFall: 2,
  shutdownTimeoutSeconds: 30,
  maxConnections: 0,
  maxConnectionsPerAddress: 0,
  maxConnectionRatePerAddress: 0,
  maxPreauthConnections: 10_000,
  tlsHandshakeTimeoutSeconds: 10,
  tlsMinVersion: "TLSv1.2" as const,
  maxAuthFailuresPerAddress: 0,
  maxAuthFailuresPerJid: 0,
  authFailureWindowSeconds: 300,
  healthRise: 1,
  discoverMinIntervalSeconds: 1,
  discoverMaxIntervalSeconds: 30,
  // Below the 60 s idle timeout of common fronts (AWS ALB, nginx proxy_read_timeout).
  wsPingIntervalSeconds: 30,
};

/** Repeatable values may come as arrays, or (from env) as one string separated by spaces or ';'. */
function list<T>(value: T | T[] | undefined): T[] {
  if (value === undefined) return [];
  const items: T[] = Array.isArray(value) ? value : [value];
  return items.flatMap((v): T[] => (typeof v === "string" ? (v.split(/[\s;]+/).filter((s) => s !== "") as T[]) : [v]));
}

function oneOf<T extends string>(flag: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new ConfigError(`--${flag} must be one of ${allowed.join(", ")} (got '${value}')`);
  }
  return value as T;
}

export function seconds(flag: string, value: number | string | undefined, fallback: number, min = 0): number {
  const n = value === undefined ? fallback : Number(value);
  if (!Number.isFinite(n) || n < min) throw new ConfigError(`--${flag} must be a number of seconds >= ${min} (got '${value}')`);
  return Math.round(n * 1000);
}

function positiveInt(flag: string, value: number | string | undefined, fallback: number): number {
  const n = value === undefined ? fallback : Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new ConfigError(`--${flag} must be a positive integer (got '${value}')`);
  return n;
}

/** A limit: a whole number, 0 for none. */
function count(flag: string, value: number | string | undefined, fallback: number): number {
  const n = value === undefined ? fallback : Number(value);
  if (!Number.isInteger(n) || n < 0) throw new ConfigError(`--${flag} must be a whole number, 0 for no limit (got '${value}')`);
  return n;
}

function hostPort(flag: string, text: string): HostPort {
  const hp = parseHostPort(text);
  if (hp === null) throw new ConfigError(`--${flag}: '${text}' is not HOST:PORT`);
  return hp;
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

const NODE_KEYS = ["id", "internal", "external", "weight", "zone", "domains", "proxy", "maxconn", "ws", "ws-internal"];
const PROXY_VERSIONS = ["v1", "v2"] as const;

/** `id=ID,internal=HOST:PORT,external=HOST:PORT[,weight=N][,zone=Z][,domains=D1+D2]`, or the same as an object. */
export function parseNode(input: string | Record<string, unknown>): NodeSpec {
  const fields: Record<string, string> = {};
  const label = typeof input === "string" ? input : JSON.stringify(input);
  if (typeof input === "string") {
    for (const part of input.split(",")) {
      const eq = part.indexOf("=");
      if (eq <= 0) throw new ConfigError(`--node: '${part}' is not key=value in '${label}'`);
      fields[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
    }
  } else {
    for (const [k, v] of Object.entries(input)) fields[k] = Array.isArray(v) ? v.join("+") : String(v);
  }
  for (const key of Object.keys(fields)) {
    if (!NODE_KEYS.includes(key)) throw new ConfigError(`--node: unknown key '${key}' in '${label}' (${NODE_KEYS.join(", ")})`);
  }
  const { id, internal, external } = fields;
  if (!id || !/^[A-Za-z0-9._-]+$/.test(id)) throw new ConfigError(`--node: id= is required (letters, digits, . _ -) in '${label}'`);
  if (!internal) throw new ConfigError(`--node ${id}: internal=HOST:PORT is required`);
  const internalHp = hostPort("node internal", internal);
  const externalHp = external ? hostPort("node external", external) : internalHp;
  const weight = fields.weight === undefined ? 1 : Number(fields.weight);
  if (!Number.isFinite(weight) || weight <= 0) throw new ConfigError(`--node ${id}: weight must be a positive number`);
  const node: NodeSpec = {
    id,
    internal: internalHp,
    external: externalHp,
    weight,
    domains: (fields.domains ?? "").split("+").filter((d) => d !== "").map(normalizeDomain),
  };
  if (fields.zone) node.zone = fields.zone;
  if (fields.proxy) node.proxy = oneOf("node proxy", fields.proxy, PROXY_VERSIONS);
  if (fields.maxconn !== undefined) node.maxconn = positiveInt(`node ${id} maxconn`, fields.maxconn, 0);
  if (fields.ws) node.ws = webSocketUrl(`node ${id} ws`, fields.ws);
  if (fields["ws-internal"]) node.wsInternal = webSocketUrl(`node ${id} ws-internal`, fields["ws-internal"]);
  return node;
}

/** A node's WebSocket URL (ws:// or wss://), checked now rather than at the first dial. */
function webSocketUrl(flag: string, text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`--${flag}: '${text}' is not a URL`);
  }
  if (url.protocol !== "ws:" && url.protocol !== "wss:") throw new ConfigError(`--${flag}: '${text}' is not a ws:// or wss:// URL`);
  return url.toString();
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
  const mode = oneOf("mode", input.mode ?? DEFAULTS.mode, ["redirect", "forward"] as const);
  const phase = oneOf("phase", input.phase ?? DEFAULTS.phase, ["open", "login"] as const);
  const listenTexts = list(input.listen);
  const listeners = (listenTexts.length > 0 ? listenTexts : [DEFAULTS.listen]).map((t) => parseListen(t, { mode, phase, proxyProtocol: input.proxyProtocol === true }));

  const nodes = list(input.node).map(parseNode);
  const ids = new Set<string>();
  for (const n of nodes) {
    if (ids.has(n.id)) throw new ConfigError(`--node: id '${n.id}' is given twice`);
    ids.add(n.id);
  }

  const discovery = list(input.discover).map(parseDiscoverUrl);
  const discoverTexts = new Set<string>();
  for (const d of discovery) {
    if (discoverTexts.has(d.text)) throw new ConfigError(`--discover: '${d.text}' is given twice`);
    discoverTexts.add(d.text);
  }
  const dnsServers = list(input.dnsServer).map(parseDnsServer);
  const discoverMinIntervalMs = seconds("discover-min-interval", input.discoverMinInterval, DEFAULTS.discoverMinIntervalSeconds, 0.1);
  const discoverMaxIntervalMs = seconds("discover-max-interval", input.discoverMaxInterval, DEFAULTS.discoverMaxIntervalSeconds, 0.1);
  if (discoverMaxIntervalMs < discoverMinIntervalMs) throw new ConfigError("--discover-max-interval must not be below --discover-min-interval");

  const discoveredDomains = discovery.flatMap((d) => (d.kind === "file" ? [] : d.domains));
  const domains = [...new Set([...list(input.domain).map(normalizeDomain), ...nodes.flatMap((n) => n.domains), ...discoveredDomains])];
  if (domains.length === 0) throw new ConfigError("--domain is required: the XMPP domain(s) this cluster serves");

  const store = input.store ?? "memory";
  if (store !== "memory") parseRedisUrl(store); // a bad URL is one line and exit 2, now rather than at start

  const mechanisms = list<string>(input.saslMechanisms).map((m) => m.toUpperCase());
  for (const m of mechanisms) {
    if (m.endsWith("-PLUS")) throw new ConfigError(`--sasl-mechanisms: ${m} cannot be offered: TLS ends at the balancer, so channel binding cannot hold end to end`);
    if (!isSupportedMechanism(m)) throw new ConfigError(`--sasl-mechanisms: '${m}' is not supported (PLAIN, SCRAM-SHA-1, SCRAM-SHA-256, SCRAM-SHA-512, ANONYMOUS)`);
  }

  const certFiles = list(input.tlsCert);
  const keyFiles = list(input.tlsKey);
  if (certFiles.length !== keyFiles.length) {
    throw new ConfigError("--tls-cert and --tls-key go together: one --tls-key for each --tls-cert, in the same order");
  }
  const allowPlaintext = input.allowPlaintext === true;
  if (certFiles.length === 0 && !allowPlaintext) {
    throw new ConfigError("--tls-cert and --tls-key are required (or --allow-plaintext, for a test bed only)");
  }
  const tlsListener = certFiles.length === 0 ? listeners.find((l) => l.kind === "direct-tls" || l.kind === "wss") : undefined;
  if (tlsListener !== undefined) throw new ConfigError(`a ${tlsListener.kind}:// listener needs --tls-cert and --tls-key`);

  const config: BalancerConfig = {
    listeners,
    domains,
    allowPlaintext,
    nodes,
    store,
    storePrefix: input.storePrefix ?? DEFAULTS.storePrefix,
    storeTimeoutMs: seconds("store-timeout", input.storeTimeout, DEFAULTS.storeTimeoutSeconds, 0.01),
    strategy: oneOf("strategy", input.strategy ?? DEFAULTS.strategy, STRATEGIES),
    saslMechanisms: (mechanisms.length > 0 ? mechanisms : DEFAULTS.saslMechanisms) as Mechanism[],
    backendTls: input.backendTls === true,
    logLevel: oneOf("log-level", input.logLevel ?? DEFAULTS.logLevel, LOG_LEVELS),
    logFormat: input.logFormat === undefined ? defaultLogFormat() : oneOf("log-format", input.logFormat, LOG_FORMATS),
    affinityGraceMs: seconds("affinity-ttl", input.affinityTtl, DEFAULTS.affinityTtlSeconds),
    redirectLoopWindowMs: seconds("redirect-loop-window", input.redirectLoopWindow, DEFAULTS.redirectLoopWindowSeconds),
    loginTimeoutMs: seconds("login-timeout", input.loginTimeout, DEFAULTS.loginTimeoutSeconds, 0.1),
    dialTimeoutMs: seconds("dial-timeout", input.dialTimeout, DEFAULTS.dialTimeoutSeconds, 0.1),
    tcpKeepaliveMs: seconds("tcp-keepalive", input.tcpKeepalive, DEFAULTS.tcpKeepaliveSeconds),
    maxPreAuthBytes: positiveInt("max-preauth-bytes", input.maxPreauthBytes, DEFAULTS.maxPreauthBytes),
    maxHeaderBytes: positiveInt("max-header-bytes", input.maxHeaderBytes, DEFAULTS.maxHeaderBytes),
    healthIntervalMs: seconds("health-interval", input.healthInterval, DEFAULTS.healthIntervalSeconds, 0.1),
    healthTimeoutMs: seconds("health-timeout", input.healthTimeout, DEFAULTS.healthTimeoutSeconds, 0.1),
    workers: input.workers === "auto" ? os.availableParallelism() : positiveInt("workers", input.workers, 1),
    maxConnections: count("max-connections", input.maxConnections, DEFAULTS.maxConnections),
    maxConnectionsPerAddress: count("max-connections-per-address", input.maxConnectionsPerAddress, DEFAULTS.maxConnectionsPerAddress),
    maxConnectionRatePerAddress: count("max-connection-rate-per-address", input.maxConnectionRatePerAddress, DEFAULTS.maxConnectionRatePerAddress),
    maxPreauthConnections: count("max-preauth-connections", input.maxPreauthConnections, DEFAULTS.maxPreauthConnections),
    maxAuthFailuresPerAddress: count("max-auth-failures-per-address", input.maxAuthFailuresPerAddress, DEFAULTS.maxAuthFailuresPerAddress),
    maxAuthFailuresPerJid: count("max-auth-failures-per-jid", input.maxAuthFailuresPerJid, DEFAULTS.maxAuthFailuresPerJid),
    authFailureWindowMs: seconds("auth-failure-window", input.authFailureWindow, DEFAULTS.authFailureWindowSeconds, 1),
    tlsHandshakeTimeoutMs: seconds("tls-handshake-timeout", input.tlsHandshakeTimeout, DEFAULTS.tlsHandshakeTimeoutSeconds, 0.1),
    shutdownTimeoutMs: seconds("shutdown-timeout", input.shutdownTimeout, DEFAULTS.shutdownTimeoutSeconds),
    healthFall: positiveInt("health-fall", input.healthFall, DEFAULTS.healthFall),
    healthRise: positiveInt("health-rise", input.healthRise, DEFAULTS.healthRise),
    discovery,
    dnsServers,
    discoverMinIntervalMs,
    discoverMaxIntervalMs,
    wsOrigins: list<string>(input.wsOrigin),
    wsPingIntervalMs: seconds("ws-ping-interval", input.wsPingInterval, DEFAULTS.wsPingIntervalSeconds),
    adminHosts: list<string>(input.adminHost).map(parseAdminHost),
  };
  if (certFiles.length > 0) {
    config.tls = {
      certificates: certFiles.map((certFile, i) => ({ certFile, keyFile: keyFiles[i]! })),
      minVersion: oneOf("tls-min-version", input.tlsMinVersion ?? DEFAULTS.tlsMinVersion, TLS_VERSIONS),
    };
    if (input.tlsCiphers !== undefined && input.tlsCiphers.trim() !== "") config.tls.ciphers = input.tlsCiphers.trim();
  }
  if (input.trafficLimit !== undefined && input.trafficLimit !== "") config.trafficLimit = parseTrafficLimit(input.trafficLimit);
  if (input.backendCa !== undefined) config.backendCa = input.backendCa;
  if (input.backendProxyProtocol !== undefined) config.backendProxyProtocol = oneOf("backend-proxy-protocol", input.backendProxyProtocol, PROXY_VERSIONS);
  if (input.metrics !== undefined) config.metrics = hostPort("metrics", input.metrics);
  const adminToken = readAdminToken(input);
  if (adminToken !== undefined) config.adminToken = adminToken;
  if (input.zone !== undefined) config.zone = input.zone;
  return config;
}
