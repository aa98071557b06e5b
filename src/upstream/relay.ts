import type { Socket } from "node:net";
import { LINGER_MS, endThenDestroy } from "../net/linger.js";

export interface RelayStats {
  /** Bytes from the client to the node. */
  up: number;
  /** Bytes from the node to the client. */
  down: number;
}

/**
 * One direction of a relay: bytes are written as they arrive, with no parsing
 * and no copy; when the destination's buffer is full the source is paused
 * until it drains (backpressure). A FIN is passed on as a FIN (half-close), so
 * a closing `</stream:stream>` and its answer both get through, including a
 * FIN that came before the relay started.
 */
function pump(from: Socket, to: Socket): void {
  from.on("data", (chunk: Buffer) => {
    if (!to.write(chunk)) from.pause();
  });
  to.on("drain", () => from.resume());
  if (from.readableEnded) to.end();
  else from.on("end", () => to.end());
}

/**
 * Relays bytes both ways between a client and a node until both sides are
 * closed; an error or reset on either side tears down both. `onClose` runs
 * once, with the byte counts.
 */
export function relay(client: Socket, node: Socket, onClose: (stats: RelayStats) => void): void {
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
  pump(client, node);
  pump(node, client);
  // When one side is gone, the other may flush what it has, then it goes too.
  client.on("error", fail).once("close", () => (endThenDestroy(node, LINGER_MS.relay), closed()));
  node.on("error", fail).once("close", () => (endThenDestroy(client, LINGER_MS.relay), closed()));
  client.resume();
  node.resume();
}
