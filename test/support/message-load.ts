// Test fixture: a steady stream of chat messages among SmClients (sm-client.ts),
// each one recorded when sent, so that what arrived can be counted against it:
// received in the session it was sent to, only at the recipient's next login
// (from offline storage), lost, duplicated, bounced.

import type { SmClient } from "./sm-client.js";
import { sleep } from "./wait.js";

export interface SentMessage {
  id: string;
  from: SmClient;
  to: SmClient;
  /** When it was handed to the sender's client (ms since epoch). */
  at: number;
}

export interface LoadReport {
  sent: number;
  /**
   * Received only by a later client of the recipient's account (`later` of
   * report()): the server had stored it offline, and delivered it at the
   * next login.
   */
  late: SentMessage[];
  /** Sent and never received. */
  lost: SentMessage[];
  /** Received more than once (a resend after a session that could not be resumed). */
  duplicates: number;
  /** Bounced back to their sender with type='error'. */
  bounced: number;
}

/**
 * Sends `perSecond` messages a second, round robin over the senders, each to
 * another client (every pair in turn), until stop(). The ids are unique.
 */
export class MessageLoad {
  readonly sent: SentMessage[] = [];
  private timer: NodeJS.Timeout | undefined;
  private n = 0;

  constructor(
    private readonly clients: readonly SmClient[],
    private readonly perSecond = 10,
    private readonly prefix = "m",
  ) {
    if (clients.length < 2) throw new Error("a message load needs two clients");
  }

  start(): void {
    this.timer = setInterval(() => this.sendOne(), 1000 / this.perSecond);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private sendOne(): void {
    const k = this.clients.length;
    const i = this.n++;
    const from = this.clients[i % k]!;
    // Offsets 1..k-1 in turn: every sender reaches every other client.
    const to = this.clients[(i + 1 + (Math.floor(i / k) % (k - 1))) % k]!;
    const id = `${this.prefix}${i}`;
    from.sendMessage(to.jid, id);
    this.sent.push({ id, from, to, at: Date.now() });
  }

  /**
   * Waits until every sender's queue is acknowledged and every message has
   * arrived or bounced, or nothing more arrived for `quietMs` (what is still
   * missing then waits in offline storage, or is lost), or `timeoutMs`.
   */
  async settle(timeoutMs: number, quietMs = 2000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const arrived = (): number => this.clients.reduce((n, c) => n + c.received.size + c.bounced.length, 0);
    let last = -1;
    let since = Date.now();
    for (;;) {
      const acknowledged = this.clients.every((c) => c.online && c.unackedMessages === 0);
      if (acknowledged && this.sent.every((m) => m.to.received.has(m.id) || m.from.bounced.includes(m.id))) return;
      const now = arrived();
      if (now !== last) [last, since] = [now, Date.now()];
      else if (acknowledged && Date.now() - since >= quietMs) return;
      if (Date.now() > deadline) return;
      await sleep(100);
    }
  }

  /** One message's story, for a failure message: when it was sent, and the sessions of its sender and recipient (times in ms from `t0`). */
  static story(m: SentMessage, t0: number): string {
    const sessions = (c: SmClient): string => c.sessions.map((s) => `${s.node} from ${s.at - t0}${s.resumed ? " (resumed)" : ""}`).join(", ");
    return `${m.id} sent at ${m.at - t0} by ${m.from.jid} [${sessions(m.from)}] to ${m.to.jid} [${sessions(m.to)}]`;
  }

  /** What arrived; `later`: clients that logged in again afterwards, whose offline messages count as late. */
  report(later: readonly SmClient[] = []): LoadReport {
    const inSession = (m: SentMessage): boolean => m.to.received.has(m.id);
    const atNextLogin = (m: SentMessage): boolean => later.some((c) => c.jid === m.to.jid && c.received.has(m.id));
    return {
      sent: this.sent.length,
      late: this.sent.filter((m) => !inSession(m) && atNextLogin(m)),
      lost: this.sent.filter((m) => !inSession(m) && !atNextLogin(m)),
      duplicates: this.sent.filter((m) => (m.to.received.get(m.id) ?? 0) > 1).length,
      bounced: this.sent.filter((m) => m.from.bounced.includes(m.id)).length,
    };
  }
}
