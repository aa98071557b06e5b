import assert from "node:assert/strict";
import { once } from "node:events";
import { after, before, describe, it } from "node:test";
import { xml, type Client } from "@xmpp/client";
import { WebSocket } from "ws";
import { FRAMING, rawWebSocket, upgradeStatus } from "../support/websocket.js";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { login, nodeOf, stopAll } from "../support/clients.js";
import { nodeFlags, startProsodyCluster, type ProsodyCluster } from "../support/prosody.js";

const PASSWORD = "websocket pass";
const plain = (user: string): string => Buffer.from(`\0${user}\0${PASSWORD}`).toString("base64");

describe("XMPP over WebSocket (RFC 7395)", () => {
  let cluster: ProsodyCluster;
  const balancers: TestBalancer[] = [];
  const clients: Client[] = [];
  const balancer = async (extra: Parameters<typeof startBalancer>[0] = {}): Promise<{ lb: TestBalancer; wsUrl: string; tcpPort: number }> => {
    const lb = await startBalancer({ listen: ["127.0.0.1:0", "ws://127.0.0.1:0/xmpp-websocket"], allowPlaintext: true, node: nodeFlags(cluster.nodes), ...extra });
    balancers.push(lb);
    return { lb, tcpPort: lb.ports[0]!, wsUrl: `ws://127.0.0.1:${lb.ports[1]}/xmpp-websocket` };
  };
  const connect = async (...args: Parameters<typeof login>): Promise<Client> => {
    const c = await login(...args);
    clients.push(c);
    return c;
  };

  before(async () => {
    cluster = await startProsodyCluster({ count: 3, externalPort: 0, websocket: true, users: ["wsalice", "wsbob", "wscarol", "wsdave", "wserin"].map((u) => [u, PASSWORD]) });
  });
  after(async () => {
    await stopAll(clients);
    await Promise.all(balancers.map((b) => b.close()));
    await cluster?.stop();
  });

  it("forwards an @xmpp/client over ws:// to the node's own WebSocket endpoint", async () => {
    const { lb, wsUrl } = await balancer({ mode: "forward" });
    const alice = await connect({ port: 0, websocket: wsUrl, username: "wsalice", password: PASSWORD });
    assert.equal(alice.jid?.toString().split("/")[0], "wsalice@lb.test");
    assert.ok(cluster.nodes.map((n) => n.id).includes(await nodeOf(alice)));
    await connect({ port: 0, websocket: wsUrl, username: "wsbob", password: PASSWORD });
    const metric = await lb.balancer.metrics.registry.getSingleMetricAsString("xmpp_lb_connections_total");
    assert.match(metric, /outcome="forwarded",transport="websocket"} 2/);
  });

  it("speaks wss:// with the balancer's certificate, to a client that sends no server name too", async () => {
    const lb = await startBalancer({ listen: ["wss://127.0.0.1:0/xmpp-websocket"], node: nodeFlags(cluster.nodes) });
    balancers.push(lb);
    // By IP address: no SNI, so the listener's own context must serve the handshake.
    const socket = new WebSocket(`wss://127.0.0.1:${lb.port}/xmpp-websocket`, ["xmpp"], { rejectUnauthorized: false });
    const messages: string[] = [];
    socket.on("message", (data) => void messages.push(data.toString()));
    await once(socket, "open");
    socket.send(`<open xmlns='${FRAMING}' to='lb.test' version='1.0'/>`);
    while (!messages.some((m) => m.includes("<mechanisms"))) await new Promise((r) => setTimeout(r, 20));
    assert.match(messages[0]!, /^<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'/);
    socket.terminate();
  });

  it("redirects with a see-other-uri <close/> carrying the node's ws= URL, which serves the login", async () => {
    const { wsUrl } = await balancer({ mode: "redirect" });
    const raw = await rawWebSocket(wsUrl);
    raw.socket.send(`<open xmlns='${FRAMING}' to='lb.test' version='1.0'/>`);
    await new Promise((r) => setTimeout(r, 200));
    raw.socket.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${plain("wscarol")}</auth>`);
    await raw.closed;
    const close = raw.messages.at(-1) ?? "";
    const uri = /see-other-uri='([^']+)'/.exec(close)?.[1];
    assert.ok(uri, `no see-other-uri in ${close}`);
    const node = cluster.nodes.find((n) => n.websocket?.external === uri);
    assert.ok(node, `${uri} is not a node's external WebSocket URL`);
    const carol = await connect({ port: 0, websocket: uri, username: "wscarol", password: PASSWORD });
    assert.equal(await nodeOf(carol), node.id);
  });

  for (const first of ["tcp", "websocket"] as const) {
    it(`puts a TCP and a WebSocket session of one account on one node (${first} first)`, async () => {
      const { wsUrl, tcpPort } = await balancer({ mode: "forward", strategy: "random" });
      const user = first === "tcp" ? "wsdave" : "wserin";
      const viaTcp = (): Promise<Client> => connect({ port: tcpPort, username: user, password: PASSWORD, resource: "tcp" });
      const viaWs = (): Promise<Client> => connect({ port: 0, websocket: wsUrl, username: user, password: PASSWORD, resource: "ws" });
      const a = first === "tcp" ? await viaTcp() : await viaWs();
      const b = first === "tcp" ? await viaWs() : await viaTcp();
      assert.equal(await nodeOf(a), await nodeOf(b));
      // And they reach each other through the node.
      const received = new Promise<string>((resolve) => b.on("stanza", (s) => void (s.is("message") && resolve(s.getChildText("body") ?? ""))));
      await a.send(xml("message", { to: b.jid!.toString(), type: "chat" }, xml("body", {}, "same node")));
      assert.equal(await received, "same node");
    });
  }

  it("takes messages as large as the node accepts once the login is done (the pre-login bound is lifted at the hand-off)", async () => {
    const { wsUrl } = await balancer({ mode: "forward" });
    const carol = await connect({ port: 0, websocket: wsUrl, username: "wscarol", password: PASSWORD, resource: "big" });
    const body = "b".repeat(100 * 1024);
    const received = new Promise<number>((resolve) => carol.on("stanza", (s) => void (s.is("message") && resolve((s.getChildText("body") ?? "").length))));
    await carol.send(xml("message", { to: carol.jid!.toString(), type: "chat" }, xml("body", {}, body)));
    assert.equal(await received, body.length);
  });

  it("keeps an account on its node when a WebSocket login names it and that node has no WebSocket endpoint", async () => {
    // n1 serves TCP only: a WebSocket client cannot be forwarded there, but its users must stay there.
    const [n1, ...rest] = cluster.nodes;
    const tcpOnly = `id=${n1!.id},internal=${n1!.internal.host}:${n1!.internal.port},external=${n1!.external.host}:${n1!.external.port}`;
    const lb = await startBalancer({ listen: ["127.0.0.1:0", "ws://127.0.0.1:0/xmpp-websocket"], mode: "forward", node: [tcpOnly, ...nodeFlags(rest)] });
    balancers.push(lb);
    await lb.balancer.store.claim("wsalice@lb.test", n1!.id, []);
    const tcp = await connect({ port: lb.ports[0]!, username: "wsalice", password: PASSWORD, resource: "tcp" });
    assert.equal(await nodeOf(tcp), n1!.id);
    // Someone without her password tries over WebSocket: the attempt goes elsewhere and is refused there.
    const raw = await rawWebSocket(`ws://127.0.0.1:${lb.ports[1]}/xmpp-websocket`);
    raw.socket.send(`<open xmlns='${FRAMING}' to='lb.test' version='1.0'/>`);
    await raw.until(/<mechanisms/);
    raw.socket.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from("\0wsalice\0wrong").toString("base64")}</auth>`);
    await raw.until(/<failure/);
    raw.socket.terminate();
    assert.equal(await lb.balancer.store.lookup("wsalice@lb.test"), n1!.id, "her entry still names her node");
    const again = await connect({ port: lb.ports[0]!, username: "wsalice", password: PASSWORD, resource: "tcp2" });
    assert.equal(await nodeOf(again), n1!.id, "her next TCP resource meets the first one");
  });

  describe("bad input", () => {
    let wsUrl: string;
    before(async () => {
      ({ wsUrl } = await balancer({ mode: "forward", wsOrigin: ["https://chat.lb.test"], maxPreauthBytes: 4096 }));
    });

    it("refuses an upgrade without the xmpp subprotocol (HTTP 400)", async () => {
      assert.equal(await upgradeStatus(wsUrl, { protocol: "chat", origin: "https://chat.lb.test" }), 400);
    });

    it("refuses an Origin that is not allowed (HTTP 403)", async () => {
      assert.equal(await upgradeStatus(wsUrl, { protocol: "xmpp", origin: "https://evil.example" }), 403);
    });

    const streamErrorOf = async (messages: string[]): Promise<string> => {
      const raw = await rawWebSocket(wsUrl, { origin: "https://chat.lb.test" });
      for (const m of messages) raw.socket.send(m);
      await raw.closed;
      const error = raw.messages.find((m) => m.startsWith("<stream:error"));
      assert.ok(error, `no stream error in ${JSON.stringify(raw.messages)}`);
      assert.match(raw.messages.at(-1) ?? "", new RegExp(`^<close xmlns='${FRAMING}'/>$`), "the stream error is followed by <close/>");
      return /<([a-z-]+) xmlns='urn:ietf:params:xml:ns:xmpp-streams'/.exec(error)![1]!;
    };
    const open = `<open xmlns='${FRAMING}' to='lb.test' version='1.0'/>`;

    it("answers a message that is not XML with <not-well-formed/>, and one that is text, not an element, with <bad-format/>", async () => {
      assert.equal(await streamErrorOf([open, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'></response>"]), "not-well-formed");
      assert.equal(await streamErrorOf([open, "hello, server"]), "bad-format");
    });

    it("answers a message bigger than the pre-auth limit with <policy-violation/>", async () => {
      assert.equal(await streamErrorOf([open, `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${"A".repeat(8192)}</auth>`]), "policy-violation");
    });

    it("refuses a frame larger than the pre-login limit at its header, before its payload is buffered (close 1009)", async () => {
      const raw = await rawWebSocket(wsUrl, { origin: "https://chat.lb.test" });
      raw.socket.send(open);
      await raw.until(/<mechanisms/);
      // The first fragment of a message: the rest never comes, so only a check at the frame header can refuse it.
      raw.socket.send(Buffer.alloc(20 * 1024, "A"), { binary: false, fin: false });
      const code = await Promise.race([raw.closed, new Promise<string>((r) => setTimeout(() => r("still open"), 3000))]);
      assert.equal(code, 1009);
    });

    it("answers a stanza before login with <not-authorized/>", async () => {
      assert.equal(await streamErrorOf([open, "<message xmlns='jabber:client' to='wsbob@lb.test'><body>hi</body></message>"]), "not-authorized");
    });

    it("answers a first message that is not <open/> with <invalid-namespace/>", async () => {
      assert.equal(await streamErrorOf(["<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='lb.test'/>"]), "invalid-namespace");
    });
  });
});
