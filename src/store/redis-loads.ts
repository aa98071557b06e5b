import type { RedisConnection } from "./redis-connection.js";
import type { RedisKeys } from "./redis-keys.js";

/** A crashed instance's counts disappear after this many missed refreshes. */
const MISSED_REFRESHES = 3;

/** This instance's load per node: open forwarded connections plus redirects within the grace period. */
export class LocalLoads {
  private readonly connections = new Map<string, number>();
  /** Redirects in expiry order (all last the same grace period). */
  private readonly redirects: Array<{ node: string; until: number }> = [];

  constructor(private readonly graceMs: number) {}

  opened(node: string): void {
    this.connections.set(node, (this.connections.get(node) ?? 0) + 1);
  }

  closed(node: string): void {
    const count = (this.connections.get(node) ?? 1) - 1;
    if (count > 0) this.connections.set(node, count);
    else this.connections.delete(node);
  }

  redirected(node: string): void {
    this.redirects.push({ node, until: Date.now() + this.graceMs });
  }

  counts(): Map<string, number> {
    const now = Date.now();
    let expired = 0;
    while (expired < this.redirects.length && this.redirects[expired]!.until <= now) expired++;
    this.redirects.splice(0, expired);
    const counts = new Map(this.connections);
    for (const { node } of this.redirects) counts.set(node, (counts.get(node) ?? 0) + 1);
    return counts;
  }
}

/**
 * Cluster-wide load without Redis on the login path: every `refreshMs` one
 * script publishes this instance's counts (with a TTL of a few refreshes, so
 * a crashed instance's counts expire) and returns the sum of every other live
 * instance's; loads() adds this instance's own counts, fresh, to that sum.
 */
export class ClusterLoads {
  readonly local: LocalLoads;
  private others: ReadonlyMap<string, number> = new Map();
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

  loads(): Map<string, number> {
    const total = this.local.counts();
    for (const [node, n] of this.others) total.set(node, (total.get(node) ?? 0) + n);
    return total;
  }

  /** Stops publishing and withdraws this instance's counts at once (a clean shutdown), or lets them expire if Redis is away. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    const ownKey = this.keys.instanceLoads(this.instanceId);
    await this.connection.run("loads-withdraw", (c) => c.multi().del(ownKey).zrem(this.keys.instances, this.instanceId).exec()).catch(() => {});
  }

  private async sync(): Promise<void> {
    if (this.syncing) return;
    this.syncing = true;
    const pairs = [...this.local.counts()].flat();
    try {
      const reply = await this.connection.run("loads-sync", (c) =>
        c.xmppLbSyncLoads(this.keys.instanceLoads(this.instanceId), this.keys.instances, this.refreshMs * MISSED_REFRESHES, this.instanceId, this.keys.instanceLoadsPrefix, ...pairs),
      );
      const others = new Map<string, number>();
      for (let i = 0; i + 1 < reply.length; i += 2) others.set(String(reply[i]), Number(reply[i + 1]));
      this.others = others;
    } catch {
      // Keep the last sums; the connection status says Redis is away, and the next round retries.
    } finally {
      this.syncing = false;
    }
  }
}
