import { client, xml, type Client } from "@xmpp/client";
import { DOMAIN } from "./raw.js";

export interface LoginOptions {
  /** Default 127.0.0.1 (the balancer under test). */
  host?: string;
  port: number;
  /** Default lb.test (the tests' domain). */
  domain?: string;
  username: string;
  password: string;
  resource?: string;
  directTls?: boolean;
  /** Keep @xmpp/client's automatic reconnect (for resumption); off by default so a test's client stays put. */
  reconnect?: boolean;
  /** Send `from='user@domain'` in the stream header, so phase open can decide on it. */
  announceJid?: boolean;
  /** Connect over XMPP over WebSocket (RFC 7395) to this ws:// URL instead of TCP. */
  websocket?: string;
}

/** Logs a real @xmpp/client in through the balancer; resolves once the resource is bound. */
export async function login(opts: LoginOptions): Promise<Client> {
  // Node 20 has no global WebSocket, which @xmpp/websocket expects: the `ws` package stands in.
  if (opts.websocket !== undefined) globalThis.WebSocket ??= (await import("ws")).WebSocket as unknown as typeof globalThis.WebSocket;
  const xmpp = client({
    service: opts.websocket ?? `${opts.directTls ? "xmpps" : "xmpp"}://${opts.host ?? "127.0.0.1"}:${opts.port}`,
    domain: opts.domain ?? DOMAIN,
    username: opts.username,
    password: opts.password,
    resource: opts.resource,
  });
  // @xmpp/client waits 2 s for each stream header; its SCRAM runs on this process's event loop beside the
  // balancer under test, and a slow machine can need longer without anything being wrong.
  (xmpp as unknown as { timeout: number }).timeout = 10_000;
  if (!opts.reconnect) xmpp.reconnect.stop();
  if (opts.announceJid) {
    // RFC 6120 4.7.1: a client that knows its JID may put it in `from`; xmpp.js 0.14 does only on TLS streams, this on every one.
    const header = xmpp.headerElement.bind(xmpp);
    xmpp.headerElement = () => {
      const el = header();
      el.attrs.from = `${opts.username}@${opts.domain ?? DOMAIN}`;
      return el;
    };
  }
  xmpp.on("error", () => {});
  await xmpp.start();
  return xmpp;
}

const DISCO_INFO = "http://jabber.org/protocol/disco#info";

/** The node a client is on: each test node names itself in disco#info (Prosody's `name` option). */
export async function nodeOf(xmpp: Client): Promise<string> {
  const result = await xmpp.iqCaller.request(xml("iq", { type: "get", to: xmpp.jid?.domain ?? DOMAIN }, xml("query", { xmlns: DISCO_INFO })), 5000);
  const identity = result.getChild("query", DISCO_INFO)?.getChildren("identity").find((i) => i.attrs.category === "server");
  if (identity?.attrs.name === undefined) throw new Error(`no server identity in ${result.toString()}`);
  return identity.attrs.name;
}

/** Where the client's TCP connection finally went (after any redirect). */
export function remoteOf(xmpp: Client): { host: string; port: number } {
  const socket = xmpp.socket?.socket ?? (xmpp.socket as unknown as import("node:net").Socket | null);
  if (!socket?.remoteAddress || !socket.remotePort) throw new Error("client has no socket");
  return { host: socket.remoteAddress, port: socket.remotePort };
}

export async function stopAll(clients: Client[]): Promise<void> {
  await Promise.all(clients.map((c) => c.stop().catch(() => {})));
}
