import { StoreError } from "../errors.js";
import type { LineLogger } from "../log.js";
import type { ClusterStore } from "../store/store.js";

/**
 * One routing decision's hold on the session directory. The hand-off reports
 * what became of the login; the lease turns that into store calls, so the
 * directory entry lives as long as the node holds the user (plus the affinity
 * grace period) and no longer. A store failure here costs affinity at worst,
 * never the connection: it is logged and swallowed.
 */
export class DirectoryLease {
  private open = false;

  constructor(
    private readonly store: ClusterStore,
    private readonly jid: string | null,
    private readonly nodeId: string,
    private readonly log: LineLogger,
  ) {}

  /** The client was sent to the node with see-other-host. */
  redirected(): void {
    this.settle(this.store.redirected(this.jid, this.nodeId), "redirect");
  }

  /** A forwarded connection to the node is open. */
  opened(): void {
    if (this.open) return;
    this.open = true;
    this.settle(this.store.connectionOpened(this.jid, this.nodeId), "connection");
  }

  /**
   * ...and closed; `clean` when the client closed its stream itself (its
   * session cannot be resumed, so the entry needs no resumption window).
   */
  closed(clean = false): void {
    if (!this.open) return;
    this.open = false;
    this.settle(this.store.connectionClosed(this.jid, this.nodeId, clean), "close");
  }

  /** The node's SASL2 success carried a FAST token valid until `expiresAt` (ms since epoch): the JID's token logins go to this node until then. */
  tokenIssued(expiresAt: number): void {
    if (this.jid === null) return;
    this.settle(this.store.tokenIssued(this.jid, this.nodeId, expiresAt), "FAST token");
  }

  /** The node refused the login (or it never reached the node): the claim goes. */
  refused(): void {
    if (this.jid === null) return;
    this.settle(this.store.release(this.jid, this.nodeId), "release");
  }

  private settle(call: Promise<void>, what: string): void {
    call.catch((err: Error) => {
      // An unreachable store is said once, when it goes; not again for every connection meanwhile.
      const level = err instanceof StoreError ? "debug" : "warn";
      this.log[level]({ err: err.message, node: this.nodeId }, `store: cannot record the ${what}`);
    });
  }
}
