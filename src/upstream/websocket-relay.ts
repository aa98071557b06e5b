import type { RawData, WebSocket } from "ws";
import { toBuffer } from "./node-websocket.js";
import { TrafficMeter, type ClientTrafficLimit } from "./traffic-limit.js";

/** Above this many bytes queued on one side, the other side is paused until it drains. */
const HIGH_WATER_BYTES = 256 * 1024;

export interface WebSocketRelayStats {
  up: number;
  down: number;
  /** Which side closed first, and its close code. */
  closedBy?: "client" | "node";
  code?: number;
}

/**
 * Relays messages between a client's and a node's WebSocket, one message for
 * one message (RFC 7395 framing is the same on both). Backpressure: a side
 * whose peer has too much queued is paused until the send completes. A close
 * on either side closes the other with the same code. With a traffic limit,
 * what the client sends is metered as on TCP: past it the client is cut off,
 * or (throttle) read no more until its rate allows.
 */
export function relayWebSockets(client: WebSocket, node: WebSocket, onClose: (stats: WebSocketRelayStats) => void, onNodeMessage?: (message: Buffer) => boolean, traffic?: ClientTrafficLimit): void {
  const stats: WebSocketRelayStats = { up: 0, down: 0 };
  let closed = false;
  let watching = onNodeMessage !== undefined;
  const meter = traffic === undefined ? undefined : new TrafficMeter(traffic.limit);
  /** Until when the client is throttled (ms, performance.now()). */
  let throttledUntil = 0;
  let cut = false;
  const resumeClient = (): void => {
    if (node.bufferedAmount < HIGH_WATER_BYTES && performance.now() >= throttledUntil) client.resume();
  };
  const pipe = (from: WebSocket, to: WebSocket, direction: "up" | "down"): void => {
    from.on("message", (data: RawData, isBinary: boolean) => {
      const message = toBuffer(data);
      stats[direction] += message.length;
      if (direction === "down" && watching) watching = onNodeMessage!(message);
      if (direction === "up" && meter !== undefined) {
        // Messages already read in the chunk that went over the limit are dropped with the connection.
        if (cut) return;
        const verdict = meter.take(message.length);
        if (verdict < 0) {
          cut = true;
          traffic!.onLimited("disconnect", 0);
          client.terminate();
          node.terminate();
          return;
        }
        if (verdict > 0) {
          traffic!.onLimited("throttle", verdict);
          throttledUntil = performance.now() + verdict;
          client.pause();
          setTimeout(resumeClient, verdict).unref();
        }
      }
      if (to.readyState !== to.OPEN) return;
      to.send(message, { binary: isBinary }, () => {
        if (!from.isPaused || to.bufferedAmount >= HIGH_WATER_BYTES) return;
        if (from === client) resumeClient();
        else from.resume();
      });
      if (to.bufferedAmount >= HIGH_WATER_BYTES) from.pause();
    });
  };
  pipe(client, node, "up");
  pipe(node, client, "down");
  const finish = (peer: WebSocket, code: number): void => {
    if (!closed) {
      closed = true;
      stats.closedBy = peer === node ? "client" : "node";
      stats.code = code;
      onClose(stats);
    }
    // 1005/1006 are not sendable codes: a plain close then.
    if (peer.readyState === peer.OPEN) peer.close(code >= 1000 && code !== 1005 && code !== 1006 ? code : 1000);
    setTimeout(() => peer.terminate(), 2000).unref();
  };
  client.once("close", (code: number) => finish(node, code));
  node.once("close", (code: number) => finish(client, code));
  client.on("error", () => client.terminate());
  node.on("error", () => node.terminate());
  client.resume();
  node.resume();
}
