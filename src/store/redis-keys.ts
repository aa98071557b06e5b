/**
 * Key names. A directory entry is one key; the loads and the nodes each share
 * a hash tag ({loads}, {nodes}), so every command and script touches one key
 * or one slot, and the same code runs on standalone, Sentinel and Cluster.
 */
export interface RedisKeys {
  /** String: the node id holding a bare JID (escaped by `escapeJid`), with a TTL. */
  jid(bareJid: string): string;
  /**
   * Hash: which instances hold a connection of the JID open, and until when a
   * connection that broke may resume; in the slot of jid(bareJid), so one
   * script sees both. Null only where no such key can share the entry's slot
   * (a prefix with an unbalanced brace): the JID then keeps the whole window.
   */
  jidHolders(bareJid: string): string | null;
  /** String: the node that issued the JID's FAST token, expiring with the token. */
  fastToken(bareJid: string): string;
  /** Sorted set: live balancer instances, scored by when their counts expire (ms since epoch). */
  readonly instances: string;
  /** Hash: one instance's open forwarded connections per node id, with a TTL. */
  instanceLoads(instanceId: string): string;
  /** What `instanceLoads` puts before the instance id (the loads script builds the names it finds in `instances`). */
  readonly instanceLoadsPrefix: string;
  /** Hash: one instance's redirected JIDs (within the grace period) per node id, with a TTL. */
  instanceRedirects(instanceId: string): string;
  /** What `instanceRedirects` puts before the instance id. */
  readonly instanceRedirectsPrefix: string;
  /** Set: ids of registered nodes. */
  readonly nodeIndex: string;
  /** Hash: one registered node, with a TTL (its heartbeat). */
  node(nodeId: string): string;
  /** What `node` puts before the node id. */
  readonly nodePrefix: string;
  /** Set: ids of drained nodes, static or registered; persistent. */
  readonly drained: string;
  /** Pub/sub channel: any message means "the node list may have changed". */
  readonly nodesChannel: string;
}

export const DEFAULT_PREFIX = "xmpp-lb:";

const JID_ESCAPES: Record<string, string> = { "%": "%25", "{": "%7B", "}": "%7D" };

/**
 * A bare JID as it appears in its key: `{` and `}` percent-escaped (and `%`,
 * so two JIDs never share a key), so that no account name can form a Redis
 * Cluster hash tag and choose its slot (`{nodes}x@example.com` would land
 * beside the node list). Other characters stay, for people reading keys in
 * redis-cli.
 */
export function escapeJid(bareJid: string): string {
  return bareJid.replace(/[%{}]/g, (c) => JID_ESCAPES[c]!);
}

/** What Redis Cluster hashes of a key: the text between its first `{` and the next `}` when not empty, else the whole key. */
export function hashTag(key: string): string {
  const open = key.indexOf("{");
  if (open < 0) return key;
  const close = key.indexOf("}", open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

/** The first of `candidates` that Redis Cluster puts in `key`'s slot, or null. */
function sameSlot(key: string, candidates: readonly string[]): string | null {
  const tag = hashTag(key);
  return candidates.find((c) => hashTag(c) === tag) ?? null;
}

export function redisKeys(prefix: string = DEFAULT_PREFIX): RedisKeys {
  const instanceLoadsPrefix = `${prefix}{loads}:instance:`;
  const instanceRedirectsPrefix = `${prefix}{loads}:redirects:`;
  const nodePrefix = `${prefix}{nodes}:node:`;
  return {
    jid: (bareJid) => `${prefix}jid:${escapeJid(bareJid)}`,
    // Same slot: the entry's own hash tag when it has one (a prefix with a tag), else the whole entry key as the tag.
    jidHolders: (bareJid) => sameSlot(`${prefix}jid:${escapeJid(bareJid)}`, [`${prefix}holders:${escapeJid(bareJid)}`, `${prefix}holders:{${prefix}jid:${escapeJid(bareJid)}}`]),
    fastToken: (bareJid) => `${prefix}fast:${escapeJid(bareJid)}`,
    instances: `${prefix}{loads}:instances`,
    instanceLoads: (instanceId) => instanceLoadsPrefix + instanceId,
    instanceLoadsPrefix,
    instanceRedirects: (instanceId) => instanceRedirectsPrefix + instanceId,
    instanceRedirectsPrefix,
    nodeIndex: `${prefix}{nodes}:index`,
    node: (nodeId) => nodePrefix + nodeId,
    nodePrefix,
    drained: `${prefix}{nodes}:drained`,
    nodesChannel: `${prefix}{nodes}:changes`,
  };
}
