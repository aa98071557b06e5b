import type { Options } from "yargs";
import type { NodeSpec } from "./cluster/node.js";
import { ConfigError } from "./errors.js";
import { hostPort, oneOf, positiveInt } from "./flag-values.js";
import { normalizeDomain } from "./xmpp/jid.js";

/** One `key=value` of a `--node` value; also a flag of `xmpp-lb node register` and a field of a nodes file. */
interface NodeKey {
  /** What the value looks like, as the `--node` syntax shows it. */
  value: string;
  /** Every node needs it; the other keys have a default or are off. */
  required?: true;
  number?: true;
  /** As a flag of `node register`. */
  describe: string;
}

/** The keys of a `--node` value, in the order its syntax lists them. */
export const NODE_KEYS = {
  id: { value: "ID", required: true, describe: "node id (letters, digits, . _ -)" },
  internal: { value: "HOST:PORT", required: true, describe: "HOST:PORT the balancers dial, and the probe too" },
  external: { value: "HOST:PORT", describe: "HOST:PORT redirects send clients to (default: internal)" },
  weight: { value: "N", number: true, describe: "relative share of new users (default 1)" },
  zone: { value: "Z", describe: "balancers of the same --zone prefer this node" },
  domains: { value: "D1+D2", describe: "D1+D2: the domains the node serves (default: all)" },
  proxy: { value: "v1|v2", describe: "the PROXY protocol header the node expects first (default: --backend-proxy-protocol)" },
  maxconn: { value: "N", number: true, describe: "forwarded connections whose login the node accepted, at most; a full node takes no new user" },
  ws: { value: "wss://URL", describe: "the node's WebSocket URL for clients: what a WebSocket redirect's see-other-uri carries" },
  "ws-internal": { value: "ws://URL", describe: "the node's WebSocket URL the balancers dial to forward WebSocket clients" },
} as const satisfies Record<string, NodeKey>;

export type NodeKeyName = keyof typeof NODE_KEYS;

const KEY_NAMES = Object.keys(NODE_KEYS) as NodeKeyName[];
export const PROXY_VERSIONS = ["v1", "v2"] as const;

/** `id=ID,internal=HOST:PORT[,external=HOST:PORT]…`: the `--node` syntax, optional keys in brackets. */
export function nodeSyntax(): string {
  return KEY_NAMES.map((name, i) => {
    const key: NodeKey = NODE_KEYS[name];
    const part = `${i === 0 ? "" : ","}${name}=${key.value}`;
    return key.required ? part : `[${part}]`;
  }).join("");
}

/** A key as a flag of `node register`. */
export function nodeKeyOption(name: NodeKeyName): Options {
  const key: NodeKey = NODE_KEYS[name];
  return { type: key.number ? "number" : "string", describe: key.describe, ...(key.required && { demandOption: true }) };
}

/** `id=ID,internal=HOST:PORT,…` (see nodeSyntax), or the same as an object. */
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
    if (!(KEY_NAMES as string[]).includes(key)) throw new ConfigError(`--node: unknown key '${key}' in '${label}' (${KEY_NAMES.join(", ")})`);
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
