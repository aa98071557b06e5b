import type { MetricsJson } from "../metrics.js";

/** The counts the status page shows as rates. */
export const RATE_NAMES = ["logins", "forwards", "redirects", "failed", "refused", "authFailures"] as const;
export type RateName = (typeof RATE_NAMES)[number];

export interface Rates {
  /** How many seconds the readings span: a minute (or a few seconds more), or less while the balancer is younger than that. */
  windowSeconds: number;
  /** Events in the last minute (scaled to exactly a minute from the readings' span; not scaled up when the span is shorter); null until two readings exist. */
  perMinute: Record<RateName, number> | null;
  /** Stream errors sent in the last minute, by RFC 6120 condition (those with none left out). */
  streamErrors: Record<string, number>;
}

const STREAM_ERROR = "streamErrors:";

/** One reading of the counters behind the rates, by key (`logins`, `streamErrors:policy-violation`, …). */
export function countersOf(metrics: MetricsJson): Map<string, number> {
  const totals = new Map<string, number>();
  const add = (key: string, value: number): void => void totals.set(key, (totals.get(key) ?? 0) + value);
  for (const metric of metrics) {
    for (const { value, labels, metricName } of metric.values as Array<{ value: number; labels: Record<string, string | number | undefined>; metricName?: string }>) {
      switch (metric.name) {
        case "xmpp_lb_routing_decision_seconds":
          // Every login that reached routing: one decision each (a retry after a refused password too).
          if (metricName === "xmpp_lb_routing_decision_seconds_count") add("logins", value);
          break;
        case "xmpp_lb_connections_total":
          if (labels.outcome === "forwarded") add("forwards", value);
          else if (labels.outcome === "redirected") add("redirects", value);
          else if (labels.outcome === "failed") add("failed", value);
          break;
        case "xmpp_lb_rejected_total":
          add("refused", value);
          break;
        case "xmpp_lb_auth_failures_total":
          add("authFailures", value);
          break;
        case "xmpp_lb_stream_errors_total":
          add(`${STREAM_ERROR}${String(labels.condition)}`, value);
          break;
      }
    }
  }
  return totals;
}

interface Sample {
  at: number;
  counters: Map<string, number>;
}

/**
 * Rates over the last minute for the status page, from counters read every
 * few seconds: the page itself only fetches JSON, and Prometheus need not be
 * there. A counter that went down (a `--workers` process restarted) counts
 * from zero again, as Prometheus's `increase()` does.
 */
export class RateWindow {
  private samples: Sample[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly read: () => Promise<MetricsJson>,
    private readonly options: { sampleMs: number; windowMs: number } = { sampleMs: 5000, windowMs: 60_000 },
    private readonly now: () => number = Date.now,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.sample(), this.options.sampleMs).unref();
    void this.sample();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Takes one reading; a failed one is a gap, the next reading spans it. */
  async sample(): Promise<void> {
    let counters: Map<string, number>;
    try {
      counters = countersOf(await this.read());
    } catch {
      return;
    }
    const at = this.now();
    this.samples.push({ at, counters });
    // Keep the newest reading at least a window old: the baseline the rates start from.
    const cutoff = at - this.options.windowMs;
    while (this.samples.length > 1 && this.samples[1]!.at <= cutoff) this.samples.shift();
  }

  /** The rates from the oldest kept reading to a fresh one. */
  async rates(): Promise<Rates> {
    const current = { at: this.now(), counters: countersOf(await this.read()) };
    const readings = [...this.samples, current];
    const span = current.at - readings[0]!.at;
    if (readings.length < 2 || span <= 0) return { windowSeconds: 0, perMinute: null, streamErrors: {} };
    // A younger balancer's events are its last minute's: they are not extrapolated to a whole minute.
    const scale = Math.min(1, 60_000 / span);
    const perMinute = (key: string): number => Math.round(increase(readings, key) * scale * 10) / 10;
    const streamErrors: Record<string, number> = {};
    for (const key of current.counters.keys()) {
      if (!key.startsWith(STREAM_ERROR)) continue;
      const rate = perMinute(key);
      if (rate > 0) streamErrors[key.slice(STREAM_ERROR.length)] = rate;
    }
    const rates = Object.fromEntries(RATE_NAMES.map((name) => [name, perMinute(name)])) as Record<RateName, number>;
    return { windowSeconds: Math.round(span / 1000), perMinute: rates, streamErrors };
  }
}

/** How much one counter grew across the readings, a drop counting as a restart from zero. */
function increase(readings: readonly Sample[], key: string): number {
  let total = 0;
  for (let i = 1; i < readings.length; i++) {
    const before = readings[i - 1]!.counters.get(key) ?? 0;
    const after = readings[i]!.counters.get(key) ?? 0;
    total += after >= before ? after - before : after;
  }
  return total;
}
