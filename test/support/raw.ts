import net from "node:net";
import tls from "node:tls";
import { readFileSync } from "node:fs";

export const DOMAIN = "lb.test";
export const CA = readFileSync(new URL("../../examples/tls/ca.pem", import.meta.url));
export const STREAM_OPEN = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${DOMAIN}' version='1.0'>`;

/** A hand-driven XMPP client over a raw socket: for exact bytes and bad input. */
export class RawXmpp {
  private text = "";
  private waiters: Array<() => void> = [];
  closed: Promise<void>;
  private socket: net.Socket;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    this.attach(socket);
  }

  private attach(socket: net.Socket): void {
    socket.on("data", (chunk: Buffer) => {
      this.text += chunk.toString("utf8");
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** `localAddress` (plain TCP only): the loopback address to connect from (all of 127.0.0.0/8 works), to tell clients apart. */
  static connect(port: number, host = "127.0.0.1", opts: { directTls?: boolean; maxTlsVersion?: tls.SecureVersion; localAddress?: string } = {}): Promise<RawXmpp> {
    return new Promise((resolve, reject) => {
      const socket = opts.directTls
        ? tls.connect({ host, port, ca: CA, servername: DOMAIN, ALPNProtocols: ["xmpp-client"], maxVersion: opts.maxTlsVersion }, () => resolve(new RawXmpp(socket)))
        : net.connect({ host, port, localAddress: opts.localAddress }, () => resolve(new RawXmpp(socket)));
      socket.once("error", reject);
    });
  }

  get received(): string {
    return this.text;
  }

  get tlsSocket(): tls.TLSSocket | undefined {
    return this.socket instanceof tls.TLSSocket ? this.socket : undefined;
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Resolves with everything received so far once it matches `pattern`; rejects on timeout or close. */
  async until(pattern: RegExp, timeoutMs = 5000): Promise<string> {
    await this.match(pattern, 0, timeoutMs);
    return this.text;
  }

  /**
   * Resolves with `pattern`'s match in what arrived after offset `from` of
   * `received` (e.g. its length before a request: only the answer counts);
   * rejects on timeout or close.
   */
  async match(pattern: RegExp, from = 0, timeoutMs = 5000): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = pattern.exec(this.text.slice(from));
      if (m !== null) return m;
      if (this.socket.destroyed) throw new Error(`closed before ${pattern}; got: ${this.text}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${pattern}; got: ${this.text}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => (clearTimeout(t), resolve()));
      });
    }
  }

  /** Half-closes: sends a FIN, keeps reading. */
  end(): void {
    this.socket.end();
  }

  /** Sends <starttls/>, waits for <proceed/>, and upgrades with the development CA. */
  async starttls(maxVersion?: tls.SecureVersion): Promise<void> {
    this.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    await this.until(/<proceed/);
    this.socket.removeAllListeners("data");
    this.text = "";
    const secure = tls.connect({ socket: this.socket, ca: CA, servername: DOMAIN, maxVersion });
    await new Promise<void>((resolve, reject) => {
      secure.once("secureConnect", () => resolve());
      secure.once("error", reject);
    });
    this.socket = secure;
    this.closed = new Promise((resolve) => secure.once("close", () => resolve()));
    this.attach(secure);
  }

  /** Opens a stream, does STARTTLS and opens the stream again: ready for SASL. */
  async secureStream(header = STREAM_OPEN): Promise<void> {
    this.send(STREAM_OPEN);
    await this.until(/<\/stream:features>/);
    await this.starttls();
    this.send(header);
    await this.until(/<\/stream:features>/);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export const plainAuth = (user: string, password: string): string =>
  `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${password}`).toString("base64")}</auth>`;

/** A TCP listener that counts connections: stands where a node's address must never be dialed. */
export async function trapListener(host = "127.0.0.1"): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  let count = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    count += 1;
    sockets.add(s);
    s.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => count,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}

/**
 * A direct TLS handshake with the balancer, offering `session` for resumption:
 * whether the server resumed it, and the ticket to offer next time (a new one
 * if the server sent one, else the one offered).
 */
export async function tlsResumption(port: number, session?: Buffer): Promise<{ reused: boolean; session: Buffer }> {
  const socket = tls.connect({ host: "127.0.0.1", port, ca: CA, servername: DOMAIN, ALPNProtocols: ["xmpp-client"], session });
  try {
    let ticket: Buffer | undefined;
    socket.on("session", (t: Buffer) => (ticket = t));
    await new Promise<void>((resolve, reject) => socket.once("secureConnect", resolve).once("error", reject));
    const reused = socket.isSessionReused();
    socket.write(STREAM_OPEN); // TLS 1.3 tickets come after the handshake, with the balancer's first answer
    socket.resume();
    const deadline = Date.now() + (session === undefined ? 3000 : 500);
    while (ticket === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const next = ticket ?? session;
    if (next === undefined) throw new Error("no session ticket within 3 s");
    return { reused, session: next };
  } finally {
    socket.destroy();
  }
}
