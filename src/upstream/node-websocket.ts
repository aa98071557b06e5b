import type { Element } from "@xmpp/xml";
import { WebSocket, type RawData } from "ws";
import { UpstreamError } from "../errors.js";
import { NS_FRAMING, WS_SUBPROTOCOL, framingOpenXml } from "../xmpp/framing.js";
import { MessageReader } from "../xmpp/message-reader.js";
import { NS_STREAM } from "../xmpp/namespaces.js";

export interface NodeWebSocketOptions {
  domain: string;
  timeoutMs: number;
  /** CA for a wss:// node's certificate; without it the certificate is not verified (trusted network). */
  ca?: Buffer;
  /** Aborts the dial (the client left). */
  signal?: AbortSignal;
  /** Largest message the node may send during setup. */
  maxMessageBytes: number;
  /** Sent as X-Forwarded-For, so the node sees the client's address. */
  clientAddress?: string;
  /** Phase open: the client's own `<open/>` is replayed, so the node's answer is the client's; resolve once connected. */
  skipOpen?: boolean;
  /** The opening's `from`: the login's user (see NodeDialOptions.from). */
  from?: string;
}

/**
 * Opens a node's XMPP-over-WebSocket endpoint the way a client would: the
 * `xmpp` subprotocol, an `<open/>` for the client's domain, and the node's
 * `<open/>` and features in reply. The socket is then handed over, paused,
 * for the client's replayed login and the relay.
 */
/** A node's WebSocket after setup, paused: its features when the balancer opened the stream. */
export interface NodeWebSocket {
  socket: WebSocket;
  features?: Element;
}

export function dialNodeWebSocket(url: string, options: NodeWebSocketOptions): Promise<NodeWebSocket> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (options.clientAddress !== undefined) headers["x-forwarded-for"] = options.clientAddress;
    const socket = new WebSocket(url, [WS_SUBPROTOCOL], {
      handshakeTimeout: options.timeoutMs,
      headers,
      ca: options.ca,
      rejectUnauthorized: options.ca !== undefined,
      perMessageDeflate: false,
      maxPayload: options.maxMessageBytes,
    });
    const reader = new MessageReader(options.maxMessageBytes, true);
    let stage: "open" | "features" | "done" = "open";
    const fail = (err: UpstreamError): void => {
      if (stage === "done") return;
      stage = "done";
      cleanup();
      socket.terminate();
      reject(err);
    };
    const timer = setTimeout(() => fail(new UpstreamError("XMPP_LB_NODE_TIMEOUT", "no stream setup within the dial timeout")), options.timeoutMs);
    const onAbort = (): void => fail(new UpstreamError("XMPP_LB_NODE_ABANDONED", "the client left"));
    options.signal?.addEventListener("abort", onAbort, { once: true });
    const cleanup = (): void => {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      socket.off("message", onMessage);
    };
    const onMessage = (data: RawData): void => {
      let el;
      try {
        el = reader.read(toBuffer(data));
      } catch (err) {
        return fail(new UpstreamError("XMPP_LB_NODE_BAD_XML", (err as Error).message));
      }
      if (el.getName() === "error" && el.getNS() === NS_STREAM) return fail(new UpstreamError("XMPP_LB_NODE_REFUSED", `the node sent a stream error: ${el.children.map((c) => (typeof c === "string" ? c : c.getName())).join(" ")}`));
      if (stage === "open") {
        if (el.getName() !== "open" || el.getNS() !== NS_FRAMING) return fail(new UpstreamError("XMPP_LB_NODE_PROTOCOL", `expected <open/>, got <${el.getName()}/>`));
        stage = "features";
        return;
      }
      if (el.getName() !== "features" || el.getNS() !== NS_STREAM) return fail(new UpstreamError("XMPP_LB_NODE_PROTOCOL", `expected <stream:features/>, got <${el.getName()}/>`));
      stage = "done";
      cleanup();
      socket.pause();
      resolve({ socket, features: el });
    };
    socket.on("message", onMessage);
    socket.once("open", () => {
      if (!options.skipOpen) return void socket.send(framingOpenXml({ to: options.domain, ...(options.from === undefined ? {} : { from: options.from }) }));
      stage = "done";
      cleanup();
      socket.pause();
      resolve({ socket });
    });
    socket.on("error", (err: Error & { code?: string }) => {
      const code = /timed out/i.test(err.message) ? "XMPP_LB_NODE_TIMEOUT" : "XMPP_LB_NODE_UNREACHABLE";
      fail(new UpstreamError(code, err.message));
    });
    socket.once("close", () => fail(new UpstreamError("XMPP_LB_NODE_CLOSED", "the node closed during stream setup")));
    socket.once("unexpected-response", (_req, res) => fail(new UpstreamError("XMPP_LB_NODE_PROTOCOL", `the node answered the WebSocket upgrade with HTTP ${res.statusCode}`)));
  });
}

export function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
