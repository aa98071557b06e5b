import os from "node:os";
import type { Options } from "yargs";
import type { BalancerConfig } from "./config.js";
import { parseAdminHost } from "./control/admin-access.js";
import { parseDiscoverUrl, parseDnsServer } from "./control/discovery/discovery-url.js";
import { ConfigError } from "./errors.js";
import { count, hostPort, list, oneOf, positiveInt, seconds } from "./flag-values.js";
import { TLS_VERSIONS } from "./listener/tls-context.js";
import { LOG_FORMATS, LOG_LEVELS, defaultLogFormat } from "./log.js";
import { PROXY_VERSIONS, nodeSyntax, parseNode } from "./node-keys.js";
import { STRATEGIES } from "./router/strategies.js";
import { parseRedisUrl } from "./store/redis-url.js";
import { parseTrafficLimit } from "./upstream/traffic-limit.js";
import { isSupportedMechanism, type Mechanism } from "./xmpp/sasl-identity.js";
import { normalizeDomain } from "./xmpp/jid.js";

/**
 * One flag of `xmpp-lb serve`. yargs reads it from the command line, from
 * XMPP_LB_<FLAG> and from the --config file (key: the flag's name);
 * resolveConfig() reads it from flag-shaped input (key: the name in camelCase).
 */
export interface Flag<In = unknown, Out = unknown> {
  type: "string" | "number" | "boolean";
  /** Repeatable: parse() gets a list (from the environment, one string of values separated by spaces or ';'). */
  array?: true;
  choices?: readonly string[];
  /** Taken when the flag is not given (a repeatable one: given no value), by yargs and resolveConfig() alike; --help shows it. */
  default?: In;
  describe: string;
  /** The BalancerConfig field parse()'s value fills; none when resolveConfig() reads the flag together with others. */
  field?: keyof BalancerConfig;
  /** The value given, else the default (else undefined), checked and converted; a wrong one is a ConfigError naming the flag. */
  parse(value: In, flag: string): Out;
}

/** The BalancerConfig fields a value of type V fits. */
type FieldFor<V> = { [K in keyof BalancerConfig]-?: [V] extends [BalancerConfig[K]] ? K : never }[keyof BalancerConfig];

/** Checks that a flag's field takes what its parse() returns. */
function flag<In, Out, F extends FieldFor<Out> = never>(def: Omit<Flag<In, Out>, "field"> & { field?: F }): Flag<In, Out> & { field?: F } {
  return def;
}

/** Seconds on the flag, milliseconds in the configuration: hence the `Ms` that ends the field's name. */
function secondsFlag<F extends FieldFor<number>>(def: { field: F; default: number; min?: number; describe: string }): Flag<number | string, number> & { field: F; default: number } {
  const { min, ...rest } = def;
  return { type: "number", ...rest, parse: (value, name) => seconds(name, value, def.default, min) };
}

/** A limit: a whole number, 0 for none. */
function limitFlag<F extends FieldFor<number>>(def: { field: F; default: number; describe: string }): Flag<number | string, number> & { field: F; default: number } {
  return { type: "number", ...def, parse: (value, name) => count(name, value, def.default) };
}

function positiveFlag<F extends FieldFor<number>>(def: { field: F; default: number; describe: string }): Flag<number | string, number> & { field: F; default: number } {
  return { type: "number", ...def, parse: (value, name) => positiveInt(name, value, def.default) };
}

function choiceFlag<T extends string, F extends FieldFor<T> = never>(def: { field?: F; choices: readonly T[]; default: T; describe: string }): Flag<string, T> & { field?: F; default: T } {
  return { type: "string", ...def, parse: (value, name) => oneOf(name, value, def.choices) };
}

/** Off unless given. */
function switchFlag<F extends FieldFor<boolean> = never>(def: { field?: F; describe: string }): Flag<boolean, boolean> & { field?: F } {
  return { type: "boolean", default: false, ...def, parse: (value) => value === true };
}

/** A string taken as it is; none by default. */
function textFlag<F extends FieldFor<string | undefined> = never>(def: { field?: F; describe: string }): Flag<string | undefined, string | undefined> & { field?: F } {
  return { type: "string", ...def, parse: (value) => value };
}

function listFlag<Item, Out, F extends FieldFor<Out> = never>(def: { field?: F; default?: Item[]; describe: string; parse: (items: Item[], flag: string) => Out }): Flag<Item[], Out> & { field?: F } {
  return { type: "string", array: true, ...def };
}

/** The items, each a different one (by `key`). */
function noneTwice<T>(items: T[], key: (item: T) => string, twice: (key: string) => string): T[] {
  const seen = new Set<string>();
  for (const item of items) {
    if (seen.has(key(item))) throw new ConfigError(twice(key(item)));
    seen.add(key(item));
  }
  return items;
}

function mechanism(name: string): Mechanism {
  const m = name.toUpperCase();
  if (m.endsWith("-PLUS")) throw new ConfigError(`--sasl-mechanisms: ${m} is not a mechanism of its own: -PLUS is offered beside its SCRAM mechanism where channel binding holds (--channel-binding)`);
  if (!isSupportedMechanism(m)) throw new ConfigError(`--sasl-mechanisms: '${m}' is not supported (PLAIN, SCRAM-SHA-1, SCRAM-SHA-256, SCRAM-SHA-512, ANONYMOUS)`);
  return m;
}

/**
 * Every flag of `xmpp-lb serve`, in --help order. A field's name is the flag's
 * in camelCase, plural for a repeatable flag (`--node`: `nodes`), with `Ms`
 * for a flag in seconds (`--affinity-ttl`: `affinityTtlMs`).
 */
export const SERVE_FLAGS = {
  listen: listFlag({ default: ["0.0.0.0:5222"], describe: "HOST:PORT (STARTTLS), direct-tls://HOST:PORT (XEP-0368), or ws://HOST:PORT/PATH and wss://HOST:PORT/PATH (RFC 7395), with optional ,mode=redirect|forward ,phase=open|login ,proxy; repeatable", parse: (texts: string[]) => texts }),
  mode: choiceFlag({ choices: ["redirect", "forward"] as const, default: "forward", describe: "redirect with see-other-host, or forward and relay" }),
  phase: choiceFlag({ choices: ["open", "login"] as const, default: "login", describe: "decide at the stream header (when it carries from=) or at the SASL <auth/>" }),
  domain: listFlag({ describe: "XMPP domain served; repeatable (a stream to any other gets <host-unknown/>)", parse: (domains: string[]) => domains.map(normalizeDomain) }),
  "tls-cert": listFlag({ describe: "PEM certificate (chain) for client TLS; repeatable, e.g. an ECDSA and an RSA chain, each with its --tls-key in the same order", parse: (files: string[]) => files }),
  "tls-key": listFlag({ describe: "PEM private key for client TLS; repeatable, one per --tls-cert", parse: (files: string[]) => files }),
  "tls-ciphers": textFlag({ describe: "OpenSSL cipher string for client TLS (default: ECDHE with AES-GCM or ChaCha20-Poly1305 only; TLS 1.3 suites are kept unless the string names some)" }),
  "tls-min-version": choiceFlag({ choices: TLS_VERSIONS, default: "TLSv1.2", describe: "lowest TLS version for clients" }),
  "allow-plaintext": switchFlag({ field: "allowPlaintext", describe: "allow logins without TLS (test beds only)" }),
  node: listFlag({
    field: "nodes",
    describe: `${nodeSyntax()}; repeatable`,
    parse: (nodes: Array<string | Record<string, unknown>>) => noneTwice(nodes.map(parseNode), (n) => n.id, (id) => `--node: id '${id}' is given twice`),
  }),
  discover: listFlag({
    field: "discovery",
    describe: "nodes from DNS or a file, followed at run time: dns://NAME:PORT (every A/AAAA record), dns+srv://_xmpp-client._tcp.NAME (SRV: target, port, priority, weight), with ?external=%h.example.com:5222; or file:///PATH (a JSON array of --node values); repeatable",
    parse: (urls: string[]) => noneTwice(urls.map(parseDiscoverUrl), (d) => d.text, (text) => `--discover: '${text}' is given twice`),
  }),
  "dns-server": listFlag({ field: "dnsServers", describe: "IP[:PORT] of the resolver for --discover (Consul: 127.0.0.1:8600); default: the system's; repeatable", parse: (servers: string[]) => servers.map(parseDnsServer) }),
  "discover-min-interval": secondsFlag({ field: "discoverMinIntervalMs", default: 1, min: 0.1, describe: "seconds: DNS is re-resolved at the record TTL but never sooner (SRV: at this pace); nodes files are checked this often" }),
  "discover-max-interval": secondsFlag({ field: "discoverMaxIntervalMs", default: 30, min: 0.1, describe: "seconds: DNS is re-resolved at least this often, whatever the TTL; the longest retry pause while DNS fails" }),
  "ws-origin": listFlag({ field: "wsOrigins", describe: "an Origin WebSocket clients may come from (e.g. https://chat.example.com); repeatable; none: any origin", parse: (origins: string[]) => origins }),
  // Below the 60 s idle timeout of common fronts (AWS ALB, nginx proxy_read_timeout).
  "ws-ping-interval": secondsFlag({ field: "wsPingIntervalMs", default: 30, describe: "seconds between WebSocket pings; a client that did not answer the last one is cut off (0: no pings)" }),
  store: flag({
    type: "string",
    field: "store",
    default: "memory",
    describe: "cluster membership store: memory (embedded, one instance) or redis://[:password@]host:port[/db], rediss://..., redis-sentinel://host:port,host:port/master[/db], redis-cluster://host:port,host:port",
    parse: (store: string) => {
      if (store !== "memory") parseRedisUrl(store); // a bad URL is one line and exit 2, now rather than at start
      return store;
    },
  }),
  "store-prefix": flag({ type: "string", field: "storePrefix", default: "xmpp-lb:", describe: "key prefix in Redis (several clusters can share one Redis)", parse: (prefix: string) => prefix }),
  "store-timeout": secondsFlag({ field: "storeTimeoutMs", default: 0.25, min: 0.01, describe: "seconds a login may wait for the store; beyond it routing hashes over the last known nodes" }),
  strategy: choiceFlag({ field: "strategy", choices: STRATEGIES, default: "least-conn", describe: "how a new user's node is chosen" }),
  "sasl-mechanisms": listFlag({ field: "saslMechanisms", default: ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"], describe: "SASL mechanisms offered, in order (-PLUS follows --channel-binding)", parse: (names: string[]) => names.map(mechanism) }),
  "backend-tls": switchFlag({ field: "backendTls", describe: "STARTTLS from the balancer to nodes" }),
  "channel-binding": choiceFlag({
    field: "channelBinding",
    choices: ["auto", "tls-server-end-point", "none"] as const,
    default: "auto",
    describe: "when SCRAM-*-PLUS (tls-server-end-point) is offered: auto (the nodes present the certificate the client got, over --backend-tls), tls-server-end-point (the nodes are told the balancer's certificate), none",
  }),
  "proxy-protocol": switchFlag({ describe: "every listener reads a PROXY protocol header (v1 or v2, as an NLB/ELB or HAProxy sends it) first; per listener: ,proxy" }),
  "backend-proxy-protocol": flag({
    type: "string",
    field: "backendProxyProtocol",
    choices: PROXY_VERSIONS,
    describe: "send nodes a PROXY protocol header with the client's address (per node: proxy=v1|v2)",
    parse: (version: string | undefined, name: string) => (version === undefined ? undefined : oneOf(name, version, PROXY_VERSIONS)),
  }),
  "backend-ca": textFlag({ field: "backendCa", describe: "CA bundle to verify node certificates with (--backend-tls)" }),
  zone: textFlag({ field: "zone", describe: "this balancer's zone: nodes with the same zone= are preferred" }),
  "affinity-ttl": secondsFlag({ field: "affinityTtlMs", default: 300, describe: "seconds a JID stays on its node after its last connection (resumption window)" }),
  "redirect-loop-window": secondsFlag({ field: "redirectLoopWindowMs", default: 30, describe: "seconds after a redirect in which the same client and JID coming back is forwarded instead (0: off)" }),
  "login-timeout": secondsFlag({ field: "loginTimeoutMs", default: 30, min: 0.1, describe: "seconds a client has to reach the decision" }),
  "dial-timeout": secondsFlag({ field: "dialTimeoutMs", default: 5, min: 0.1, describe: "seconds to connect to a node and open its stream" }),
  "tcp-keepalive": secondsFlag({ field: "tcpKeepaliveMs", default: 60, describe: "seconds of silence before TCP keepalive probes, both sides (0: off); no idle timeout otherwise" }),
  "max-preauth-bytes": positiveFlag({ field: "maxPreauthBytes", default: 65536, describe: "bytes a client may send before the decision" }),
  "max-header-bytes": positiveFlag({ field: "maxHeaderBytes", default: 8192, describe: "largest stream header accepted" }),
  "health-interval": secondsFlag({ field: "healthIntervalMs", default: 5, min: 0.1, describe: "seconds between XMPP probes of each node" }),
  "health-timeout": secondsFlag({ field: "healthTimeoutMs", default: 3, min: 0.1, describe: "seconds a probe may take" }),
  workers: flag({
    type: "string",
    field: "workers",
    default: "1",
    describe: "processes running the data path: a number, or auto (one per core); they share the listeners, one store, the limits' counts (the limits hold over all workers) and one /metrics",
    parse: (workers: number | string, name: string) => (workers === "auto" ? os.availableParallelism() : positiveInt(name, workers, 1)),
  }),
  "max-connections": limitFlag({ field: "maxConnections", default: 0, describe: "client connections open at once, in all (0: no limit); beyond it new ones are refused" }),
  "max-connections-per-address": limitFlag({ field: "maxConnectionsPerAddress", default: 0, describe: "client connections open at once per client address (0: no limit)" }),
  "max-connection-rate-per-address": limitFlag({ field: "maxConnectionRatePerAddress", default: 0, describe: "new connections per client address per second (0: no limit)" }),
  "max-preauth-connections": limitFlag({ field: "maxPreauthConnections", default: 10_000, describe: "connections still logging in, in all (0: no limit): a slowloris wave cannot take the slots of sessions" }),
  "max-auth-failures-per-address": limitFlag({ field: "maxAuthFailuresPerAddress", default: 0, describe: "failed logins per client address within --auth-failure-window before its logins are refused (0: no limit)" }),
  "max-auth-failures-per-jid": limitFlag({ field: "maxAuthFailuresPerJid", default: 0, describe: "failed logins per account within --auth-failure-window before its logins are refused (0: no limit)" }),
  "auth-failure-window": secondsFlag({ field: "authFailureWindowMs", default: 300, min: 1, describe: "seconds failed logins are remembered" }),
  "traffic-limit": flag({
    type: "string",
    field: "trafficLimit",
    describe: "what a forwarded client may send: [bin:]BYTES_PER_MINUTE[:BYTES_PER_CONNECTION[:disc|throttle]] (k, m, g suffixes; 0: no limit), e.g. 1m:0:throttle; off by default",
    parse: (text: string | undefined) => (text === undefined || text === "" ? undefined : parseTrafficLimit(text)),
  }),
  "tls-handshake-timeout": secondsFlag({ field: "tlsHandshakeTimeoutMs", default: 10, min: 0.1, describe: "seconds a TLS handshake (STARTTLS or direct) may take" }),
  "shutdown-timeout": secondsFlag({ field: "shutdownTimeoutMs", default: 30, describe: "seconds forwarded sessions may run on after SIGTERM before they are closed" }),
  "health-fall": positiveFlag({ field: "healthFall", default: 2, describe: "failed probes in a row that take an up node out" }),
  "health-rise": positiveFlag({ field: "healthRise", default: 1, describe: "good probes in a row that bring a down node back" }),
  metrics: flag({
    type: "string",
    field: "metrics",
    describe: "HOST:PORT for the status page (/, and its JSON at /status), /metrics, /healthz and /nodes (e.g. 127.0.0.1:9102)",
    parse: (address: string | undefined, name: string) => (address === undefined ? undefined : hostPort(name, address)),
  }),
  "admin-host": listFlag({ field: "adminHosts", describe: "a name the admin endpoint answers to besides its own address (e.g. lb1.internal, at any port); repeatable", parse: (hosts: string[]) => hosts.map(parseAdminHost) }),
  "admin-token": textFlag({ describe: "bearer token the admin endpoint's POSTs (drain, undrain) must carry" }),
  "admin-token-file": textFlag({ describe: "file holding the --admin-token, read at start" }),
  "log-level": choiceFlag({ field: "logLevel", choices: LOG_LEVELS, default: "info", describe: "how much is logged (silent: nothing)" }),
  "log-format": flag({
    type: "string",
    field: "logFormat",
    choices: LOG_FORMATS,
    describe: "json (one object per line) or pretty (one readable line per event); default: pretty on a terminal, else json",
    // No fixed default: it depends on where stdout goes.
    parse: (format: string | undefined, name: string) => (format === undefined ? defaultLogFormat() : oneOf(name, format, LOG_FORMATS)),
  }),
};

type Flags = typeof SERVE_FLAGS;
type CamelCase<S extends string> = S extends `${infer Head}-${infer Tail}` ? `${Head}${Capitalize<CamelCase<Tail>>}` : S;
/** What input may give for a flag: a repeatable one takes one value or a list. */
type Given<In> = NonNullable<In> extends ReadonlyArray<infer Item> ? Item | Item[] : NonNullable<In>;

/** Flag-shaped input, as yargs (flags, env, --config JSON) or a library user gives it: keys are the flags' names in camelCase. */
export type ConfigInput = { [K in keyof Flags as CamelCase<K>]?: Given<Parameters<Flags[K]["parse"]>[0]> };
/** Every flag's value, checked and converted, by the flag's name in camelCase. */
export type FlagValues = { [K in keyof Flags as CamelCase<K>]: ReturnType<Flags[K]["parse"]> };
/** The BalancerConfig fields that are one flag's value each. */
export type FlagField = NonNullable<Flags[keyof Flags]["field"]>;

/** As yargs also writes each flag into its arguments (`max-preauth-bytes`: `maxPreauthBytes`). */
const camelCase = (name: string): string => name.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase());
const FLAG_LIST = Object.entries(SERVE_FLAGS) as Array<[string, Flag]>;

/** A repeatable flag given no value (an empty XMPP_LB_LISTEN, say) takes its default too. */
function valueOrDefault(flag: Flag, given: unknown): unknown {
  if (flag.array !== true) return given === undefined ? flag.default : given;
  const items = list(given);
  return items.length > 0 ? items : (flag.default ?? []);
}

/** Reads every flag from flag-shaped input, in table order; throws the first ConfigError. */
export function readFlags(input: ConfigInput): FlagValues {
  const values: Record<string, unknown> = {};
  for (const [name, flag] of FLAG_LIST) values[camelCase(name)] = flag.parse(valueOrDefault(flag, (input as Record<string, unknown>)[camelCase(name)]), name);
  return values as FlagValues;
}

/** The configuration's fields that are one flag's value each; a flag not given and without a default leaves its field out. */
export function flagFields(values: FlagValues): Pick<BalancerConfig, FlagField> {
  const fields: Record<string, unknown> = {};
  for (const [name, flag] of FLAG_LIST) {
    const value = (values as Record<string, unknown>)[camelCase(name)];
    if (flag.field !== undefined && value !== undefined) fields[flag.field] = value;
  }
  return fields as Pick<BalancerConfig, FlagField>;
}

/** A flag as yargs takes it. */
export function yargsOption(flag: Flag): Options {
  const { type, array, choices, default: value, describe } = flag;
  return { type, describe, ...(array && { array }), ...(choices && { choices }), ...(value !== undefined && { default: value }) };
}

/** The options of `xmpp-lb serve`. */
export function serveOptions(): Record<string, Options> {
  return Object.fromEntries(FLAG_LIST.map(([name, flag]) => [name, yargsOption(flag)]));
}
