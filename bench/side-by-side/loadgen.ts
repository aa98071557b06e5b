import net from "node:net";
import tls from "node:tls";

/** Where a contender takes clients: plaintext, or TLS it terminates. */
export interface Endpoint {
  port: number;
  tls: boolean;
  domain: string;
}

const header = (domain: string): string =>
  `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${domain}' version='1.0'>`;
const plain = (user: string, password: string): string =>
  `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${password}`).toString("base64")}</auth>`;

/** A client socket that collects what it reads until told to stop, for the dialogue steps. */
class Conversation {
  private text = "";
  private wanted: { pattern: RegExp; resolve: () => void; reject: (e: Error) => void } | undefined;

  constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on("data", this.onData);
    socket.on("error", () => {});
    socket.once("close", () => this.wanted?.reject(new Error(`closed; got ${this.text.slice(-300)}`)));
  }

  private readonly onData = (d: Buffer): void => {
    this.text += d.toString("latin1");
    if (this.wanted?.pattern.test(this.text)) {
      const { resolve } = this.wanted;
      this.wanted = undefined;
      this.text = "";
      resolve();
    }
  };

  /** Sends `data` and waits until what comes back matches `pattern`. */
  exchange(data: string, pattern: RegExp, timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${pattern} within ${timeoutMs} ms; got ${this.text.slice(-300)}`)), timeoutMs);
      this.wanted = { pattern, resolve: () => (clearTimeout(timer), resolve()), reject: (e) => (clearTimeout(timer), reject(e)) };
      this.socket.write(data);
      this.onData(Buffer.alloc(0));
    });
  }

  /** Leaves the dialogue: the caller reads the socket from now on. */
  release(): net.Socket {
    this.socket.off("data", this.onData);
    this.socket.removeAllListeners("close");
    return this.socket;
  }
}

/** A reconnecting client's TLS session: the latest ticket the server sent it, offered on its next connection. */
export interface TlsResumption {
  ticket?: Buffer;
  /** How many handshakes were resumed (the server took the ticket). */
  resumed: number;
}

export function connect(ep: Endpoint, resumption?: TlsResumption): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    let socket: net.Socket;
    if (ep.tls) {
      const secure = tls.connect({ port: ep.port, host: "127.0.0.1", rejectUnauthorized: false, ALPNProtocols: ["xmpp-client"], session: resumption?.ticket }, () => {
        if (resumption !== undefined && secure.isSessionReused()) resumption.resumed++;
        resolve(secure);
      });
      if (resumption !== undefined) secure.on("session", (ticket: Buffer) => (resumption.ticket = ticket));
      socket = secure;
    } else {
      socket = net.connect({ port: ep.port, host: "127.0.0.1" }, () => resolve(socket));
    }
    socket.once("error", reject);
  });
}

/** Logs in (PLAIN) and restarts the stream: the session is then in the echo (or the node's hands). */
export async function openSession(ep: Endpoint, user = "bench", password = "bench"): Promise<net.Socket> {
  const talk = new Conversation(await connect(ep));
  await talk.exchange(header(ep.domain), /<\/stream:features>/);
  await talk.exchange(plain(user, password), /<success/);
  await talk.exchange(header(ep.domain), /<stream:features\/>|<\/stream:features>/);
  return talk.release();
}

/** `count` sessions (openSession), opened 100 at a time. */
export async function openMany(ep: Endpoint, count: number): Promise<net.Socket[]> {
  const sockets: net.Socket[] = [];
  for (let i = 0; i < count; i += 100) sockets.push(...(await Promise.all(Array.from({ length: Math.min(100, count - i) }, () => openSession(ep)))));
  return sockets;
}

/** A full login to a real node: TLS (the endpoint's, resumed when a ticket is given), PLAIN, bind, then a clean close. */
export async function fullLogin(ep: Endpoint, user: string, password: string, resource: string, resumption?: TlsResumption): Promise<void> {
  const talk = new Conversation(await connect(ep, resumption));
  await talk.exchange(header(ep.domain), /<\/stream:features>/);
  await talk.exchange(plain(user, password), /<success/);
  await talk.exchange(header(ep.domain), /<\/stream:features>/);
  await talk.exchange(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${resource}</resource></bind></iq>`, /<\/iq>/);
  const socket = talk.release();
  await new Promise<void>((resolve) => {
    socket.once("close", () => resolve());
    socket.end("</stream:stream>");
    socket.resume();
  });
}

/** Up to the balancer's answer to <auth/> in redirect mode: its see-other-host, then the close. */
export async function redirectedLogin(ep: Endpoint, user: string, password: string): Promise<void> {
  const talk = new Conversation(await connect(ep));
  await talk.exchange(header(ep.domain), /<\/stream:features>/);
  await talk.exchange(plain(user, password), /<see-other-host/);
  talk.release().destroy();
}

/**
 * Each session sends a 200-byte stanza and waits for all of it to come back,
 * over and over, until `stop` resolves. Returns the round trips completed.
 */
export async function pingPong(sessions: net.Socket[], stop: Promise<void>): Promise<number> {
  const open = "<message to='echo@bench.test' type='chat'><body>";
  const close = "</body></message>";
  const stanza = Buffer.from(open + "x".repeat(200 - open.length - close.length) + close);
  let trips = 0;
  let running = true;
  void stop.then(() => (running = false));
  await Promise.all(
    sessions.map(
      (socket) =>
        new Promise<void>((resolve) => {
          let pending = stanza.length;
          socket.on("data", (d: Buffer) => {
            pending -= d.length;
            if (pending > 0) return;
            trips++;
            if (!running) return resolve();
            pending = stanza.length;
            socket.write(stanza);
          });
          socket.once("close", () => resolve());
          socket.write(stanza);
        }),
    ),
  );
  return trips;
}
