import assert from "node:assert/strict";
import { once } from "node:events";
import net from "node:net";
import { after, describe, it } from "node:test";
import { NodeSocket } from "../../src/upstream/node-socket.js";
import { relay, type RelayStats } from "../../src/upstream/relay.js";
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

/** A relay as the balancer runs it: an accepted client socket and a dialed NodeSocket, with the peers of both. */
async function relayed(watcher?: (chunk: Buffer) => boolean): Promise<{ client: net.Socket; node: net.Socket; closed: Promise<RelayStats> }> {
  const client = net.connect({ port: fronts.port, host: "127.0.0.1", allowHalfOpen: true });
  const accepted = await fronts.next();
  const dialed = new NodeSocket().connect({ port: nodes.port, host: "127.0.0.1" });
  const node = await nodes.next();
  await once(dialed, "connect");
  opened.push(client, accepted, dialed, node);
  const closed = new Promise<RelayStats>((resolve) => relay(accepted, dialed, resolve, undefined, watcher));
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

describe("NodeSocket", () => {
  it("is a plain 'data' socket until a reader takes its reads, and that reader gets what the socket held meanwhile", async () => {
    const dialed = new NodeSocket().connect({ port: nodes.port, host: "127.0.0.1" });
    const node = await nodes.next();
    opened.push(dialed, node);
    const first = await new Promise<Buffer>((resolve) => (dialed.once("data", resolve), node.write("one")));
    assert.equal(first.toString(), "one");
    dialed.pause();
    node.write("two");
    await sleep(50);
    const reads: string[] = [];
    dialed.readWith((bytes, length) => reads.push(bytes.toString("latin1", 0, length)));
    await sleep(50);
    assert.deepEqual(reads, [], "nothing is read while paused");
    dialed.resume();
    await sleep(50);
    node.end("three");
    await once(dialed, "end");
    assert.equal(reads.join(""), "twothree");
    dialed.destroy();
  });
});
