import type { RouteDecision } from "../router/router.js";
import { Sasl2SuccessReader } from "../xmpp/sasl2-success.js";
import { SaslOutcomeScanner } from "../xmpp/sasl-outcome.js";
import type { NodeLeg } from "./client-link.js";
import type { LoginVerdict } from "./login-verdict.js";

/** What became of a forwarded attempt: the node's verdict, or its connection gone before one. */
export type AttemptEnd = LoginVerdict | "node-closed";

/**
 * One SASL attempt forwarded to its node, until the node's verdict, on any
 * transport: the node's output goes to the client as it comes (challenges,
 * then the verdict), and the client's SASL elements go to the node one by
 * one as the dialogue reads them. The hand-off is final only at the node's
 * `<success/>`: after a `<failure/>` the node stream is ended and the
 * dialogue has the client again, so its next `<auth/>` passes the limits and
 * the routing anew. A SASL2 success is read to its end, for the FAST token
 * it may issue.
 */
export class ForwardedLogin {
  private readonly scanner = new SaslOutcomeScanner();
  private verdict: LoginVerdict | null = null;
  private success: Sasl2SuccessReader | undefined;
  private running = false;

  constructor(
    readonly decision: RouteDecision,
    /** The node's side; the relay takes it after a success. */
    readonly leg: NodeLeg,
    /** SASL2 (XEP-0388): the success may carry a FAST token, and no stream restart follows it. */
    readonly sasl2: boolean,
  ) {}

  /** Starts carrying the node's output to the client; `onEnd` hears the verdict once, after the client has been sent it. */
  start(toClient: (data: Buffer) => void, onEnd: (end: AttemptEnd) => void): void {
    this.running = true;
    this.leg.watch(
      (data) => this.inspect(data),
      toClient,
      (closed) => {
        if (!this.running) return;
        this.running = false;
        if (closed || this.verdict === null) {
          this.decision.lease.refused();
          return onEnd("node-closed");
        }
        if (this.verdict === "failure") this.leg.end();
        onEnd(this.verdict);
      },
    );
  }

  /** Whether to keep reading the node: until its verdict, and a SASL2 success to its end. */
  private inspect(data: Buffer): boolean {
    if (this.success !== undefined) return this.success.push(data);
    this.verdict = this.scanner.push(data);
    if (this.verdict === null) return true;
    if (this.verdict !== "success" || !this.sasl2) return false;
    this.success = new Sasl2SuccessReader();
    return this.success.push(data);
  }

  /** When the FAST token the node's SASL2 success issued expires (ms since epoch), or undefined. */
  tokenExpiry(): number | undefined {
    return this.success?.tokenExpiry();
  }

  /** A SASL element of the client's (a `<response/>` or `<abort/>`), for the node. */
  send(xml: string): void {
    this.leg.send(xml);
  }

  /** The dialogue ended before a verdict (timeout, shutdown, the client left): the node stream goes, and the claim it made. */
  abort(): void {
    this.running = false;
    this.leg.destroy();
    this.decision.lease.refused();
  }
}
