import type { NodeSpec } from "../cluster/node.js";
import { RedisConnection, type StatusListener } from "./redis-connection.js";
import { DEFAULT_PREFIX, redisKeys } from "./redis-keys.js";
import { deregisterNode, readNodes, registerNode, setDrained, type NodeRegistryContext } from "./redis-nodes.js";
import { parseRedisUrl } from "./redis-url.js";
import type { StoredNode } from "./store.js";

export interface RedisRegistryOptions {
  /** Key prefix (default `xmpp-lb:`). */
  prefix?: string;
  /** No call waits longer than this for Redis (ms, default 1000: operator commands and heartbeats are not on a client's path). */
  timeoutMs?: number;
  /** Called after every Redis call: operation name, seconds taken, success. */
  observe?: (op: string, seconds: number, ok: boolean) => void;
}

/**
 * The node registry in Redis, for a heartbeat sidecar (`xmpp-lb node
 * register`) and the operator commands (`node list|drain|undrain|remove`).
 * Balancers see every change within moments (pub/sub). Every method rejects
 * with a StoreError (code XMPP_LB_STORE_UNAVAILABLE) when Redis cannot be
 * reached within `timeoutMs`.
 */
export class RedisRegistry {
  private readonly context: NodeRegistryContext;

  /** @throws ConfigError for a bad URL. */
  constructor(url: string, options: RedisRegistryOptions = {}) {
    this.context = {
      connection: new RedisConnection(parseRedisUrl(url), { timeoutMs: options.timeoutMs ?? 1000, observe: options.observe }),
      keys: redisKeys(options.prefix ?? DEFAULT_PREFIX),
    };
  }

  /** Whether the last Redis call or connection event succeeded (false until the first connection). */
  get up(): boolean {
    return this.context.connection.up;
  }

  /** Resolves once Redis has answered, or rejects with a StoreError after `timeoutMs`: await it at start-up, before the first call. */
  waitUntilUp(timeoutMs: number): Promise<void> {
    return this.context.connection.waitUntilUp(timeoutMs);
  }

  /** Calls `listener` once per transition: Redis lost (with the reason) or back. Returns an unsubscribe function. */
  onStatus(listener: StatusListener): () => void {
    return this.context.connection.onStatus(listener);
  }

  /**
   * Registers `spec`, or refreshes it: a heartbeat is registering again,
   * every `ttlMs / 3` say. The node disappears `ttlMs` after the last one.
   * Announced to the balancers only when it was absent or changed; returns
   * whether it was.
   */
  registerNode(spec: NodeSpec, ttlMs: number): Promise<boolean> {
    return registerNode(this.context, spec, ttlMs);
  }

  /** Removes a registered node now (its drain flag stays). Returns whether it was registered. */
  deregisterNode(nodeId: string): Promise<boolean> {
    return deregisterNode(this.context, nodeId, "deregister");
  }

  /** Deregisters a node and forgets its drain flag. Returns whether anything was there. */
  removeNode(nodeId: string): Promise<boolean> {
    return deregisterNode(this.context, nodeId, "remove");
  }

  /** The registered nodes with their drain flag and last heartbeat, by id. */
  async listNodes(): Promise<StoredNode[]> {
    return (await readNodes(this.context)).registered;
  }

  /** Every drained id, registered or static (static nodes live in the balancers' flags, not here). */
  async listDrained(): Promise<string[]> {
    return [...(await readNodes(this.context)).drained].sort();
  }

  /**
   * Cluster-wide load per node id: the sum of every live balancer instance's
   * published counts (open forwarded connections plus recent redirects). Read
   * only; a crashed instance's counts have expired with their keys.
   */
  async loads(): Promise<Map<string, number>> {
    const { connection, keys } = this.context;
    const perInstance = await connection.run("read-loads", async (c) => {
      const instances = await c.zrange(keys.instances, 0, -1);
      return Promise.all(instances.flatMap((id) => [c.hgetall(keys.instanceLoads(id)), c.hgetall(keys.instanceRedirects(id))]));
    });
    const total = new Map<string, number>();
    for (const counts of perInstance) {
      for (const [node, count] of Object.entries(counts)) total.set(node, (total.get(node) ?? 0) + (Number(count) || 0));
    }
    return total;
  }

  /** No new users for this node (registered or static), on every balancer; existing sessions continue. Returns whether it changed. */
  drain(nodeId: string): Promise<boolean> {
    return setDrained(this.context, nodeId, true);
  }

  undrain(nodeId: string): Promise<boolean> {
    return setDrained(this.context, nodeId, false);
  }

  close(): Promise<void> {
    return this.context.connection.close();
  }
}
