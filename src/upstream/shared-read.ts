import net, { type Socket } from "node:net";

/**
 * Relayed sockets, both the client's (plain or TLS) and the node's, read into
 * this one buffer (net's `onread` mode): no buffer is allocated per read and
 * no 'data' event goes through the stream machinery. Each read is consumed
 * (copied or scanned) before its callback returns, and reads run one at a
 * time on the event loop, so one buffer serves every socket.
 */
const SHARED = Buffer.allocUnsafe(64 * 1024);

/**
 * Takes one read, called as a method of the socket that read it (so one
 * function serves every socket): `length` bytes at the start of `bytes`, valid
 * only during the call (copy what is kept).
 */
export type SharedRead = (this: Socket, length: number, bytes: Buffer) => void;

/** The two socket properties net's `onread` mode reads: the buffer and the callback. */
interface OnreadKeys {
  buffer: symbol;
  callback: symbol;
}

/**
 * Node 20 takes `onread` only as an option of the socket's constructor, which
 * the balancer never calls for the sockets that matter: a listener builds the
 * accepted ones, TLS builds its own. So the mode's two (private) properties are
 * found once on a probe socket built with `onread`, and set on a socket when
 * it switches, which is all the constructor does. Null where they cannot be
 * found (a Node that changed them): sockets then keep 'data' events.
 */
function findOnreadKeys(): OnreadKeys | null {
  const callback = (): void => {};
  // The typings list `onread` for connect() only; the constructor reads it (net.connect passes it on).
  const probe = new net.Socket({ onread: { buffer: SHARED, callback } } as net.SocketConstructorOpts);
  let buffer: symbol | undefined;
  let callbackKey: symbol | undefined;
  for (const key of Object.getOwnPropertySymbols(probe)) {
    const value = (probe as unknown as Record<symbol, unknown>)[key];
    if (value === SHARED) buffer = key;
    else if (value === callback) callbackKey = key;
  }
  probe.destroy();
  return buffer !== undefined && callbackKey !== undefined ? { buffer, callback: callbackKey } : null;
}

const KEYS = findOnreadKeys();

/** Whether this Node lets sockets switch to shared-buffer reads (tests check it does, on the Node they run). */
export const sharedReadsAvailable = KEYS !== null;

/**
 * Switches `socket` to shared-buffer reads: from now on `onRead` gets every
 * read, starting with what the socket's stream holds already. A paused socket
 * stays paused; pause() and resume() stop and start reading as before; a FIN
 * still ends the readable side ('end'). Returns false, changing nothing, when
 * the socket cannot switch (no native handle under it, or no such mode in this
 * Node): the caller reads 'data' events instead.
 */
export function readIntoSharedBuffer(socket: Socket, onRead: SharedRead): boolean {
  const handle = (socket as unknown as { _handle: { useUserBuffer?: (buffer: Uint8Array) => void } | null })._handle;
  if (KEYS === null || typeof handle?.useUserBuffer !== "function") return false;
  const paused = socket.isPaused();
  for (let chunk: Buffer | null; socket.readableLength > 0 && (chunk = socket.read() as Buffer | null) !== null; ) onRead.call(socket, chunk.length, chunk);
  const fields = socket as unknown as Record<symbol, unknown>;
  fields[KEYS.buffer] = SHARED;
  fields[KEYS.callback] = onRead;
  handle.useUserBuffer(SHARED);
  if (paused) socket.pause(); // read() starts reading again
  return true;
}
