import type { Socket } from "node:net";
import { LINGER_MS, endThenDestroy } from "../net/linger.js";
import { NodeSocket } from "./node-socket.js";
import { TrafficMeter, type TrafficLimit } from "./traffic-limit.js";

export interface RelayStats {
  /** Bytes from the client to the node. */
  up: number;
  /** Bytes from the node to the client. */
  down: number;
}

/** Sees each chunk the node sends, before the client gets it, until it returns false (the login's verdict scan). */
export type NodeWatcher = (chunk: Buffer) => boolean;

/**
 * One direction of a relay: bytes are written as they arrive, with no parsing
 * and no copy; when the destination's buffer is full the source is paused
 * until it drains (backpressure). A FIN is passed on as a FIN (half-close), so
 * a closing `</stream:stream>` and its answer both get through, including a
 * FIN that came before the relay started.
 */
function pump(from: Socket, to: Socket, watcher?: NodeWatcher): void {
  let watching = watcher;
  from.on("data", (chunk: Buffer) => {
    if (watching !== undefined && !watching(chunk)) watching = undefined;
    if (!to.write(chunk)) from.pause();
  });
  passOnBackpressureAndFin(from, to);
}

/**
 * The node-to-client direction on a NodeSocket: each read, in the shared
 * buffer, is copied once for the write (a write that does not complete at
 * once keeps its buffer until it does, and the shared one is read into again
 * at the next read of any node). Otherwise as pump().
 */
function pumpFromNode(from: NodeSocket, to: Socket, watcher?: NodeWatcher): void {
  let watching = watcher;
  from.readWith((bytes, length) => {
    const chunk = Buffer.allocUnsafe(length);
    bytes.copy(chunk, 0, 0, length);
    if (watching !== undefined && !watching(chunk)) watching = undefined;
    if (!to.write(chunk)) from.pause();
  });
  passOnBackpressureAndFin(from, to);
}

function passOnBackpressureAndFin(from: Socket, to: Socket): void {
  to.on("drain", () => from.resume());
  if (from.readableEnded) to.end();
  else from.on("end", () => to.end());
}

/** A traffic limit on what the client sends, and who hears when it bites. */
export interface ClientTrafficLimit {
  limit: TrafficLimit;
  /** `disconnect`: the connection is being closed; `throttle`: reading pauses for `pauseMs`. */
  onLimited(action: "disconnect" | "throttle", pauseMs: number): void;
}

/**
 * The client-to-node direction under a traffic limit: each chunk is counted,
 * and reading pauses while either the node is full (backpressure) or the
 * client is over its rate; the other pump stays the plain one above, so a
 * relay without a limit pays nothing for it.
 */
function limitedPump(from: Socket, to: Socket, traffic: ClientTrafficLimit, disconnect: () => void): void {
  const meter = new TrafficMeter(traffic.limit);
  let full = false;
  let timer: NodeJS.Timeout | undefined;
  const resume = (): void => {
    if (!full && timer === undefined) from.resume();
  };
  from.on("data", (chunk: Buffer) => {
    const verdict = meter.take(chunk.length);
    if (verdict < 0) {
      traffic.onLimited("disconnect", 0);
      disconnect();
      return;
    }
    if (!to.write(chunk)) (full = true), from.pause();
    if (verdict > 0) {
      traffic.onLimited("throttle", verdict);
      from.pause();
      timer = setTimeout(() => ((timer = undefined), resume()), verdict);
    }
  });
  to.on("drain", () => ((full = false), resume()));
  from.once("close", () => clearTimeout(timer));
  if (from.readableEnded) to.end();
  else from.on("end", () => to.end());
}

/**
 * Relays bytes both ways between a client and a node until both sides are
 * closed; an error or reset on either side tears down both. `onClose` runs
 * once, with the byte counts. With a traffic limit, what the client sends is
 * metered (see limitedPump). A watcher sees what the node sends (see NodeWatcher).
 */
export function relay(client: Socket, node: Socket, onClose: (stats: RelayStats) => void, traffic?: ClientTrafficLimit, watcher?: NodeWatcher): void {
  const clientBase = client.bytesWritten;
  const nodeBase = node.bytesWritten;
  let open = 2;
  const closed = (): void => {
    if (--open === 0) onClose({ up: node.bytesWritten - nodeBase, down: client.bytesWritten - clientBase });
  };
  const fail = (): void => {
    client.destroy();
    node.destroy();
  };
  if (traffic === undefined) pump(client, node);
  else limitedPump(client, node, traffic, fail);
  if (node instanceof NodeSocket) pumpFromNode(node, client, watcher);
  else pump(node, client, watcher);
  // When one side is gone, the other may flush what it has, then it goes too. ('close' comes once: on() spares once()'s wrapper.)
  client.on("error", fail).on("close", () => (endThenDestroy(node, LINGER_MS.relay), closed()));
  node.on("error", fail).on("close", () => (endThenDestroy(client, LINGER_MS.relay), closed()));
  client.resume();
  node.resume();
}
