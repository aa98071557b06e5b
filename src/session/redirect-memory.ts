/**
 * Recent redirects, by client address and bare JID. Some clients mishandle
 * see-other-host and reconnect to the balancer at once, in a tight loop; one
 * that comes back within the window is forwarded instead of redirected again.
 */
export class RedirectMemory {
  private readonly until = new Map<string, number>();
  private readonly sweeper: NodeJS.Timeout | undefined;

  constructor(
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {
    if (windowMs > 0) this.sweeper = setInterval(() => this.sweep(), Math.max(1000, windowMs)).unref();
  }

  /** Whether (address, jid) was redirected within the window. */
  cameBack(address: string, jid: string): boolean {
    const until = this.until.get(`${address} ${jid}`);
    return until !== undefined && until > this.now();
  }

  /** Records a redirect of (address, jid). */
  remember(address: string, jid: string): void {
    if (this.windowMs > 0) this.until.set(`${address} ${jid}`, this.now() + this.windowMs);
  }

  close(): void {
    clearInterval(this.sweeper);
  }

  private sweep(): void {
    const now = this.now();
    for (const [key, until] of this.until) if (until <= now) this.until.delete(key);
  }
}
