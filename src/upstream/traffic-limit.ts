import { ConfigError } from "../errors.js";

export type TrafficAction = "disconnect" | "throttle";

/**
 * What a forwarded client may send (client to node), after Tigase's
 * `cm-ht-traffic-throttling`: bytes per minute and per connection lifetime
 * (0: no limit), and what happens beyond them.
 */
export interface TrafficLimit {
  perMinute: number;
  lifetime: number;
  /** `throttle` slows reading down to the per-minute rate; beyond the lifetime limit the connection is closed whatever the action. */
  action: TrafficAction;
  /** The flag's own text, for logs. */
  text: string;
}

/** A traffic limit on what one client sends, and who hears when it bites. */
export interface ClientTrafficLimit {
  limit: TrafficLimit;
  /** `disconnect`: the connection is being closed; `throttle`: reading pauses for `pauseMs`. */
  onLimited(action: TrafficAction, pauseMs: number): void;
}

const UNITS: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

function bytes(text: string, flagText: string): number {
  const match = /^(\d+)([kmg]?)$/i.exec(text);
  if (match === null) throw new ConfigError(`--traffic-limit: '${text}' in '${flagText}' is not a byte count (digits, with k, m or g)`);
  return Number(match[1]) * UNITS[match[2]!.toLowerCase()]!;
}

/** `[bin:]PER_MINUTE[:LIFETIME[:disc|throttle]]`, e.g. `bin:1m:0:disc` or `256k:1g:throttle`. */
export function parseTrafficLimit(text: string): TrafficLimit {
  const parts = text.trim().split(":");
  if (parts[0] === "xmpp") {
    throw new ConfigError("--traffic-limit: 'xmpp' (stanza counts) is not supported: counting stanzas would mean parsing every forwarded byte; limit bytes with 'bin'");
  }
  if (parts[0] === "bin") parts.shift();
  if (parts.length === 0 || parts.length > 3) throw new ConfigError(`--traffic-limit must be [bin:]PER_MINUTE[:LIFETIME[:disc|throttle]] (got '${text}')`);
  const [perMinute, lifetime = "0", action = "disc"] = parts as [string, string?, string?];
  const actions: Record<string, TrafficAction> = { disc: "disconnect", disconnect: "disconnect", throttle: "throttle" };
  const chosen = actions[action];
  if (chosen === undefined) throw new ConfigError(`--traffic-limit: the action must be disc or throttle (got '${action}')`);
  const limit = { perMinute: bytes(perMinute, text), lifetime: bytes(lifetime, text), action: chosen, text };
  if (limit.perMinute === 0 && limit.lifetime === 0) throw new ConfigError(`--traffic-limit '${text}' limits nothing: give bytes per minute or per lifetime`);
  return limit;
}

/**
 * Counts one connection's bytes against a limit. The per-minute limit is a
 * bucket holding one minute's allowance, refilled continuously, so a burst up
 * to the allowance passes and a steady sender gets the rate.
 */
export class TrafficMeter {
  private tokens: number;
  private stamp = performance.now();
  private total = 0;

  constructor(private readonly limit: TrafficLimit) {
    this.tokens = limit.perMinute;
  }

  /** For a chunk of `n` bytes: 0 to go on, -1 to disconnect, or how many ms reading should pause (throttle). */
  take(n: number): number {
    this.total += n;
    if (this.limit.lifetime > 0 && this.total > this.limit.lifetime) return -1;
    const { perMinute } = this.limit;
    if (perMinute === 0) return 0;
    const now = performance.now();
    this.tokens = Math.min(perMinute, this.tokens + ((now - this.stamp) * perMinute) / 60_000) - n;
    this.stamp = now;
    if (this.tokens >= 0) return 0;
    if (this.limit.action === "disconnect") return -1;
    return Math.ceil((-this.tokens * 60_000) / perMinute);
  }
}
