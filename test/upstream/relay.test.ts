import assert from "node:assert/strict";
import { once } from "node:events";
import net from "node:net";
import { readFileSync } from "node:fs";
import tls from "node:tls";
import { after, describe, it } from "node:test";
import { relay, type ClientTrafficLimit, type RelayStats } from "../../src/upstream/relay.js";
import { readIntoSharedBuffer, sharedReadsAvailable } from "../../src/upstream/shared-read.js";
import { parseTrafficLimit } from "../../src/upstream/traffic-limit.js";
import { sleep } from "../support/wait.js";

/** A listener whose accepted sockets are handed out one by one. */
async function listener(): Promise<{ port: number; next: () => Promise<net.Socket>; close: () => void }> {
  const accepted: net.Socket[] = [];
  const waiting: Array<(s: net.Socket) => void> = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    const waiter = waiting.shift();
    if (waiter !== undefined) waiter(s);
    else accepted.push(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    next: () => new Promise((resolve) => (accepted.length > 0 ? resolve(accepted.shift()!) : waiting.push(resolve))),
    close: () => server.close(),
  };
}

const nodes = await listener();
const fronts = await listener();
/** Every socket a test opens, destroyed at the end even when an assertion fails. */
const opened: net.Socket[] = [];
after(() => {
  for (const s of opened) s.destroy();
  nodes.close();
  fronts.close();
});

const SERVER_TLS = { cert: readFileSync(new URL("../../examples/tls/server.pem", import.meta.url)), key: readFileSync(new URL("../../examples/tls/server.key", import.meta.url)) };

/** A client connected to `fronts` and the balancer's side of it: the accepted socket, or TLS (server side) layered on it, as the dialogue does. */
async function frontPair(useTls: boolean): Promise<{ client: net.Socket; accepted: net.Socket }> {
  if (!useTls) {
    const client = net.connect({ port: fronts.port, host: "127.0.0.1", allowHalfOpen: true });
    const accepted = await fronts.next();
    opened.push(client, accepted);
    return { client, accepted };
  }
  const client = tls.connect({ port: fronts.port, host: "127.0.0.1", rejectUnauthorized: false });
  const raw = await fronts.next();
  const accepted = new tls.TLSSocket(raw, { isServer: true, secureContext: tls.createSecureContext(SERVER_TLS) });
  opened.push(client, raw, accepted);
  await Promise.all([once(client, "secureConnect"), once(accepted, "secure")]);
  return { client, accepted };
}

/** A relay as the balancer runs it: an accepted client socket (plain or TLS) and a dialed node socket, with the peers of both. */
async function relayed(watcher?: (chunk: Buffer) => boolean, useTls = false, traffic?: ClientTrafficLimit): Promise<{ client: net.Socket; node: net.Socket; closed: Promise<RelayStats> }> {
  const { client, accepted } = await frontPair(useTls);
  const dialed = net.connect({ port: nodes.port, host: "127.0.0.1", allowHalfOpen: true });
  const connected = once(dialed, "connect"); // before the accept: 'connect' may come first
  const node = await nodes.next();
  await connected;
  opened.push(dialed, node);
  const closed = new Promise<RelayStats>((resolve) => relay(accepted, dialed, resolve, traffic, watcher));
  return { client, node, closed };
}

/** `size` bytes that differ from one stream to the next and along each. */
const pattern = (size: number, seed: number): Buffer => Buffer.from(Array.from({ length: size }, (_, i) => (i * seed + (i >> 8)) & 0xff));

async function readAll(socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on("data", (c: Buffer) => chunks.push(c));
  await once(socket, "end");
  return Buffer.concat(chunks);
}

describe("relay", () => {
  it("carries what two nodes send intact through one shared read buffer while the clients read slowly (backpressure)", async () => {
    const seen: number[] = [0, 0];
    const pairs = await Promise.all([0, 1].map((i) => relayed((chunk) => ((seen[i]! += chunk.length), true))));
    const sent = [pattern(4 << 20, 7), pattern(4 << 20, 13)];
    for (const [i, { client }] of pairs.entries()) {
      client.pause();
      pairs[i]!.node.end(sent[i]!);
    }
    await sleep(300); // the clients' buffers fill, the relay pauses its nodes
    const got = await Promise.all(pairs.map(({ client }) => readAll(client.resume())));
    for (const i of [0, 1]) {
      assert.ok(got[i]!.equals(sent[i]!), `stream ${i} arrived intact`);
      assert.equal(seen[i], sent[i]!.length, "the watcher saw every byte");
    }
    for (const { client } of pairs) client.end();
    const stats = await Promise.all(pairs.map((p) => p.closed));
    assert.deepEqual(stats.map((s) => s.down), [4 << 20, 4 << 20]);
  });

  it("carries 4 MiB each way intact through a TLS client side under backpressure", async () => {
    const { client, node, closed } = await relayed(undefined, true);
    const down = pattern(4 << 20, 5);
    const up = pattern(4 << 20, 11);
    const upChunks: Buffer[] = [];
    let upBytes = 0;
    const gotUp = new Promise<Buffer>((resolve) =>
      node.on("data", (c: Buffer) => {
        upChunks.push(c);
        if ((upBytes += c.length) === up.length) resolve(Buffer.concat(upChunks));
      }),
    );
    client.pause();
    node.end(down);
    client.write(up);
    await sleep(300); // the client's buffer fills, the relay pauses its node
    assert.ok((await gotUp).equals(up), "client to node intact");
    assert.ok((await readAll(client.resume())).equals(down), "node to client intact");
    client.end();
    const stats = await closed;
    assert.deepEqual({ up: stats.up, down: stats.down }, { up: 4 << 20, down: 4 << 20 });
  });

  it("passes a FIN on as a FIN each way, and stops showing the watcher what follows its verdict", async () => {
    const watched: string[] = [];
    const { client, node, closed } = await relayed((chunk) => (watched.push(chunk.toString()), !chunk.includes("<success")));
    const clientGot = readAll(client);
    node.write("<success/>");
    await sleep(50);
    node.end("</stream:stream>");
    assert.equal((await clientGot).toString(), "<success/></stream:stream>");
    assert.deepEqual(watched, ["<success/>"]);
    const nodeGot = readAll(node);
    client.end("</stream:stream>");
    assert.equal((await nodeGot).toString(), "</stream:stream>");
    const stats = await closed;
    assert.deepEqual({ up: stats.up, down: stats.down }, { up: 16, down: 26 });
  });
});

describe("relay: how the client's stream ended", () => {
  /** Sends `pieces` from the client one write at a time (each its own chunk), then ends (FIN) or drops (destroy) its connection. */
  const ending = async (pieces: string[], end: "fin" | "reset", useTls = false, traffic?: ClientTrafficLimit): Promise<boolean> => {
    const { client, node, closed } = await relayed(undefined, useTls, traffic);
    node.resume();
    for (const piece of pieces) {
      client.write(piece);
      await sleep(15);
    }
    if (end === "fin") client.end();
    else client.destroy();
    node.end(); // the node closes its side too
    return (await closed).clean;
  };

  it("is clean when the client's last bytes are </stream:stream>, split across chunks or followed by whitespace, over TLS too", async () => {
    assert.equal(await ending(["<message/>", "</stream:stream>"], "fin"), true);
    assert.equal(await ending(["<message/></str", "eam:st", "ream>"], "fin"), true);
    assert.equal(await ending(["<presence type='unavailable'/></stream:stream>", " ", "\n"], "fin"), true);
    assert.equal(await ending(["<a h='3' xmlns='urn:xmpp:sm:3'/>", "</stream:stream>\r\n"], "reset", true), true, "said goodbye, then the connection went");
    const metered: ClientTrafficLimit = { limit: parseTrafficLimit("1m"), onLimited: () => {} };
    assert.equal(await ending(["<message/></stream:", "stream>"], "fin", false, metered), true, "under --traffic-limit");
    assert.equal(await ending(["<message/>"], "fin", false, metered), false, "under --traffic-limit");
  });

  it("is not clean when the connection merely ends, or the tag is not the last thing sent", async () => {
    assert.equal(await ending(["<message/>"], "fin"), false);
    assert.equal(await ending(["<message/>"], "reset", true), false);
    assert.equal(await ending(["</stream:stream>", "<message/>"], "fin"), false);
    assert.equal(await ending(["<body>&lt;/stream:stream&gt;</body>"], "fin"), false);
    assert.equal(await ending(["</stream:", " stream>"], "fin"), false);
  });
});

describe("shared-buffer reads", () => {
  it("are available on this Node, so relays skip the per-read buffer and the 'data' machinery", () => {
    assert.equal(sharedReadsAvailable, true);
  });

  for (const useTls of [false, true]) {
    it(`switch an accepted ${useTls ? "TLS" : "plain"} socket mid-life: the reader gets what it held meanwhile, nothing while paused, then the rest and the FIN`, async () => {
      const { client, accepted } = await frontPair(useTls);
      const first = await new Promise<Buffer>((resolve) => (accepted.once("data", resolve), client.write("one")));
      assert.equal(first.toString(), "one");
      accepted.pause();
      client.write("two");
      await sleep(50);
      const reads: string[] = [];
      assert.equal(readIntoSharedBuffer(accepted, (length, bytes) => void reads.push(bytes.toString("latin1", 0, length))), true);
      assert.deepEqual(reads, ["two"], "what the stream held went to the reader first");
      client.write("three");
      await sleep(50);
      assert.deepEqual(reads, ["two"], "nothing is read while paused");
      accepted.resume();
      await sleep(50);
      client.end("four");
      await once(accepted, "end");
      assert.equal(reads.join(""), "twothreefour");
    });
  }
});
