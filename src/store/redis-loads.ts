import { LocalLoads } from "./local-loads.js";
import type { RedisConnection } from "./redis-connection.js";
import type { RedisKeys } from "./redis-keys.js";
import type { NodeLoad } from "./store.js";

/** A crashed instance's counts disappear after this many missed refreshes. */
const MISSED_REFRESHES = 3;

/**
 * Cluster-wide load without Redis on the login path: every `refreshMs` one
 * script publishes this instance's counts (with a TTL of a few refreshes, so
 * a crashed instance's counts expire) and returns the sum of every other live
 * instance's; loads() adds this instance's own counts, fresh, to that sum.
 * Connections and redirects are published in two hashes, kept apart because
 * only connections count toward `maxconn=`. A JID is counted once per
 * instance: one redirected by several instances counts once on each.
 */
export class ClusterLoads {
  readonly local: LocalLoads;
  private others: ReadonlyMap<string, NodeLoad> = new Map();
  private readonly timer: NodeJS.Timeout;
  private syncing = false;

  constructor(
    private readonly connection: RedisConnection,
    private readonly keys: RedisKeys,
    private readonly instanceId: string,
    graceMs: number,
    private readonly refreshMs: number,
  ) {
    this.local = new LocalLoads(graceMs);
    this.timer = setInterval(() => void this.sync(), refreshMs).unref();
    void this.sync();
  }

  loads(): Map<string, NodeLoad> {
    const total = this.local.loads();
    for (const [node, other] of this.others) {
      const own = total.get(node);
      total.set(node, own === undefined ? other : { connections: own.connections + other.connections, redirects: own.redirects + other.redirects });
    }
    return total;
  }

  /** Stops publishing and withdraws this instance's counts at once (a clean shutdown), or lets them expire if Redis is away. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    const ownKeys = [this.keys.instanceLoads(this.instanceId), this.keys.instanceRedirects(this.instanceId)];
    await this.connection.run("loads-withdraw", (c) => c.multi().del(...ownKeys).zrem(this.keys.instances, this.instanceId).exec()).catch(() => {});
  }

  private async sync(): Promise<void> {
    if (this.syncing) return;
    this.syncing = true;
    const connections: Array<string | number> = [];
    const redirects: Array<string | number> = [];
    for (const [node, load] of this.local.loads()) {
      if (load.connections > 0) connections.push(node, load.connections);
      if (load.redirects > 0) redirects.push(node, load.redirects);
    }
    const { keys, instanceId } = this;
    try {
      const reply = await this.connection.run("loads-sync", (c) =>
        c.xmppLbSyncLoads(keys.instanceLoads(instanceId), keys.instanceRedirects(instanceId), keys.instances, this.refreshMs * MISSED_REFRESHES, instanceId, keys.instanceLoadsPrefix, keys.instanceRedirectsPrefix, connections.length / 2, ...connections, ...redirects),
      );
      const others = new Map<string, NodeLoad>();
      for (let i = 0; i + 2 < reply.length; i += 3) others.set(String(reply[i]), { connections: Number(reply[i + 1]), redirects: Number(reply[i + 2]) });
      this.others = others;
    } catch {
      // Keep the last sums; the connection status says Redis is away, and the next round retries.
    } finally {
      this.syncing = false;
    }
  }
}
