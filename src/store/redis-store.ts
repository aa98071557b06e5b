import { randomBytes } from "node:crypto";
import os from "node:os";
import type { NodeSpec } from "../cluster/node.js";
import { StoreError } from "../errors.js";
import { RedisConnection, type StatusListener } from "./redis-connection.js";
import { DEFAULT_PREFIX, redisKeys, type RedisKeys } from "./redis-keys.js";
import { Leases } from "./redis-leases.js";
import { ClusterLoads } from "./redis-loads.js";
import { NodeWatch } from "./redis-node-watch.js";
import { mergeNodes, readNodes, setDrained, type NodeRegistryContext } from "./redis-nodes.js";
import { parseRedisUrl } from "./redis-url.js";
import type { Claim, ClusterStore, NodeLoad, StoredNode, StoreOptions } from "./store.js";

export interface RedisStoreOptions extends StoreOptions {
  /** Key prefix (default `xmpp-lb:`): several balancer clusters can share one Redis. */
  prefix?: string;
  /** No call waits longer than this for Redis (ms, default 250). */
  timeoutMs?: number;
  /** Nodes from --node flags, listed with the registered ones. */
  staticNodes?: readonly NodeSpec[];
  /** Names this instance's load counts (default host:pid:random). */
  instanceId?: string;
  /** Safety-net re-read of the node list for watchers (ms, default 5000). */
  nodeRefreshMs?: number;
  /** How often the cluster-wide loads are published and summed (ms, default 1000). */
  loadsRefreshMs?: number;
  /** Called after every Redis call: operation name, seconds taken, success (for metrics). */
  observe?: (op: string, seconds: number, ok: boolean) => void;
}

/** Entries live at least this long, so a claim outlasts a login even with --affinity-ttl 0. */
const MIN_ENTRY_TTL_MS = 1000;

/**
 * The cluster store on Redis (standalone, Sentinel or Cluster): the session
 * directory shared by every balancer instance, cluster-wide loads, registered
 * nodes and drain flags. See the README's "Redis schema" for the keys.
 *
 * When Redis is unreachable every method rejects within `timeoutMs` with a
 * StoreError (code XMPP_LB_STORE_UNAVAILABLE), `up` turns false and the
 * status listeners hear it once; ioredis reconnects by itself (backing off to
 * one attempt a second) and the store carries on, with the leases of open
 * connections written again.
 */
export class RedisStore implements ClusterStore {
  readonly kind = "redis";
  readonly instanceId: string;
  private readonly connection: RedisConnection;
  private readonly keys: RedisKeys;
  private readonly registry: NodeRegistryContext;
  private readonly entryTtlMs: number;
  private readonly staticNodes: readonly NodeSpec[];
  private readonly leases: Leases;
  private readonly clusterLoads: ClusterLoads;
  private readonly nodeWatch: NodeWatch;
  private closed = false;

  /** @throws ConfigError for a bad URL. */
  constructor(url: string, options: RedisStoreOptions) {
    this.connection = new RedisConnection(parseRedisUrl(url), { timeoutMs: options.timeoutMs ?? 250, observe: options.observe });
    this.keys = redisKeys(options.prefix ?? DEFAULT_PREFIX);
    this.registry = { connection: this.connection, keys: this.keys };
    this.instanceId = options.instanceId ?? `${os.hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
    this.entryTtlMs = Math.max(Math.round(options.affinityTtlMs), MIN_ENTRY_TTL_MS);
    this.staticNodes = [...(options.staticNodes ?? [])];
    this.leases = new Leases(this.connection, this.keys, this.entryTtlMs, this.instanceId);
    this.clusterLoads = new ClusterLoads(this.connection, this.keys, this.instanceId, this.entryTtlMs, options.loadsRefreshMs ?? 1000);
    this.nodeWatch = new NodeWatch(() => this.listNodes(), options.nodeRefreshMs ?? 5000, (refresh) =>
      this.connection.listen(this.keys.nodesChannel, refresh, refresh),
    );
  }

  /** Whether the last Redis call or connection event succeeded (false until the first connection). */
  get up(): boolean {
    return this.connection.up;
  }

  /** Resolves once Redis has answered, or rejects with a StoreError after `timeoutMs`: await it at start-up, before the first call. */
  waitUntilUp(timeoutMs: number): Promise<void> {
    return this.connection.waitUntilUp(timeoutMs);
  }

  /** Calls `listener` once per transition: Redis lost (with the reason) or back. Returns an unsubscribe function. */
  onStatus(listener: StatusListener): () => void {
    return this.connection.onStatus(listener);
  }

  async listNodes(): Promise<StoredNode[]> {
    return mergeNodes(this.staticNodes, await readNodes(this.registry));
  }

  /** Also calls back once right after subscribing, with the list as it is then. */
  watchNodes(onChange: (nodes: StoredNode[]) => void): () => void {
    if (this.closed) return () => {};
    return this.nodeWatch.add(onChange);
  }

  async lookup(jid: string): Promise<string | null> {
    return this.connection.run("lookup", (c) => c.get(this.keys.jid(jid)));
  }

  async tokenIssued(jid: string, nodeId: string, expiresAt: number): Promise<void> {
    const ttlMs = Math.round(expiresAt - Date.now());
    if (ttlMs <= 0) return;
    await this.connection.run("token-issued", (c) => c.set(this.keys.fastToken(jid), nodeId, "PX", ttlMs));
  }

  async tokenNode(jid: string): Promise<string | null> {
    return this.connection.run("token-node", (c) => c.get(this.keys.fastToken(jid)));
  }

  async claim(jid: string, nodeId: string, replace: readonly string[]): Promise<Claim> {
    const key = this.keys.jid(jid);
    const [owner, wrote] = await this.connection.run("claim", (c) => c.xmppLbClaim(key, this.keys.jidHolders(jid) ?? key, nodeId, this.entryTtlMs, ...replace));
    if (wrote === 1) this.leases.claimed(jid, nodeId);
    return { owner, wrote: wrote === 1 };
  }

  /** Deletes only this instance's own unconfirmed claim, while no connection of the JID is open here. */
  async release(jid: string, nodeId: string): Promise<void> {
    this.ensureOpen("release");
    if (!this.leases.releasable(jid, nodeId)) return;
    await this.connection.run("release", (c) => c.xmppLbRelease(this.keys.jid(jid), nodeId));
  }

  /** Counted here even when Redis is away (the rejection only says the lease could not be written yet). */
  async connectionOpened(jid: string | null, nodeId: string): Promise<void> {
    this.ensureOpen("connection-opened");
    this.clusterLoads.local.opened(nodeId);
    if (jid !== null && this.leases.opened(jid, nodeId)) await this.leases.holdOpen("connection-opened", jid, nodeId);
  }

  async connectionClosed(jid: string | null, nodeId: string, clean = false): Promise<void> {
    this.ensureOpen("connection-closed");
    this.clusterLoads.local.closed(nodeId);
    if (jid === null) return;
    if (this.leases.closed(jid)) await this.leases.letGo("connection-closed", jid, nodeId, true, clean);
    // Another connection of the JID is open here; this one may still resume, until a lease from now.
    else if (!clean) await this.leases.letGo("connection-broken", jid, nodeId, false, false);
  }

  async redirected(jid: string | null, nodeId: string): Promise<void> {
    this.ensureOpen("redirected");
    this.clusterLoads.local.redirected(nodeId, jid);
    if (jid === null) return;
    this.leases.confirmed(jid);
    await this.leases.letGo("redirected", jid, nodeId, false, false);
  }

  /** Other instances' sums as of the last refresh, plus this instance's own counts now. */
  async loads(): Promise<ReadonlyMap<string, NodeLoad>> {
    this.ensureOpen("loads");
    if (!this.connection.up) throw new StoreError("Redis loads: Redis is unreachable, the cluster-wide loads are unknown");
    return this.clusterLoads.loads();
  }

  async drain(nodeId: string): Promise<void> {
    await setDrained(this.registry, nodeId, true);
  }

  async undrain(nodeId: string): Promise<void> {
    await setDrained(this.registry, nodeId, false);
  }

  /**
   * Stops the timers, withdraws this instance's load counts (best effort,
   * within timeoutMs) and disconnects. Leases of connections still open here
   * are left to expire.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.nodeWatch.stop();
    this.leases.stop();
    await this.clusterLoads.stop();
    await this.connection.close();
  }

  private ensureOpen(op: string): void {
    if (this.closed) throw new StoreError(`Redis ${op}: the store is closed`);
  }
}
