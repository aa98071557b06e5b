import type { Socket } from "node:net";

export interface RelayStats {
  /** Bytes from the client to the node. */
  up: number;
  /** Bytes from the node to the client. */
  down: number;
}

/** How long a side that has been sent our FIN may take to close in turn. */
const LINGER_MS = 10_000;

/**
 * One direction of a relay: bytes are written as they arrive, with no parsing
 * and no copy; when the destination's buffer is full the source is paused
 * until it drains (backpressure). A FIN is passed on as a FIN (half-close), so
 * a closing `</stream:stream>` and its answer both get through.
 */
function pump(from: Socket, to: Socket): void {
  from.on("data", (chunk: Buffer) => {
    if (!to.write(chunk)) from.pause();
  });
  to.on("drain", () => from.resume());
  from.on("end", () => to.end());
}

/** When one side is gone: let the other flush what it has, then make sure it goes too. */
function closeAfter(other: Socket): void {
  if (other.destroyed) return;
  if (!other.writableEnded) other.end();
  setTimeout(() => other.destroy(), LINGER_MS).unref();
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
  client.on("error", fail).once("close", () => (closeAfter(node), closed()));
  node.on("error", fail).once("close", () => (closeAfter(client), closed()));
  client.resume();
  node.resume();
}
