import type { Socket } from "node:net";
import { LINGER_MS, endThenDestroy } from "../net/linger.js";
import { readIntoSharedBuffer } from "./shared-read.js";
import { STREAM_OPEN, afterChunk, streamClosed } from "./stream-close.js";
import { TrafficMeter, type ClientTrafficLimit } from "./traffic-limit.js";

export type { ClientTrafficLimit } from "./traffic-limit.js";

export interface RelayStats {
  /** Bytes from the client to the node. */
  up: number;
  /** Bytes from the node to the client. */
  down: number;
  /**
   * The client's last bytes were `</stream:stream>`: it closed its stream, so
   * its session cannot be resumed (a connection that broke may be).
   */
  clean: boolean;
}

/** Sees each chunk the node sends, before the client gets it, until it returns false (the login's verdict scan). */
export type NodeWatcher = (chunk: Buffer) => boolean;

/** Where a relayed socket keeps its relay: the listeners below are shared by every socket and find it there. */
const RELAY = Symbol("relay");
type RelayedSocket = Socket & { [RELAY]: Relay };

/**
 * One relayed connection: a client, its node, and what the relay must
 * remember of them. Every event of both sockets goes to one of the functions
 * below, shared by all relays, so an idle relay holds this object and no
 * closures.
 */
class Relay {
  private open = 2;
  /** How the client's bytes so far end (see stream-close.ts): one number, no buffer. */
  clientEnd = STREAM_OPEN;

  constructor(
    readonly client: Socket,
    readonly node: Socket,
    private readonly onClose: (stats: RelayStats) => void,
    private readonly clientBase: number,
    private readonly nodeBase: number,
    /** Dropped once it has its verdict. */
    public watcher: NodeWatcher | undefined,
  ) {}

  peerOf(socket: Socket): Socket {
    return socket === this.client ? this.node : this.client;
  }

  /** A chunk from `from`, passed to its peer as it is; when the peer's buffer is full, `from` pauses until it drains. */
  carry(from: Socket, chunk: Buffer): void {
    if (from === this.client) this.clientEnd = afterChunk(this.clientEnd, chunk);
    else if (this.watcher !== undefined && !this.watcher(chunk)) this.watcher = undefined;
    if (!this.peerOf(from).write(chunk)) from.pause();
  }

  sideClosed(): void {
    if (--this.open > 0) return;
    this.onClose({ up: this.node.bytesWritten - this.nodeBase, down: this.client.bytesWritten - this.clientBase, clean: streamClosed(this.clientEnd) });
  }
}

const relayOf = (socket: Socket): Relay => (socket as RelayedSocket)[RELAY];

/**
 * A read in the shared buffer, copied once for the write: a write the kernel
 * does not take at once keeps its buffer until it does, and the shared one is
 * read into again at the next read of any socket.
 */
function onSharedRead(this: Socket, length: number, bytes: Buffer): void {
  const chunk = Buffer.allocUnsafe(length);
  bytes.copy(chunk, 0, 0, length);
  relayOf(this).carry(this, chunk);
}

/** A socket that cannot read into the shared buffer: its own chunks, with no copy. */
function onData(this: Socket, chunk: Buffer): void {
  relayOf(this).carry(this, chunk);
}

function onDrain(this: Socket): void {
  relayOf(this).peerOf(this).resume();
}

/** A FIN is passed on as a FIN (half-close): a closing `</stream:stream>` and its answer both get through. */
function onEnd(this: Socket): void {
  relayOf(this).peerOf(this).end();
}

/** An error or reset on either side tears down both. */
function onError(this: Socket): void {
  const relay = relayOf(this);
  relay.client.destroy();
  relay.node.destroy();
}

/** When one side is gone, the other may flush what it has, then it goes too. */
function onSocketClose(this: Socket): void {
  const relay = relayOf(this);
  endThenDestroy(relay.peerOf(this), LINGER_MS.relay);
  relay.sideClosed();
}

/**
 * One direction of a relay: bytes are written as they arrive, with no parsing;
 * the source reads into the shared buffer where it can (see shared-read.ts).
 * A FIN that came before the relay started is passed on too.
 */
function pump(from: Socket, to: Socket): void {
  if (!readIntoSharedBuffer(from, onSharedRead)) from.on("data", onData);
  to.on("drain", onDrain);
  if (from.readableEnded) to.end();
  else from.on("end", onEnd);
}

/**
 * The client-to-node direction under a traffic limit: each chunk is counted,
 * and reading pauses while either the node is full (backpressure) or the
 * client is over its rate; the other direction stays the plain pump, so a
 * relay without a limit pays nothing for it.
 */
function limitedPump(state: Relay, from: Socket, to: Socket, traffic: ClientTrafficLimit, disconnect: () => void): void {
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
    state.clientEnd = afterChunk(state.clientEnd, chunk);
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
 * once, with the byte counts and whether the client closed its stream. With a
 * traffic limit, what the client sends is metered (see limitedPump). A watcher
 * sees what the node sends (see NodeWatcher).
 */
export function relay(client: Socket, node: Socket, onClose: (stats: RelayStats) => void, traffic?: ClientTrafficLimit, watcher?: NodeWatcher): void {
  const state = new Relay(client, node, onClose, client.bytesWritten, node.bytesWritten, watcher);
  (client as RelayedSocket)[RELAY] = state;
  (node as RelayedSocket)[RELAY] = state;
  if (traffic === undefined) pump(client, node);
  else limitedPump(state, client, node, traffic, () => onError.call(client));
  pump(node, client);
  // 'close' comes once: on() spares once()'s wrapper.
  client.on("error", onError).on("close", onSocketClose);
  node.on("error", onError).on("close", onSocketClose);
  client.resume();
  node.resume();
}
