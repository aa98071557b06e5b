import type { BalancerConfig } from "../config.js";

/**
 * Who may open a connection now: limits on connections in total, per client
 * address (at once, and new ones per second), and in the pre-auth dialogue,
 * so one address or a slowloris wave cannot take the slots of established
 * sessions. The client address is the real one (from a PROXY header when a
 * front sent one). Counts only: closing a refused connection is the caller's.
 */
export interface AdmissionLimits {
  /** Open client connections in all (0: no limit). */
  maxConnections: number;
  /** Open connections per client address (0: no limit). */
  maxPerAddress: number;
  /** New connections per client address per second (0: no limit). */
  maxRatePerAddress: number;
  /** Connections still in the pre-auth dialogue (0: no limit). */
  maxPreAuth: number;
}

/** The limits `config` sets. */
export function admissionLimits(config: BalancerConfig): AdmissionLimits {
  return { maxConnections: config.maxConnections, maxPerAddress: config.maxConnectionsPerAddress, maxRatePerAddress: config.maxConnectionRatePerAddress, maxPreAuth: config.maxPreauthConnections };
}

export type Refusal = "max-connections" | "address-connections" | "address-rate" | "preauth-connections";

/** What a refused client reads: in a stream error's text (TCP) or an HTTP answer's body (WebSocket). */
export const REFUSAL_TEXT: Record<Refusal, string> = {
  "max-connections": "the service is at its connection limit; try again later",
  "preauth-connections": "too many logins are in progress; try again later",
  "address-connections": "too many connections from your address",
  "address-rate": "too many new connections from your address; slow down",
};

interface PerAddress {
  open: number;
  /** Connections started in the current one-second window. */
  recent: number;
  windowStart: number;
}

/**
 * Where the counts are kept: an Admission in this process, or with `--workers`
 * the primary's, so that the limits hold over all workers together; its
 * verdict then comes over IPC (a promise).
 */
export interface AdmissionGate {
  admit(address: string): Refusal | null | Promise<Refusal | null>;
  leftPreAuth(): void;
  closed(address: string, inPreAuth: boolean): void;
  close(): void;
}

export class Admission implements AdmissionGate {
  private open = 0;
  private preAuth = 0;
  private readonly byAddress = new Map<string, PerAddress>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly limits: AdmissionLimits,
    private readonly now: () => number = Date.now,
  ) {
    // Forget quiet addresses, so a scan from many addresses leaves nothing behind.
    this.sweeper = setInterval(() => this.sweep(), 5000).unref();
  }

  /**
   * Admits a new connection from `address` (counted until `closed`, and in
   * the pre-auth dialogue until `authenticated` or `closed`), or says why not.
   */
  admit(address: string): Refusal | null {
    const { maxConnections, maxPerAddress, maxRatePerAddress, maxPreAuth } = this.limits;
    if (maxConnections > 0 && this.open >= maxConnections) return "max-connections";
    if (maxPreAuth > 0 && this.preAuth >= maxPreAuth) return "preauth-connections";
    const now = this.now();
    let entry = this.byAddress.get(address);
    if (entry === undefined) this.byAddress.set(address, (entry = { open: 0, recent: 0, windowStart: now }));
    if (now - entry.windowStart >= 1000) {
      entry.windowStart = now;
      entry.recent = 0;
    }
    if (maxRatePerAddress > 0 && entry.recent >= maxRatePerAddress) return "address-rate";
    entry.recent += 1; // a refused attempt past the concurrency limit still counts towards the rate
    if (maxPerAddress > 0 && entry.open >= maxPerAddress) return "address-connections";
    entry.open += 1;
    this.open += 1;
    this.preAuth += 1;
    return null;
  }

  /** The connection left the pre-auth dialogue (handed over, or refused in it). */
  leftPreAuth(): void {
    this.preAuth = Math.max(0, this.preAuth - 1);
  }

  /** An admitted connection closed; `inPreAuth`: it never left the dialogue. */
  closed(address: string, inPreAuth: boolean): void {
    this.open = Math.max(0, this.open - 1);
    if (inPreAuth) this.leftPreAuth();
    const entry = this.byAddress.get(address);
    if (entry !== undefined) entry.open = Math.max(0, entry.open - 1);
  }

  get connections(): number {
    return this.open;
  }

  close(): void {
    clearInterval(this.sweeper);
  }

  private sweep(): void {
    const now = this.now();
    for (const [address, entry] of this.byAddress) if (entry.open === 0 && now - entry.windowStart >= 1000) this.byAddress.delete(address);
  }
}

/** One admitted connection's hold on the counts: it leaves the pre-auth count once, and the open count at close. */
export class AdmissionTicket {
  private preAuth = true;
  private open = true;

  constructor(
    private readonly admission: AdmissionGate,
    readonly address: string,
  ) {}

  /** The connection was handed over (forwarded or redirected). */
  leftPreAuth(): void {
    if (!this.preAuth) return;
    this.preAuth = false;
    this.admission.leftPreAuth();
  }

  closed(): void {
    if (!this.open) return;
    this.open = false;
    this.admission.closed(this.address, this.preAuth);
    this.preAuth = false;
  }
}
