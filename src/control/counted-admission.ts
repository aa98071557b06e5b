import { Admission } from "../listener/admission.js";

/**
 * The admission limits, saying how many connections are in the pre-auth
 * dialogue now: `xmpp_lb_preauth_connections` reads it at each scrape, so an
 * alert can fire before `--max-preauth-connections` starts refusing logins.
 */
export class CountedAdmission extends Admission {
  private preAuthOpen = 0;

  get preAuthConnections(): number {
    return this.preAuthOpen;
  }

  override admit(address: string): ReturnType<Admission["admit"]> {
    const refusal = super.admit(address);
    if (refusal === null) this.preAuthOpen += 1;
    return refusal;
  }

  /** Also reached through closed(), for a connection that never left the dialogue. */
  override leftPreAuth(): void {
    super.leftPreAuth();
    this.preAuthOpen = Math.max(0, this.preAuthOpen - 1);
  }
}
