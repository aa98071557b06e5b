import type { RedisConnection } from "./redis-connection.js";
import type { RedisKeys } from "./redis-keys.js";

/** JIDs renewed per batch: sent together without waiting for replies, then the next batch. */
const RENEW_BATCH = 1000;

interface OpenJid {
  /** The node of the latest connection (after a move two may be open: any keeps the entry). */
  node: string;
  count: number;
}

interface UnconfirmedClaim {
  node: string;
  /** After this (ms since epoch) the entry may belong to a later login: release() leaves it alone. */
  until: number;
}

/**
 * The directory entries this balancer instance answers for.
 *
 * While a forwarded connection of a JID is open here, the entry is a lease of
 * `leaseMs` renewed every `leaseMs / 3`. The lease equals the affinity grace
 * period: if this instance dies, its renewals stop and each entry expires
 * within the grace period, which is the time its users get to reconnect
 * through another instance and resume on the same node, exactly as after
 * a clean close.
 *
 * It also remembers the claims this instance wrote that no connection or
 * redirect has confirmed yet: the only entries release() deletes.
 *
 * Beside each entry, a holders hash says which instances hold a connection of
 * the JID open (each until its next renewal is due) and until when one that
 * broke may resume: when the last connection anywhere ends with the client
 * closing its stream, nothing can be resumed, and the entry goes at once.
 */
export class Leases {
  private readonly open = new Map<string, OpenJid>();
  /** In claim order, so expired claims are at the front. */
  private readonly unconfirmed = new Map<string, UnconfirmedClaim>();
  private readonly timer: NodeJS.Timeout;
  private renewing = false;

  /** This instance's field in the holders hashes (`keep` is the other field there). */
  private readonly holder: string;

  constructor(
    private readonly connection: RedisConnection,
    private readonly keys: RedisKeys,
    private readonly leaseMs: number,
    instanceId: string,
  ) {
    this.holder = `instance:${instanceId}`;
    this.timer = setInterval(() => void this.renewAll(), leaseMs / 3).unref();
  }

  /** This instance's claim wrote the entry. */
  claimed(jid: string, node: string): void {
    this.unconfirmed.delete(jid);
    this.unconfirmed.set(jid, { node, until: Date.now() + this.leaseMs });
  }

  /** A connection or a redirect confirmed the entry: release() must not delete it. */
  confirmed(jid: string): void {
    this.unconfirmed.delete(jid);
  }

  /** Whether release() may delete the entry: this instance's unconfirmed claim for `node`, no connection of the JID open here. */
  releasable(jid: string, node: string): boolean {
    const claim = this.unconfirmed.get(jid);
    if (claim === undefined || claim.node !== node) return false;
    this.unconfirmed.delete(jid);
    return claim.until > Date.now() && !this.open.has(jid);
  }

  /** Counts a connection; true for the JID's first one here. */
  opened(jid: string, node: string): boolean {
    this.confirmed(jid);
    const entry = this.open.get(jid);
    if (entry !== undefined) {
      entry.node = node;
      entry.count += 1;
      return false;
    }
    this.open.set(jid, { node, count: 1 });
    return true;
  }

  /** Uncounts a connection; true when it was the JID's last one here. */
  closed(jid: string): boolean {
    const entry = this.open.get(jid);
    if (entry === undefined) return false;
    entry.count -= 1;
    if (entry.count > 0) return false;
    this.open.delete(jid);
    return true;
  }

  /** Keeps the JID's entry for at least the lease, writing it for `node` if it is gone; notes that this instance holds it open. */
  async holdOpen(op: string, jid: string, node: string): Promise<void> {
    const holders = this.keys.jidHolders(jid);
    if (holders === null) await this.connection.run(op, (c) => c.xmppLbHold(this.keys.jid(jid), node, this.leaseMs));
    else await this.connection.run(op, (c) => c.xmppLbHoldOpen(this.keys.jid(jid), holders, node, this.leaseMs, this.holder));
  }

  /**
   * This instance's last connection of the JID closed (`mine`), or a
   * connection broke while others stay open, or the JID was redirected (not
   * `mine`). `clean`: the client closed its stream, so the entry goes unless
   * a connection is open elsewhere or one that broke may still resume;
   * otherwise the entry is kept for the lease, for a resumption.
   */
  async letGo(op: string, jid: string, node: string, mine: boolean, clean: boolean): Promise<void> {
    const holders = this.keys.jidHolders(jid);
    if (holders === null) await this.connection.run(op, (c) => c.xmppLbHold(this.keys.jid(jid), node, this.leaseMs));
    else await this.connection.run(op, (c) => c.xmppLbLetGo(this.keys.jid(jid), holders, node, this.leaseMs, mine ? this.holder : "", clean ? "clean" : "keep"));
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Renews every open JID's lease; failures wait for the next round (the status reports Redis down). */
  private async renewAll(): Promise<void> {
    this.forgetExpiredClaims();
    if (this.renewing) return;
    this.renewing = true;
    try {
      const open = [...this.open];
      for (let i = 0; i < open.length; i += RENEW_BATCH) {
        const batch = open.slice(i, i + RENEW_BATCH);
        const results = await Promise.allSettled(batch.map(([jid, { node }]) => this.holdOpen("renew", jid, node)));
        if (results.some((r) => r.status === "rejected")) return;
      }
    } finally {
      this.renewing = false;
    }
  }

  private forgetExpiredClaims(): void {
    const now = Date.now();
    for (const [jid, claim] of this.unconfirmed) {
      if (claim.until > now) break;
      this.unconfirmed.delete(jid);
    }
  }
}
