// Test fixture: an XMPP client with XEP-0198 stream management counted by the
// book, on a raw stream, for the tests that count messages (sent against
// received) across node restarts. Why not a library: @xmpp/client 0.14 leaves
// the iq results its iqCaller takes out of `h`, resets `h` after <enabled/>
// asynchronously (so an <r/> that comes early gets the old count, and ejabberd
// ends the stream) and restarts its ack-request timer at every send (so at
// more than a few messages a second it never asks); slixmpp 1.8.3 counts `h`
// right but empties its queue of unacknowledged stanzas when it sends
// <resume/>, so it resends nothing after a resumption.
//
// What it does: STARTTLS (the development CA), SASL PLAIN, bind (always the
// same resource), <enable resume='true'/>, initial presence (which also
// brings messages stored offline). Every stanza sent after <enable/> is kept
// until the server's <a h/> covers it, and each message is followed by <r/>.
// Every <r/> from the server is answered with <a h/>, where h counts each
// message, presence and iq received since <enabled/> (or since <resumed/>,
// from the count given in <resume/>). When the connection drops without its
// close() (the node stopped, was killed, or the test broke it), it connects
// again through the same address: <resume/> first; on <resumed h/> the
// stanzas after h are sent again; on <failed/> it binds and enables anew and
// sends again every message not acknowledged (at least once: receivers keep
// message ids, so a duplicate is seen as one). close() ends the stream with
// </stream:stream>, as a client that logs out does.

import { Parser, type Element } from "@xmpp/xml";
import net from "node:net";
import tls from "node:tls";
import { StringDecoder } from "node:string_decoder";
import { CA } from "./raw.js";
import { sleep } from "./wait.js";

const NS_SM = "urn:xmpp:sm:3";
const NS_DISCO = "http://jabber.org/protocol/disco#info";

export interface SmClientOptions {
  port: number;
  host?: string;
  domain?: string;
  username: string;
  password: string;
  resource?: string;
  /** Each attempt's deadline, from connect to an open session (default 10 s). */
  connectTimeoutMs?: number;
}

/** One session the client had: where, since when, and whether it resumed the previous one. */
export interface SmSession {
  node: string;
  at: number;
  resumed: boolean;
}

interface Unacked {
  seq: number;
  xml: string;
  /** A message's id (resent after <failed/>); null for other stanzas (the session's own: presence, iq). */
  messageId: string | null;
}

const esc = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/'/g, "&apos;").replace(/"/g, "&quot;");

/** Reads one stream: top-level elements in order, the root's end, or the connection's end. */
class StreamInput {
  private parser = new Parser();
  private readonly decoder = new StringDecoder("utf8");
  private queue: Array<Element | "end"> = [];
  private waiting: ((el: Element | "end") => void) | null = null;
  private onElement: ((el: Element | "end") => void) | null = null;

  constructor() {
    this.restart();
  }

  /** A new parser for the next stream header (after STARTTLS and SASL success). */
  restart(): void {
    this.parser = new Parser();
    this.parser.on("element", (el: Element) => this.push(el));
    this.parser.on("end", () => this.push("end"));
    this.parser.on("error", () => {}); // whitespace before the root
  }

  write(chunk: Buffer): void {
    this.parser.write(this.decoder.write(chunk));
  }

  ended(): void {
    this.push("end");
  }

  /** From now on every element goes to `reader`, starting with those queued. */
  takeOver(reader: (el: Element | "end") => void): void {
    this.onElement = reader;
    for (const el of this.queue.splice(0)) reader(el);
  }

  private push(el: Element | "end"): void {
    if (this.onElement !== null) this.onElement(el);
    else if (this.waiting !== null) {
      const w = this.waiting;
      this.waiting = null;
      w(el);
    } else this.queue.push(el);
  }

  /** The next element (or "end"); throws after `timeoutMs`. */
  next(timeoutMs: number): Promise<Element | "end"> {
    const queued = this.queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = null;
        reject(new Error("timed out waiting for the server"));
      }, timeoutMs);
      this.waiting = (el) => {
        clearTimeout(timer);
        resolve(el);
      };
    });
  }
}

export class SmClient {
  readonly jid: string;
  readonly resource: string;
  /** Message ids received, with how often (above 1: a duplicate after a resend). */
  readonly received = new Map<string, number>();
  /** When each message id first arrived (ms since epoch). */
  readonly receivedAt = new Map<string, number>();
  /** Message ids the server bounced back with type='error'. */
  readonly bounced: string[] = [];
  /** Every session so far, in order. */
  readonly sessions: SmSession[] = [];
  private readonly domain: string;
  private socket: net.Socket | tls.TLSSocket | null = null;
  private input = new StreamInput();
  private closing = false;
  private connected = false;
  private smId: string | null = null;
  /** Stanzas received since <enabled/> (XEP-0198 `h`), mod 2^32 in theory; never that far here. */
  private handled = 0;
  /** Stanzas sent since <enable/> (or the server's h at <resumed/>). */
  private outCount = 0;
  private unacked: Unacked[] = [];
  /** Messages written while no session was open: sent once one is. */
  private pending: Array<{ id: string; xml: string }> = [];
  private iqSeq = 0;
  private readonly iqWaiters = new Map<string, (el: Element) => void>();
  private loop: Promise<void> = Promise.resolve();
  /** Settles when the current connection's socket has closed. */
  private socketClosed: Promise<void> = Promise.resolve();
  private onlineWaiters: Array<() => void> = [];

  private constructor(private readonly opts: SmClientOptions) {
    this.domain = opts.domain ?? "lb.test";
    this.jid = `${opts.username}@${this.domain}`;
    this.resource = opts.resource ?? "sm";
  }

  /** Connects and opens a session; resolves once it is open. */
  static async connect(opts: SmClientOptions): Promise<SmClient> {
    const client = new SmClient(opts);
    await client.session();
    client.loop = client.stayConnected();
    return client;
  }

  /** The node of the current (or last) session. */
  get node(): string {
    return this.sessions.at(-1)?.node ?? "";
  }

  get online(): boolean {
    return this.connected;
  }

  /** Messages sent and not yet acknowledged by the server (queued ones included). */
  get unackedMessages(): number {
    return this.unacked.filter((u) => u.messageId !== null).length + this.pending.length;
  }

  /** Resolves once a session is open (at once if one is). */
  whenOnline(): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve) => this.onlineWaiters.push(resolve));
  }

  /** Sends a chat message with `id` as its id and body to a bare JID; queued while no session is open. */
  sendMessage(to: string, id: string): void {
    const xml = `<message to='${esc(to)}' type='chat' id='${esc(id)}'><body>${esc(id)}</body></message>`;
    if (!this.connected) {
      this.pending.push({ id, xml });
      return;
    }
    this.sendStanza(xml, id);
    this.write(`<r xmlns='${NS_SM}'/>`);
  }

  /** Breaks the connection without closing the stream (a network failure): the client reconnects and resumes. */
  breakConnection(): void {
    this.socket?.destroy();
  }

  /** Ends the stream with </stream:stream> and waits for the server's close; no reconnect. */
  async close(): Promise<void> {
    this.closing = true;
    const socket = this.socket;
    if (socket !== null && !socket.writableEnded) {
      const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
      socket.end("</stream:stream>");
      const timer = setTimeout(() => socket.destroy(), 3000);
      await closed;
      clearTimeout(timer);
    }
    await this.loop;
  }

  /** Gone at once, stream not closed (for the end of a test). */
  destroy(): void {
    this.closing = true;
    this.socket?.destroy();
  }

  private write(data: string): void {
    this.socket?.write(data);
  }

  /** A stanza counted by XEP-0198: kept until acknowledged. */
  private sendStanza(xml: string, messageId: string | null): void {
    this.outCount += 1;
    this.unacked.push({ seq: this.outCount, xml, messageId });
    this.write(xml);
  }

  private acked(h: number): void {
    while (this.unacked.length > 0 && this.unacked[0]!.seq <= h) this.unacked.shift();
  }

  /** Reconnects whenever the connection drops, until close(). */
  private async stayConnected(): Promise<void> {
    for (;;) {
      await this.socketClosed;
      this.connected = false;
      if (this.closing) return;
      for (let delay = 100; ; delay = Math.min(delay * 2, 1000)) {
        await sleep(delay);
        if (this.closing) return;
        try {
          await this.session();
          break;
        } catch {
          this.socket?.destroy();
        }
      }
    }
  }

  /** One connection: TLS, login, then resume or bind and enable; reading goes on in the background. */
  private async session(): Promise<void> {
    const timeout = this.opts.connectTimeoutMs ?? 10_000;
    const deadline = Date.now() + timeout;
    const left = (): number => Math.max(1, deadline - Date.now());
    const input = (this.input = new StreamInput());
    const plain = net.connect(this.opts.port, this.opts.host ?? "127.0.0.1");
    this.socket = plain;
    this.socketClosed = new Promise((resolve) => plain.once("close", () => resolve()));
    plain.on("error", () => {});
    plain.on("data", (c: Buffer) => input.write(c));
    plain.on("close", () => input.ended());
    const next = async (): Promise<Element> => {
      const el = await input.next(left());
      if (el === "end") throw new Error("the server closed the stream");
      if (el.is("error") && el.attrs.xmlns === undefined) throw new Error(`stream error: ${el.toString()}`);
      return el;
    };
    const header = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${this.domain}' version='1.0'>`;

    plain.write(header);
    await next(); // features: starttls
    plain.write("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    if (!(await next()).is("proceed")) throw new Error("STARTTLS refused");
    plain.removeAllListeners("data");
    const secure = tls.connect({ socket: plain, ca: CA, servername: this.domain });
    this.socket = secure;
    secure.on("error", () => {});
    await new Promise<void>((resolve, reject) => secure.once("secureConnect", resolve).once("error", reject));
    input.restart();
    secure.on("data", (c: Buffer) => input.write(c));
    secure.on("close", () => input.ended());
    secure.write(header);
    await next(); // features: mechanisms
    secure.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${this.opts.username}\0${this.opts.password}`).toString("base64")}</auth>`);
    if (!(await next()).is("success")) throw new Error("login refused");
    input.restart();
    secure.write(header);
    await next(); // features: bind, sm

    let resumed = false;
    if (this.smId !== null) {
      secure.write(`<resume xmlns='${NS_SM}' previd='${esc(this.smId)}' h='${this.handled}'/>`);
      const answer = await next();
      if (answer.is("resumed")) {
        resumed = true;
        // The server's count of what it got from us: the rest is sent again, counted anew from there.
        const h = Number(answer.attrs.h);
        this.acked(h);
        this.outCount = h;
        const again = this.unacked;
        this.unacked = [];
        for (const u of again) this.sendStanza(u.xml, u.messageId);
      } else {
        // <failed/>, maybe with the count of what the server handled (XEP-0198 1.6).
        if (answer.attrs.h !== undefined) this.acked(Number(answer.attrs.h));
        this.smId = null;
      }
    }
    if (!resumed) {
      secure.write(`<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${esc(this.resource)}</resource></bind></iq>`);
      const bound = await next();
      if (bound.attrs.type !== "result") throw new Error(`bind failed: ${bound.toString()}`);
      const lost = this.unacked.filter((u) => u.messageId !== null);
      this.unacked = [];
      this.outCount = 0;
      secure.write(`<enable xmlns='${NS_SM}' resume='true'/>`);
      const enabled = await next();
      if (!enabled.is("enabled")) throw new Error(`SM not enabled: ${enabled.toString()}`);
      this.smId = enabled.attrs.id ?? null;
      this.handled = 0;
      this.sendStanza("<presence/>", null);
      // Never acknowledged by the old session: sent again (a receiver may see one twice, never none).
      for (const u of lost) this.sendStanza(u.xml, u.messageId);
      this.write(`<r xmlns='${NS_SM}'/>`);
    }
    // From here on the session's reader takes every element.
    input.takeOver((el) => this.onElement(el));
    const node = await this.discoName();
    this.sessions.push({ node, at: Date.now(), resumed });
    this.connected = true;
    for (const m of this.pending.splice(0)) this.sendStanza(m.xml, m.id);
    this.write(`<r xmlns='${NS_SM}'/>`);
    for (const w of this.onlineWaiters.splice(0)) w();
  }

  /** The node's name: the server identity in disco#info (the test nodes name themselves). */
  private async discoName(): Promise<string> {
    const id = `disco-${++this.iqSeq}`;
    const answer = new Promise<Element>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no disco#info answer")), 10_000);
      this.iqWaiters.set(id, (el) => (clearTimeout(timer), resolve(el)));
    });
    this.sendStanza(`<iq type='get' to='${this.domain}' id='${id}'><query xmlns='${NS_DISCO}'/></iq>`, null);
    const result = await answer;
    const identity = result.getChild("query", NS_DISCO)?.getChildren("identity").find((i) => i.attrs.category === "server");
    return identity?.attrs.name ?? "?";
  }

  private onElement(el: Element | "end"): void {
    if (el === "end") {
      // The server closed its stream (a stream error came first, or a shutdown): answer, and let the connection go.
      if (this.socket !== null && !this.socket.writableEnded) this.socket.end("</stream:stream>");
      return;
    }
    if (el.attrs.xmlns === NS_SM) {
      if (el.is("r")) this.write(`<a xmlns='${NS_SM}' h='${this.handled}'/>`);
      else if (el.is("a")) this.acked(Number(el.attrs.h));
      return;
    }
    if (!el.is("message") && !el.is("presence") && !el.is("iq")) return;
    this.handled += 1;
    if (el.is("message")) {
      const id = el.attrs.id ?? el.getChildText("body") ?? "";
      if (el.attrs.type === "error") this.bounced.push(id);
      else if (el.getChild("body") !== undefined) {
        this.received.set(id, (this.received.get(id) ?? 0) + 1);
        if (!this.receivedAt.has(id)) this.receivedAt.set(id, Date.now());
      }
    } else if (el.is("iq")) {
      const waiter = el.attrs.id === undefined ? undefined : this.iqWaiters.get(el.attrs.id);
      if (waiter !== undefined && (el.attrs.type === "result" || el.attrs.type === "error")) {
        this.iqWaiters.delete(el.attrs.id!);
        waiter(el);
      } else if (el.attrs.type === "get" || el.attrs.type === "set") {
        // Pings and anything else asked of us: answered, so the server never waits on this client.
        this.sendStanza(`<iq type='result' id='${esc(el.attrs.id ?? "")}' to='${esc(el.attrs.from ?? this.domain)}'/>`, null);
      }
    }
  }
}
