import { once } from "node:events";
import { WebSocket } from "ws";

export const FRAMING = "urn:ietf:params:xml:ns:xmpp-framing";
/** An RFC 7395 stream opening for the tests' domain. */
export const WS_OPEN = `<open xmlns='${FRAMING}' to='lb.test' version='1.0'/>`;

export interface RawWebSocket {
  socket: WebSocket;
  /** Every message received, as text. */
  messages: string[];
  /** Resolves when the connection closes, with the close code. */
  closed: Promise<number>;
  /** Waits for a message matching `pattern` (or the close). */
  until(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

/** A raw RFC 7395 client: sends messages, collects what comes back until the server closes. */
/** `localAddress`: the loopback address to connect from (all of 127.0.0.0/8 works), to tell clients apart. */
export async function rawWebSocket(url: string, options: { protocol?: string; origin?: string; rejectUnauthorized?: boolean; localAddress?: string } = {}): Promise<RawWebSocket> {
  const socket = new WebSocket(url, options.protocol === undefined ? ["xmpp"] : [options.protocol], { origin: options.origin, rejectUnauthorized: options.rejectUnauthorized, localAddress: options.localAddress });
  const messages: string[] = [];
  socket.on("message", (data) => void messages.push(data.toString()));
  const closed = once(socket, "close").then(([code]) => code as number);
  await once(socket, "open");
  const until = async (pattern: RegExp, timeoutMs = 5000): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = messages.find((m) => pattern.test(m));
      if (found !== undefined) return found;
      if (socket.readyState === socket.CLOSED) throw new Error(`closed without ${pattern}: ${JSON.stringify(messages)}`);
      if (Date.now() > deadline) throw new Error(`no ${pattern} within ${timeoutMs} ms: ${JSON.stringify(messages)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  return { socket, messages, closed, until };
}

/** The HTTP status a refused upgrade gets. */
export async function upgradeStatus(url: string, options: { protocol: string; origin?: string }): Promise<number> {
  const socket = new WebSocket(url, [options.protocol], { origin: options.origin });
  socket.on("error", () => {});
  const [, response] = (await once(socket, "unexpected-response")) as [unknown, { statusCode: number }];
  socket.terminate();
  return response.statusCode;
}

export const plainAuthXml = (user: string, password: string): string => `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${password}`).toString("base64")}</auth>`;
