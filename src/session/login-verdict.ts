import type { Metrics } from "../metrics.js";
import type { RouteDecision } from "../router/router.js";
import type { AuthFailureGate, AuthRefusal } from "./auth-failures.js";

/** The node's verdict on one forwarded SASL attempt. */
export type LoginVerdict = "success" | "failure";

/**
 * What a node's verdict on a forwarded login does, the same for every
 * transport: the directory keeps an entry only for a login the node accepts,
 * and every refusal counts against the client's address and the JID that
 * attempt named.
 */
export class LoginVerdicts {
  constructor(
    private readonly metrics: Metrics,
    private readonly authFailures: AuthFailureGate,
  ) {}

  accepted(decision: RouteDecision): void {
    decision.lease.opened();
  }

  /** Counts the refusal against the client's address and the attempt's JID, and lets the claim go. */
  refused(decision: RouteDecision, address: string, jid: string | null): void {
    this.metrics.authFailures.inc({ node: decision.node.id });
    this.authFailures.record(address, jid);
    decision.lease.refused();
  }

  /** Whether the client is now past a failed-login limit (asked only where no dialogue will ask at the next <auth/>). */
  async pastLimit(address: string, jid: string | null): Promise<AuthRefusal | null> {
    return this.authFailures.blocked(address, jid);
  }
}
