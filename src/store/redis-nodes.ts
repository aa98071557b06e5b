import { parseHostPort, type HostPort } from "../cluster/address.js";
import type { NodeSpec } from "../cluster/node.js";
import { ConfigError } from "../errors.js";
import type { RedisConnection } from "./redis-connection.js";
import type { RedisKeys } from "./redis-keys.js";
import type { StoredNode } from "./store.js";

/** What the node scripts need: where to run them, and the key names. */
export interface NodeRegistryContext {
  connection: RedisConnection;
  keys: RedisKeys;
}

/** The registered nodes (drain flags applied) and every drained id, static nodes' included. */
export interface NodeListing {
  registered: StoredNode[];
  drained: ReadonlySet<string>;
}

const NODE_ID = /^[A-Za-z0-9._-]+$/;

/** Writes or refreshes a node's record; announces it when it was absent or changed. Returns whether it was announced. */
export async function registerNode({ connection, keys }: NodeRegistryContext, spec: NodeSpec, ttlMs: number): Promise<boolean> {
  if (!NODE_ID.test(spec.id)) throw new ConfigError(`node id '${spec.id}' must be letters, digits, '.', '_' or '-'`);
  if (!(ttlMs > 0)) throw new ConfigError(`node ${spec.id}: the heartbeat TTL must be positive`);
  const fields = encodeNode(spec);
  const announced = await connection.run("register-node", (c) => c.xmppLbRegisterNode(keys.node(spec.id), keys.nodeIndex, Math.ceil(ttlMs), keys.nodesChannel, spec.id, ...fields));
  return announced === 1;
}

/** Removes a registered node's record (`remove`: its drain flag too). Returns whether anything was there. */
export async function deregisterNode({ connection, keys }: NodeRegistryContext, nodeId: string, event: "deregister" | "remove"): Promise<boolean> {
  const removed = await connection.run(`${event}-node`, (c) => c.xmppLbDeregisterNode(keys.node(nodeId), keys.nodeIndex, keys.drained, keys.nodesChannel, nodeId, event));
  return removed === 1;
}

/** Sets or clears a node's drain flag (for any id, registered or not). Returns whether it changed. */
export async function setDrained({ connection, keys }: NodeRegistryContext, nodeId: string, drained: boolean): Promise<boolean> {
  const event = drained ? "drain" : "undrain";
  return (await connection.run(event, (c) => c.xmppLbSetDrain(keys.drained, keys.nodesChannel, nodeId, event))) === 1;
}

/** Reads the registered nodes and the drain set; records that do not parse are left out. */
export async function readNodes({ connection, keys }: NodeRegistryContext): Promise<NodeListing> {
  const [records, drainedIds] = await connection.run("list-nodes", (c) => c.xmppLbListNodes(keys.nodeIndex, keys.drained, keys.nodePrefix, keys.nodesChannel));
  const drained = new Set(drainedIds);
  const registered = records
    .map(([id, fields]) => decodeNode(id, fields, drained))
    .filter((n): n is StoredNode => n !== null)
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { registered, drained };
}

/** Static nodes (in their order), then registered ones; a registered node replaces a static one of the same id while its heartbeat lasts. */
export function mergeNodes(staticNodes: readonly NodeSpec[], listing: NodeListing): StoredNode[] {
  const registeredIds = new Set(listing.registered.map((n) => n.id));
  const fixed = staticNodes
    .filter((n) => !registeredIds.has(n.id))
    .map((n): StoredNode => ({ ...n, draining: listing.drained.has(n.id), source: "static" }));
  return [...fixed, ...listing.registered];
}

/**
 * A node record's fields: id, internal, external (host:port, IPv6 in
 * brackets), weight, zone (absent: none), domains (comma-separated, empty:
 * all), and its WebSocket URLs `ws` and `ws-internal` (absent: none).
 */
function encodeNode(spec: NodeSpec): string[] {
  const fields = ["id", spec.id, "internal", formatHostPort(spec.internal), "external", formatHostPort(spec.external), "weight", String(spec.weight), "domains", spec.domains.join(",")];
  if (spec.zone !== undefined && spec.zone !== "") fields.push("zone", spec.zone);
  if (spec.ws !== undefined) fields.push("ws", spec.ws);
  if (spec.wsInternal !== undefined) fields.push("ws-internal", spec.wsInternal);
  return fields;
}

/** A WebSocket URL from a record, or undefined when absent or not ws:// or wss://. */
function webSocketField(text: string | undefined): string | undefined {
  return text !== undefined && /^wss?:\/\//i.test(text) ? text : undefined;
}

function decodeNode(id: string, flat: string[], drained: ReadonlySet<string>): StoredNode | null {
  const fields = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2) fields.set(flat[i]!, flat[i + 1]!);
  const internal = parseHostPort(fields.get("internal") ?? "");
  const externalText = fields.get("external");
  const external = externalText === undefined || externalText === "" ? internal : parseHostPort(externalText);
  const weight = Number(fields.get("weight") ?? "1");
  if (internal === null || external === null || !(weight > 0)) return null;
  const node: StoredNode = {
    id,
    internal,
    external,
    weight,
    domains: (fields.get("domains") ?? "").split(",").filter((d) => d !== ""),
    draining: drained.has(id),
    source: "registered",
  };
  const zone = fields.get("zone");
  if (zone !== undefined && zone !== "") node.zone = zone;
  const ws = webSocketField(fields.get("ws"));
  if (ws !== undefined) node.ws = ws;
  const wsInternal = webSocketField(fields.get("ws-internal"));
  if (wsInternal !== undefined) node.wsInternal = wsInternal;
  const lastHeartbeat = Number(fields.get("lastHeartbeat"));
  if (Number.isFinite(lastHeartbeat)) node.lastHeartbeat = lastHeartbeat;
  return node;
}

function formatHostPort({ host, port }: HostPort): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}
