import type { Socket } from "node:net";
import { LINGER_MS, endThenDestroy } from "../net/linger.js";
import type { RouteDecision } from "../router/router.js";
import { STREAM_CLOSE_XML } from "../xmpp/nonzas.js";
import { SaslOutcomeScanner } from "../xmpp/sasl-outcome.js";
import type { LoginVerdict } from "./login-verdict.js";

/** What became of a forwarded attempt: the node's verdict, or its connection gone before one. */
export type AttemptEnd = LoginVerdict | "node-closed";

/**
 * One SASL attempt forwarded to its node over TCP, until the node's verdict:
 * the node's bytes go to the client as they come (challenges, then the
 * verdict), and the client's SASL elements go to the node one by one as the
 * dialogue reads them. The hand-off is final only at the node's `<success/>`:
 * after a `<failure/>` the node stream is dropped and the dialogue has the
 * client again, so its next `<auth/>` passes the limits and the routing anew.
 */
export class ForwardedLogin {
  private readonly scanner = new SaslOutcomeScanner();
  private onEnd: ((end: AttemptEnd) => void) | null = null;

  constructor(
    private readonly client: () => Socket,
    readonly decision: RouteDecision,
    /** The node's socket; the balancer's relay takes it after a success. */
    readonly node: Socket,
  ) {}

  /** Starts carrying the node's bytes to the client; `onEnd` hears the verdict once. */
  start(onEnd: (end: AttemptEnd) => void): void {
    this.onEnd = onEnd;
    this.node.on("data", this.onNodeData).once("close", this.onNodeClose).on("error", ignore);
    this.node.resume();
  }

  /** A SASL element of the client's (a `<response/>` or `<abort/>`), for the node. */
  send(xml: string): void {
    if (!this.node.destroyed) this.node.write(xml);
  }

  /** The dialogue ended before a verdict (timeout, shutdown, the client left): the node stream goes. */
  abort(): void {
    if (this.onEnd === null) return;
    this.detach();
    this.node.destroy();
  }

  private readonly onNodeData = (chunk: Buffer): void => {
    const verdict = this.scanner.push(chunk);
    const client = this.client();
    if (!client.destroyed) client.write(chunk);
    if (verdict === null) return;
    const onEnd = this.onEnd!;
    this.detach();
    // Refused: the node's stream is closed politely; a success leaves the socket paused for the relay.
    if (verdict === "failure") {
      this.node.resume(); // read to its end, unheard, so its close comes at once
      endThenDestroy(this.node, LINGER_MS.rejected, STREAM_CLOSE_XML);
    }
    onEnd(verdict);
  };

  private readonly onNodeClose = (): void => {
    const onEnd = this.onEnd;
    this.detach();
    onEnd?.("node-closed");
  };

  private detach(): void {
    this.onEnd = null;
    this.node.off("data", this.onNodeData).off("close", this.onNodeClose);
    this.node.pause();
  }
}

function ignore(): void {}
