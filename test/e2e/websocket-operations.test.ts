import assert from "node:assert/strict";
import { once } from "node:events";
import net from "node:net";
import tls from "node:tls";
import { after, before, describe, it } from "node:test";
import { xml, type Client } from "@xmpp/client";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { login, nodeOf, stopAll } from "../support/clients.js";
import { nodeFlags, startProsodyCluster, type ProsodyCluster } from "../support/prosody.js";
import { WS_OPEN, plainAuthXml, rawWebSocket } from "../support/websocket.js";

const PASSWORD = "websocket ops pass";
const UPGRADE = (port: number): string =>
  `GET /xmpp-websocket HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n`;

/** Sends `bytes` on a fresh TCP connection and reads until the server closes it: what came back, and after how long. */
async function exchange(port: number, bytes: string | Buffer, options: { secure?: boolean } = {}): Promise<{ text: string; ms: number }> {
  const started = Date.now();
  const socket = options.secure ? tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false }) : net.connect(port, "127.0.0.1");
  socket.on("error", () => {});
  let text = "";
  socket.on("data", (chunk: Buffer) => void (text += chunk.toString("latin1")));
  await once(socket, options.secure ? "secureConnect" : "connect");
  if (bytes.length > 0) socket.write(bytes);
  await once(socket, "close");
  return { text, ms: Date.now() - started };
}

/** A TCP connection that stays open until the test ends it. */
async function holdOpen(port: number, bytes: string): Promise<net.Socket> {
  const socket = net.connect(port, "127.0.0.1");
  socket.on("error", () => {});
  await once(socket, "connect");
  socket.write(bytes);
  return socket;
}

const proxyV1 = (source: string, sourcePort: number, port: number): string => `PROXY TCP4 ${source} 127.0.0.1 ${sourcePort} ${port}\r\n`;

describe("WebSocket listeners in operation", () => {
  let cluster: ProsodyCluster;
  const balancers: TestBalancer[] = [];
  const clients: Client[] = [];
  const sockets: net.Socket[] = [];
  const balancer = async (listen: string[], extra: Parameters<typeof startBalancer>[0] = {}): Promise<TestBalancer> => {
    const lb = await startBalancer({ listen, allowPlaintext: true, node: nodeFlags(cluster.nodes), ...extra });
    balancers.push(lb);
    return lb;
  };

  before(async () => {
    cluster = await startProsodyCluster({ count: 2, externalPort: 0, websocket: true, users: ["opsann", "opsben", "opscat", "opsdan"].map((u) => [u, PASSWORD]) });
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await stopAll(clients);
    await Promise.all(balancers.map((b) => b.close()));
    await cluster?.stop();
  });

  describe("connection limits", () => {
    it("refuses a connection past --max-connections-per-address with HTTP 429, counted by reason", async () => {
      const lb = await balancer(["ws://127.0.0.1:0/xmpp-websocket"], { maxConnectionsPerAddress: 1 });
      const first = await rawWebSocket(`ws://127.0.0.1:${lb.port}/xmpp-websocket`);
      const second = await exchange(lb.port, UPGRADE(lb.port));
      assert.match(second.text, /^HTTP\/1\.1 429 Too Many Requests\r\n/);
      assert.match(second.text, /too many connections from your address/);
      // The first one is untouched, and once it goes the address may connect again.
      first.socket.send(WS_OPEN);
      await first.until(/<mechanisms/);
      first.socket.terminate();
      await first.closed;
      await new Promise((r) => setTimeout(r, 50));
      const third = await rawWebSocket(`ws://127.0.0.1:${lb.port}/xmpp-websocket`);
      third.socket.terminate();
      const rejected = await lb.balancer.metrics.registry.getSingleMetricAsString("xmpp_lb_rejected_total");
      assert.match(rejected, /reason="address-connections"} 1/);
    });

    it("shares --max-connections with the TCP listeners: a TCP session takes the slot a WebSocket then cannot (HTTP 503)", async () => {
      const lb = await balancer(["127.0.0.1:0", "ws://127.0.0.1:0/xmpp-websocket"], { maxConnections: 1 });
      const tcp = await holdOpen(lb.ports[0]!, "");
      sockets.push(tcp);
      await new Promise((r) => setTimeout(r, 50));
      const refused = await exchange(lb.ports[1]!, UPGRADE(lb.ports[1]!));
      assert.match(refused.text, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
      tcp.destroy();
    });

    it("counts a WebSocket client in the pre-auth dialogue until it is forwarded", async () => {
      const lb = await balancer(["ws://127.0.0.1:0/xmpp-websocket"], { maxPreauthConnections: 1, mode: "forward" });
      const url = `ws://127.0.0.1:${lb.port}/xmpp-websocket`;
      const ann = await rawWebSocket(url);
      ann.socket.send(WS_OPEN);
      await ann.until(/<mechanisms/);
      // Ann is mid-login: the one pre-auth slot is hers.
      assert.match((await exchange(lb.port, UPGRADE(lb.port))).text, /^HTTP\/1\.1 503 /);
      ann.socket.send(plainAuthXml("opsann", PASSWORD));
      await ann.until(/<success/);
      // Forwarded: she no longer counts, and the next login may start.
      const ben = await login({ port: 0, websocket: url, username: "opsben", password: PASSWORD });
      clients.push(ben);
      ann.socket.terminate();
    });

    it("closes a connection that sends no upgrade within the login timeout", async () => {
      const lb = await balancer(["ws://127.0.0.1:0/xmpp-websocket"], { loginTimeout: 1 });
      const { ms } = await exchange(lb.port, "GET /xmpp-websocket HTTP/1.1\r\nHost: x\r\n");
      assert.ok(ms >= 900 && ms < 3000, `closed after ${ms} ms`);
    });

    it("closes a wss:// connection stalled in its TLS handshake at --tls-handshake-timeout", async () => {
      const lb = await balancer(["wss://127.0.0.1:0/xmpp-websocket"], { tlsHandshakeTimeout: 1, loginTimeout: 10 });
      // The first bytes of a ClientHello, and nothing more.
      const { ms } = await exchange(lb.port, Buffer.from([0x16, 0x03, 0x01, 0x00, 0xc8, 0x01]));
      assert.ok(ms >= 900 && ms < 3000, `closed after ${ms} ms`);
    });
  });

  describe("PROXY protocol", () => {
    it("reads the front's header on ws:// and wss://, and applies the per-address limit to the client it names", async () => {
      const lb = await balancer(["ws://127.0.0.1:0/xmpp-websocket,proxy", "wss://127.0.0.1:0/xmpp-websocket,proxy"], { maxConnectionsPerAddress: 1 });
      const [plain, secure] = lb.ports as [number, number];
      const held = await holdOpen(plain, proxyV1("203.0.113.7", 40000, plain) + UPGRADE(plain));
      sockets.push(held);
      await new Promise((r) => setTimeout(r, 100));
      // The same client address through the front: over its limit.
      assert.match((await exchange(plain, proxyV1("203.0.113.7", 40001, plain) + UPGRADE(plain))).text, /^HTTP\/1\.1 429 /);
      // Another client address through the same front: upgraded (101), then closed by the test.
      const other = net.connect(plain, "127.0.0.1");
      other.write(proxyV1("203.0.113.8", 40002, plain) + UPGRADE(plain));
      const [answer] = (await once(other, "data")) as [Buffer];
      assert.match(answer.toString(), /^HTTP\/1\.1 101 Switching Protocols\r\n/);
      other.destroy();
      // wss://: the header comes before the TLS handshake.
      const raw = net.connect(secure, "127.0.0.1");
      await once(raw, "connect");
      raw.write(proxyV1("203.0.113.9", 40003, secure));
      const tlsSocket = tls.connect({ socket: raw, rejectUnauthorized: false });
      await once(tlsSocket, "secureConnect");
      tlsSocket.write(UPGRADE(secure));
      const [secureAnswer] = (await once(tlsSocket, "data")) as [Buffer];
      assert.match(secureAnswer.toString(), /^HTTP\/1\.1 101 Switching Protocols\r\n/);
      tlsSocket.destroy();
      // No header at all: not the front this listener expects, closed without an answer.
      assert.equal((await exchange(plain, UPGRADE(plain))).text, "");
      held.destroy();
    });
  });

  describe("behind an HTTP front (forwarded-for)", () => {
    it("counts the address the front appended to X-Forwarded-For, not the front's, nor what the client claimed before it", async () => {
      const lb = await balancer(["ws://127.0.0.1:0/xmpp-websocket,forwarded-for"], { maxConnectionsPerAddress: 1 });
      const through = (chain: string): string => UPGRADE(lb.port).replace("\r\n\r\n", `\r\nX-Forwarded-For: ${chain}\r\n\r\n`);
      const first = await holdOpen(lb.port, through("198.51.100.1"));
      sockets.push(first);
      const [answer] = (await once(first, "data")) as [Buffer];
      assert.match(answer.toString(), /^HTTP\/1\.1 101 /);
      // The same client through the front, whatever it put in the header itself: over its limit.
      const refused = await exchange(lb.port, through("192.0.2.50, 198.51.100.1"));
      assert.match(refused.text, /^HTTP\/1\.1 429 Too Many Requests\r\n/);
      assert.match(refused.text, /Retry-After: 5/i);
      // Another client through the same front (the same peer address): upgraded.
      const other = await holdOpen(lb.port, through("198.51.100.1, 198.51.100.2"));
      sockets.push(other);
      const [otherAnswer] = (await once(other, "data")) as [Buffer];
      assert.match(otherAnswer.toString(), /^HTTP\/1\.1 101 /);
      // One client in two spellings of its address counts once, as from a PROXY header.
      const v6 = await holdOpen(lb.port, through("2001:db8::7"));
      sockets.push(v6);
      const [v6Answer] = (await once(v6, "data")) as [Buffer];
      assert.match(v6Answer.toString(), /^HTTP\/1\.1 101 /);
      assert.match((await exchange(lb.port, through("2001:DB8:0:0:0:0:0:7"))).text, /^HTTP\/1\.1 429 /);
    });
  });

  describe("shutdown", () => {
    it("answers WebSocket clients mid-login with <system-shutdown/> and lets forwarded ones drain", async () => {
      const lb = await startBalancer({ listen: ["ws://127.0.0.1:0/xmpp-websocket"], allowPlaintext: true, node: nodeFlags(cluster.nodes), mode: "forward" });
      const url = `ws://127.0.0.1:${lb.port}/xmpp-websocket`;
      const halfway = await rawWebSocket(url);
      halfway.socket.send(WS_OPEN);
      await halfway.until(/<mechanisms/);
      const cat = await login({ port: 0, websocket: url, username: "opscat", password: PASSWORD });
      clients.push(cat);

      const stopped = Date.now();
      const closing = lb.balancer.close(1500);
      await halfway.closed;
      assert.ok(halfway.messages.some((m) => /<system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/>/.test(m)), JSON.stringify(halfway.messages));
      assert.ok(Date.now() - stopped < 1000, "a client mid-login is answered at once");
      // The forwarded session still works during the drain: its node answers a ping.
      const pong = await cat.iqCaller.request(xml("iq", { type: "get", to: "lb.test" }, xml("ping", { xmlns: "urn:xmpp:ping" })), 2000).catch((err: Error) => err);
      assert.ok(!(pong instanceof Error), `the forwarded session was cut during the drain: ${String(pong)}`);
      await closing;
      const took = Date.now() - stopped;
      assert.ok(took >= 1400 && took < 4000, `closed after ${took} ms with a 1.5 s drain`);
    });
  });

  describe("dialing the node's WebSocket endpoint", () => {
    it("waits for a node whose WebSocket port opens late instead of refusing the login", async () => {
      const node = cluster.nodes[0]!;
      // Where the node's endpoint will be: a port nothing listens on yet.
      const late = net.createServer();
      await new Promise<void>((r) => late.listen(0, "127.0.0.1", r));
      const latePort = (late.address() as net.AddressInfo).port;
      await new Promise((r) => late.close(r));
      const target = new URL(node.websocket!.internal);
      const flag = `id=${node.id},internal=${node.internal.host}:${node.internal.port},external=${node.external.host}:${node.external.port},ws-internal=ws://127.0.0.1:${latePort}${target.pathname}`;
      const lb = await balancer(["ws://127.0.0.1:0/xmpp-websocket"], { node: [flag], mode: "forward", dialTimeout: 5 });
      // The endpoint comes up 400 ms after the login starts (a TCP forwarder to the node's real one).
      const forwarder = net.createServer((client) => {
        const upstream = net.connect(Number(target.port), target.hostname);
        client.pipe(upstream).pipe(client);
        client.on("error", () => upstream.destroy());
        upstream.on("error", () => client.destroy());
      });
      setTimeout(() => forwarder.listen(latePort, "127.0.0.1"), 400);
      try {
        const started = Date.now();
        const dan = await login({ port: 0, websocket: `ws://127.0.0.1:${lb.port}/xmpp-websocket`, username: "opsdan", password: PASSWORD });
        clients.push(dan);
        assert.equal(await nodeOf(dan), node.id);
        assert.ok(Date.now() - started >= 400, "the login waited for the endpoint");
      } finally {
        forwarder.close();
      }
    });
  });

  describe("redirect at the stream's opening (phase open)", () => {
    it("sends <close see-other-uri/> in answer to <open/>, for the account the URL's ?from= names, to that account's node", async () => {
      // Ann's TCP session puts her on some node; her browser tab is sent to the same one.
      const lb = await balancer(["127.0.0.1:0", "ws://127.0.0.1:0/xmpp-websocket,mode=redirect,phase=open"], { mode: "forward", strategy: "random" });
      const phone = await login({ port: lb.ports[0]!, username: "opsann", password: PASSWORD, resource: "phone" });
      clients.push(phone);
      const own = await nodeOf(phone);
      const tab = await rawWebSocket(`ws://127.0.0.1:${lb.ports[1]}/xmpp-websocket?from=${encodeURIComponent("opsann@lb.test")}`);
      tab.socket.send(WS_OPEN);
      await tab.closed;
      assert.equal(tab.messages.length, 1, `one answer to <open/>: ${JSON.stringify(tab.messages)}`);
      const uri = /^<close xmlns='urn:ietf:params:xml:ns:xmpp-framing' see-other-uri='([^']+)'\/>$/.exec(tab.messages[0]!)?.[1];
      assert.equal(uri, cluster.nodes.find((n) => n.id === own)!.websocket!.external);
    });
  });
});
