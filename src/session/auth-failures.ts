import type { BalancerConfig } from "../config.js";

/**
 * Failed logins remembered per client address and per JID for a window, so
 * brute force stops at the balancer: before a node's own ban (ejabberd's
 * fail2ban) falls on the balancer's address and every user behind it. A
 * failure is the node's SASL `<failure/>` to a forwarded login.
 */
export interface AuthFailureLimits {
  /** Failed logins per client address within the window before its logins are refused (0: no limit). */
  perAddress: number;
  /** Failed logins per bare JID within the window (0: no limit). */
  perJid: number;
  windowMs: number;
}

/** The limits `config` sets. */
export function authFailureLimits(config: BalancerConfig): AuthFailureLimits {
  return { perAddress: config.maxAuthFailuresPerAddress, perJid: config.maxAuthFailuresPerJid, windowMs: config.authFailureWindowMs };
}

export type AuthRefusal = "auth-failures-address" | "auth-failures-jid";

/**
 * Where the failures are counted: an AuthFailures in this process, or with
 * `--workers` the primary's, so that the limits hold over all workers
 * together; its answer then comes over IPC (a promise).
 */
export interface AuthFailureGate {
  record(address: string, jid: string | null): void;
  blocked(address: string, jid: string | null): AuthRefusal | null | Promise<AuthRefusal | null>;
  close(): void;
}

interface Count {
  failures: number;
  until: number;
}

export class AuthFailures implements AuthFailureGate {
  private readonly counts = new Map<string, Count>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly limits: AuthFailureLimits,
    private readonly now: () => number = Date.now,
  ) {
    this.sweeper = setInterval(() => this.sweep(), Math.max(1000, Math.min(60_000, limits.windowMs))).unref();
  }

  record(address: string, jid: string | null): void {
    if (this.limits.perAddress > 0) this.bump(`a ${address}`);
    if (this.limits.perJid > 0 && jid !== null) this.bump(`j ${jid}`);
  }

  /** Why a login from `address` as `jid` is refused now, or null. */
  blocked(address: string, jid: string | null): AuthRefusal | null {
    if (this.limits.perAddress > 0 && this.count(`a ${address}`) >= this.limits.perAddress) return "auth-failures-address";
    if (this.limits.perJid > 0 && jid !== null && this.count(`j ${jid}`) >= this.limits.perJid) return "auth-failures-jid";
    return null;
  }

  close(): void {
    clearInterval(this.sweeper);
  }

  private bump(key: string): void {
    const now = this.now();
    const entry = this.counts.get(key);
    if (entry === undefined || entry.until <= now) this.counts.set(key, { failures: 1, until: now + this.limits.windowMs });
    else entry.failures += 1;
  }

  private count(key: string): number {
    const entry = this.counts.get(key);
    return entry !== undefined && entry.until > this.now() ? entry.failures : 0;
  }

  private sweep(): void {
    const now = this.now();
    for (const [key, entry] of this.counts) if (entry.until <= now) this.counts.delete(key);
  }
}
