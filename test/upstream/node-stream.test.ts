import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { UpstreamError } from "../../src/errors.js";
import { dialNode } from "../../src/upstream/node-stream.js";

const tcpSockets = (): number => process.getActiveResourcesInfo().filter((r) => r === "TCPSocketWrap").length;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A listener with a backlog of one that never accepts: once its queue is full
 * the kernel drops further SYNs, so a connect stays pending, as against a node
 * behind a firewall that drops packets.
 */
async function blackhole(): Promise<{ port: number; stop: () => void }> {
  const child: ChildProcess = spawn("python3", ["-c", "import socket,sys,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)"], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((resolve) => child.stdout!.once("data", (d: Buffer) => resolve(Number(d.toString().trim()))));
  return { port, stop: () => void child.kill("SIGKILL") };
}

describe("dialNode", () => {
  let hole: Awaited<ReturnType<typeof blackhole>>;
  const fillers: net.Socket[] = [];

  before(async () => {
    hole = await blackhole();
    // Fill the accept queue, so the next SYNs are dropped.
    for (let i = 0; i < 3; i++) fillers.push(net.connect(hole.port, "127.0.0.1").on("error", () => {}));
    await sleep(200);
  });
  after(() => {
    for (const s of fillers) s.destroy();
    hole.stop();
  });

  it("destroys a socket still connecting when its deadline passes", async () => {
    const before = tcpSockets();
    await assert.rejects(
      dialNode({ host: "127.0.0.1", port: hole.port }, { domain: "lb.test", tls: "when-required", timeoutMs: 300, maxHeaderBytes: 8192, openStream: true }),
      (err: unknown) => err instanceof UpstreamError && err.code === "XMPP_LB_NODE_TIMEOUT" && err.nodeFault,
    );
    await sleep(50);
    assert.equal(tcpSockets(), before, "no connecting socket is left behind");
  });

  it("stops a dial at once when the client leaves", async () => {
    const before = tcpSockets();
    const left = new AbortController();
    const dial = dialNode({ host: "127.0.0.1", port: hole.port }, { domain: "lb.test", tls: "when-required", timeoutMs: 5000, maxHeaderBytes: 8192, openStream: true, signal: left.signal });
    setTimeout(() => left.abort(), 50);
    const started = Date.now();
    await assert.rejects(dial, (err: unknown) => err instanceof UpstreamError && err.code === "XMPP_LB_NODE_ABANDONED" && !err.nodeFault);
    assert.ok(Date.now() - started < 1000);
    await sleep(50);
    assert.equal(tcpSockets(), before);
  });

  it("reports a node that answers with a stream error as refusing, not dead", async () => {
    const server = net.createServer((s) => {
      s.on("error", () => {});
      s.once("data", () =>
        s.end(
          "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' version='1.0'>" +
            "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>",
        ),
      );
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as net.AddressInfo).port;
    await assert.rejects(
      dialNode({ host: "127.0.0.1", port }, { domain: "lb.test", tls: "when-required", timeoutMs: 2000, maxHeaderBytes: 8192, openStream: true }),
      (err: unknown) => err instanceof UpstreamError && err.code === "XMPP_LB_NODE_REFUSED" && !err.nodeFault,
    );
    server.close();
  });
});
