import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Client } from "@xmpp/client";
import { nodeFlags, startProsodyCluster, type ProsodyCluster } from "../support/prosody.js";
import { login, nodeOf, stopAll } from "../support/clients.js";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { RawXmpp, plainAuth } from "../support/raw.js";
import { WS_OPEN, plainAuthXml, rawWebSocket } from "../support/websocket.js";

const PASSWORD = "attempts pw";
const DOMAIN = "lb.test";
/** What ends one SASL attempt, as the client reads it. */
const OUTCOME = /<success|<failure|<stream:error|see-other-uri/g;

/** A client on one stream, driven by hand: it logs in as many times as a test says, and reads each outcome. */
interface LoginStream {
  auth(user: string, password: string): void;
  /** Sends one top-level element as the transport frames it. */
  sendRaw(xml: string): void;
  /** Everything received so far, as text. */
  received(): string;
  /** The `n`-th outcome on this stream (1-based): success, failure, or the stream error's condition. */
  outcome(n: number): Promise<string>;
  close(): void;
}

/** How a test reaches the balancer: one row per transport, so no behaviour of the login exists on one transport only. */
interface Transport {
  name: string;
  open(lb: TestBalancer, from: string): Promise<LoginStream>;
}

function outcomeOf(texts: string[], n: number): string | undefined {
  const found = texts.join("").match(OUTCOME) ?? [];
  if (found.length < n) return undefined;
  const all = texts.join("");
  if (found[n - 1] === "see-other-uri") return "see-other-uri";
  if (found[n - 1] === "<stream:error") {
    // The n-th stream error's condition: count the stream errors before it.
    const errors = [...all.matchAll(/<stream:error[^>]*><([a-z-]+) xmlns='urn:ietf:params:xml:ns:xmpp-streams'/g)];
    const index = found.slice(0, n - 1).filter((f) => f === "<stream:error").length;
    return errors[index]?.[1] ?? "stream-error";
  }
  return found[n - 1]!.slice(1);
}

async function poll(what: () => string | undefined, closed: () => boolean, describe: () => string): Promise<string> {
  const deadline = Date.now() + 8000;
  for (;;) {
    const found = what();
    if (found !== undefined) return found;
    if (closed() || Date.now() > deadline) throw new Error(`no outcome: ${describe()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const TRANSPORTS: Transport[] = [
  {
    name: "tcp",
    async open(lb, from) {
      const c = await RawXmpp.connect(lb.ports[0]!, "127.0.0.1", { localAddress: from });
      await c.secureStream();
      let closed = false;
      void c.closed.then(() => (closed = true));
      return {
        auth: (user, password) => c.send(plainAuth(user, password)),
        sendRaw: (xml) => c.send(xml),
        received: () => c.received,
        outcome: (n) => poll(() => outcomeOf([c.received], n), () => closed && outcomeOf([c.received], n) === undefined, () => c.received),
        close: () => c.destroy(),
      };
    },
  },
  {
    name: "websocket",
    async open(lb, from) {
      const ws = await rawWebSocket(`ws://127.0.0.1:${lb.ports[1]}/xmpp-websocket`, { localAddress: from });
      ws.socket.send(WS_OPEN);
      await ws.until(/<mechanisms/);
      let closed = false;
      void ws.closed.then(() => (closed = true));
      return {
        auth: (user, password) => ws.socket.send(plainAuthXml(user, password)),
        sendRaw: (xml) => ws.socket.send(xml),
        received: () => ws.messages.join(""),
        outcome: (n) => poll(() => outcomeOf(ws.messages, n), () => closed && outcomeOf(ws.messages, n) === undefined, () => JSON.stringify(ws.messages)),
        close: () => ws.socket.terminate(),
      };
    },
  },
];

/**
 * Every SASL attempt passes the same door: the hand-off to a node is final
 * only at its <success/>; after a <failure/> the balancer has the client
 * again, and its next <auth/> goes through the failed-login limits and the
 * routing as its own login, charged to the JID it names.
 */
describe("the login, the same over every transport", () => {
  let cluster: ProsodyCluster;
  const balancers: TestBalancer[] = [];
  const clients: Client[] = [];
  const streams: LoginStream[] = [];
  const users = ["alice", "mallory", "decoy", "victim", "self", "looper"];
  const balancer = async (extra: Parameters<typeof startBalancer>[0] = {}): Promise<TestBalancer> => {
    const lb = await startBalancer({ listen: ["127.0.0.1:0", "ws://127.0.0.1:0/xmpp-websocket"], mode: "forward", saslMechanisms: ["PLAIN"], node: nodeFlags(cluster.nodes), ...extra });
    balancers.push(lb);
    return lb;
  };
  const open = async (transport: Transport, lb: TestBalancer, from: string): Promise<LoginStream> => {
    const stream = await transport.open(lb, from);
    streams.push(stream);
    return stream;
  };

  before(async () => {
    cluster = await startProsodyCluster({ count: 2, externalPort: 0, websocket: true, users: users.map((u) => [u, PASSWORD]) });
  });
  after(async () => {
    for (const s of streams) s.close();
    await stopAll(clients);
    await Promise.all(balancers.map((b) => b.close()));
    await cluster?.stop();
  });

  for (const transport of TRANSPORTS) {
    describe(transport.name, () => {
      it("refuses a retry on the same stream once the account is past its failed-login limit, even with the right password", async () => {
        const lb = await balancer({ maxAuthFailuresPerJid: 2, maxAuthFailuresPerAddress: 10 });
        const stream = await open(transport, lb, "127.0.3.1");
        stream.auth("alice", "wrong");
        assert.equal(await stream.outcome(1), "failure");
        stream.auth("alice", "wrong again");
        assert.equal(await stream.outcome(2), "failure");
        stream.auth("alice", PASSWORD);
        assert.equal(await stream.outcome(3), "policy-violation");
        const rejected = await lb.balancer.metrics.registry.getSingleMetricAsString("xmpp_lb_rejected_total");
        assert.match(rejected, /reason="auth-failures-jid"} 1/);
      });

      it("charges each attempt to the JID it names, not to the stream's first", async () => {
        const lb = await balancer({ maxAuthFailuresPerJid: 2, maxAuthFailuresPerAddress: 10 });
        const stream = await open(transport, lb, "127.0.3.2");
        stream.auth("decoy", "wrong");
        assert.equal(await stream.outcome(1), "failure");
        stream.auth("mallory", "wrong");
        assert.equal(await stream.outcome(2), "failure");
        stream.auth("mallory", "wrong again");
        assert.equal(await stream.outcome(3), "failure");
        // Three refusals on one stream: it is closed, whoever refused them.
        assert.equal(await stream.outcome(4), "policy-violation");
        const elsewhere = await open(transport, lb, "127.0.3.3");
        elsewhere.auth("mallory", PASSWORD);
        assert.equal(await elsewhere.outcome(1), "policy-violation", "mallory is past her limit, from any address");
        const other = await open(transport, lb, "127.0.3.4");
        other.auth("decoy", PASSWORD);
        assert.equal(await other.outcome(1), "success", "decoy had one failure only");
      });

      it("answers a stanza before login with <not-authorized/>, and a mechanism not offered with <invalid-mechanism/>", async () => {
        const lb = await balancer();
        const stream = await open(transport, lb, "127.0.3.6");
        stream.sendRaw("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-OTHER'>AAAA</auth>");
        assert.equal(await stream.outcome(1), "failure");
        assert.match(stream.received(), /<invalid-mechanism\/>/);
        stream.sendRaw("<message xmlns='jabber:client' to='alice@lb.test'><body>hi</body></message>");
        assert.equal(await stream.outcome(2), "not-authorized");
      });

      it("forwards a client that comes back right after its redirect (the redirect-loop rule), and counts it", async () => {
        const lb = await balancer({ mode: "redirect", listen: ["127.0.0.1:0,mode=redirect", "ws://127.0.0.1:0/xmpp-websocket,mode=redirect"] });
        const first = await open(transport, lb, "127.0.3.7");
        first.auth("looper", PASSWORD);
        assert.equal(await first.outcome(1), transport.name === "tcp" ? "see-other-host" : "see-other-uri");
        const back = await open(transport, lb, "127.0.3.7");
        back.auth("looper", PASSWORD);
        assert.equal(await back.outcome(1), "success", "forwarded this time, and logged in by its node");
        assert.match(await lb.balancer.metrics.registry.getSingleMetricAsString("xmpp_lb_redirect_loops_total"), / 1$/m);
      });

      it("answers a login no node can take with <temporary-auth-failure/>, and keeps the stream open", async () => {
        // A node that answers no dial (a closed port, no WebSocket endpoint): every login finds none.
        const lb = await balancer({ node: ["id=gone,internal=127.0.3.250:9"], dialTimeout: 0.3 });
        const stream = await open(transport, lb, "127.0.3.8");
        stream.auth("alice", PASSWORD);
        assert.equal(await stream.outcome(1), "failure");
        assert.match(stream.received(), /<temporary-auth-failure\/>/);
        stream.auth("alice", PASSWORD);
        assert.equal(await stream.outcome(2), "failure", "the stream stayed open for a retry");
      });

      it("keeps no entry for the JID a refused attempt named, and routes the next attempt by its own JID", async () => {
        const lb = await balancer();
        const stream = await open(transport, lb, "127.0.3.5");
        stream.auth("victim", "wrong");
        assert.equal(await stream.outcome(1), "failure");
        stream.auth("self", PASSWORD);
        assert.equal(await stream.outcome(2), "success");
        assert.equal(await lb.balancer.store.lookup(`victim@${DOMAIN}`), null, "the refused attempt's JID keeps no node");
        const node = await lb.balancer.store.lookup(`self@${DOMAIN}`);
        assert.ok(node !== null, "the accepted login's JID has its node");
        // Another resource of the same account meets it there.
        const second = await login({ port: lb.ports[0]!, username: "self", password: PASSWORD, resource: "second" });
        clients.push(second);
        assert.equal(await nodeOf(second), node);
      });
    });
  }
});
