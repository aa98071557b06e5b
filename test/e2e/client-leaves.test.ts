import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { RawXmpp, STREAM_OPEN, plainAuth } from "../support/raw.js";
import { startBalancer, type TestBalancer } from "../support/balancer.js";

interface NodeSide {
  received: string;
  /** The balancer closed (or half-closed) this connection. */
  closed: boolean;
}

/**
 * A stand-in node that opens its stream only after `delayMs`, and records what
 * each connection was sent: a slow node, at an exact moment, is a fault a real
 * server cannot be made to show on cue.
 */
async function slowNode(delayMs: number): Promise<{ port: number; sides: NodeSide[]; close: () => Promise<void> }> {
  const sides: NodeSide[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    const side: NodeSide = { received: "", closed: false };
    sides.push(side);
    sockets.add(s);
    let answered = false;
    s.on("data", (chunk: Buffer) => {
      side.received += chunk.toString();
      if (answered || !side.received.includes("<stream:stream")) return;
      answered = true;
      setTimeout(() => {
        if (!s.destroyed)
          s.write(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='n' from='lb.test' version='1.0'>" +
              "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>",
          );
      }, delayMs);
    });
    s.on("error", () => {});
    // The balancer's FIN (or reset) is what counts: this side never closes on its own.
    s.on("end", () => (side.closed = true));
    s.on("close", () => (side.closed = true));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    sides,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const count = async (lb: TestBalancer, outcome: string): Promise<number> => {
  const text = await lb.balancer.metrics.registry.getSingleMetricAsString("xmpp_lb_connections_total");
  return Number(new RegExp(`outcome="${outcome}",transport="tcp"} (\\d+)`).exec(text)?.[1] ?? 0);
};

describe("a client that leaves", () => {
  let node: Awaited<ReturnType<typeof slowNode>>;
  let lb: TestBalancer;

  before(async () => {
    node = await slowNode(700);
    lb = await startBalancer({ node: [`id=slow,internal=127.0.0.1:${node.port}`], saslMechanisms: ["PLAIN"], healthInterval: 600, loginTimeout: 30 });
  });
  after(async () => {
    await lb.close();
    await node.close();
  });

  it("during the node dial leaves nothing open on either side, and nothing is replayed", async () => {
    await sleep(900); // let the first health probe finish
    const probes = node.sides.length;
    const c = await RawXmpp.connect(lb.port);
    await c.secureStream();
    c.send(plainAuth("alice", "secret"));
    await sleep(150); // the dial is under way: the node answers only after 700 ms
    c.end();
    await c.closed;
    await sleep(1000);
    const dialed = node.sides.slice(probes);
    assert.equal(dialed.length, 1, "the login dialed the node once");
    assert.ok(dialed.every((s) => s.closed), `the node's connection was closed: ${JSON.stringify(node.sides)}`);
    assert.ok(!dialed.some((s) => s.received.includes("<auth")), "no credentials reached the node");
    assert.equal(await count(lb, "forwarded"), 0);
    assert.ok((await count(lb, "abandoned")) >= 1);
  });

  it("in phase open, gives up a node that sends no features within --dial-timeout: the client that left takes nothing with it", async () => {
    const silent = await slowNode(60_000);
    const open = await startBalancer({ node: [`id=silent,internal=127.0.0.1:${silent.port}`], phase: "open", healthInterval: 600, loginTimeout: 30, dialTimeout: 1 });
    try {
      const c = await RawXmpp.connect(open.port);
      c.send(STREAM_OPEN);
      await c.until(/<\/stream:features>/);
      await c.starttls();
      c.send(STREAM_OPEN.replace("to='lb.test'", "to='lb.test' from='alice@lb.test'"));
      await sleep(150); // the node has the client's opening, and never answers
      c.destroy();
      await sleep(1500);
      const dialed = silent.sides.filter((s) => s.received.includes("alice@lb.test"));
      assert.equal(dialed.length, 1);
      assert.equal(dialed[0]!.closed, true, "the node's connection is closed");
    } finally {
      await open.close();
      await silent.close();
    }
  });

  it("after the stream header is closed at once, not at the login timeout", async () => {
    const c = await RawXmpp.connect(lb.port);
    c.send(STREAM_OPEN);
    await c.until(/<\/stream:features>/);
    const before = await count(lb, "abandoned");
    const started = Date.now();
    c.end();
    await c.closed;
    assert.ok(Date.now() - started < 2000, "closed within the linger, not the 30 s login timeout");
    assert.match(c.received, /<\/stream:stream>$/);
    assert.equal(await count(lb, "abandoned"), before + 1);
  });

  it("before sending a byte is closed at once", async () => {
    const c = await RawXmpp.connect(lb.port);
    const started = Date.now();
    c.end();
    await c.closed;
    assert.ok(Date.now() - started < 2000);
    assert.equal(c.received, "");
  });
});
