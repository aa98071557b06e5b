import net from "node:net";

/**
 * Every node socket reads into this one buffer (net's `onread`): each read is
 * consumed, copied or scanned, before its callback returns, and reads run one
 * at a time on the event loop, so one buffer serves every socket.
 */
const SHARED = Buffer.allocUnsafe(64 * 1024);

/** Takes one read: `length` bytes at the start of `bytes`, valid only during the call (copy what is kept). */
export type NodeRead = (bytes: Buffer, length: number) => void;

/**
 * The socket the balancer dials to a node. Its reads land in the shared
 * buffer, so no buffer is allocated per read; once a reader takes them (the
 * relay), they also skip the stream machinery ('data' events). Until then the
 * socket behaves as any other: each read is copied and pushed as a 'data'
 * chunk, for the stream setup, STARTTLS and the health probes. pause() and
 * resume() stop and start reading as usual; a FIN still ends the socket's
 * readable side ('end').
 */
export class NodeSocket extends net.Socket {
  private reader: NodeRead | null = null;

  constructor() {
    // net.Socket's constructor reads `onread` (net.connect passes it its options), though the typings list it for connect().
    const options: net.SocketConstructorOpts & net.ConnectOpts = { allowHalfOpen: true, onread: { buffer: SHARED, callback: onSharedRead } };
    super(options);
  }

  /** Gives every read to `reader` from now on, starting with what the stream holds already; a paused socket stays paused. */
  readWith(reader: NodeRead): void {
    const paused = this.isPaused();
    for (let chunk: Buffer | null; this.readableLength > 0 && (chunk = this.read() as Buffer | null) !== null; ) reader(chunk, chunk.length);
    this.reader = reader;
    if (paused) this.pause(); // read() starts reading again
  }

  /** One read into the shared buffer; false stops reading (the stream's buffer is full). */
  took(length: number): boolean {
    if (this.reader !== null) {
      this.reader(SHARED, length);
      return true;
    }
    const chunk = Buffer.allocUnsafe(length);
    SHARED.copy(chunk, 0, 0, length);
    return this.push(chunk);
  }
}

/**
 * Node calls the onread callback as a method of its socket (net's
 * onStreamRead: `stream[kBufferCb](nread, buffer)`), so one function serves
 * every socket, with no closure per connection.
 */
function onSharedRead(this: NodeSocket, length: number): boolean {
  return this.took(length);
}
