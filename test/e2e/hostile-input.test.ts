import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { runInNewContext } from "node:vm";
import v8 from "node:v8";
import tls, { connect as tlsConnect } from "node:tls";
import { CA, RawXmpp, STREAM_OPEN } from "../support/raw.js";
import { startBalancer, type TestBalancer } from "../support/balancer.js";

v8.setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const streamError = (text: string): string | undefined => /<stream:error><([a-z-]+) xmlns='urn:ietf:params:xml:ns:xmpp-streams'/.exec(text)?.[1];

/** Renegotiation either fails or never completes: both mean the balancer did no second handshake. */
function renegotiate(socket: tls.TLSSocket, waitMs: number): Promise<"completed" | "refused"> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve("refused"), waitMs);
    const started = socket.renegotiate({}, (err) => {
      clearTimeout(timer);
      resolve(err ? "refused" : "completed");
    });
    if (started === false) resolve("refused");
  });
}

/** What an attacker with no account can send, against a running balancer. */
describe("hostile input", () => {
  let lb: TestBalancer;

  before(async () => {
    lb = await startBalancer({ listen: ["127.0.0.1:0", "direct-tls://127.0.0.1:0"], allowPlaintext: true, node: ["id=n1,internal=127.0.0.1:1"], healthInterval: 60 });
  });
  after(async () => {
    await lb.close();
  });

  it("refuses nested XML before login at once, and holds no memory for it", async () => {
    gc();
    const before = process.memoryUsage().heapUsed;
    const clients = await Promise.all(Array.from({ length: 40 }, () => RawXmpp.connect(lb.port)));
    for (const c of clients) c.send(STREAM_OPEN + "<x>".repeat(20_000));
    await Promise.all(clients.map((c) => c.closed));
    for (const c of clients) assert.equal(streamError(c.received), "policy-violation", c.received.slice(0, 300));
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    // The core held ~6.5 MB per such connection (287 MB for these 40).
    assert.ok(grown < 20 * 1024 * 1024, `heap grew by ${Math.round(grown / 1024 / 1024)} MB`);
  });

  it("refuses TLS renegotiation on the STARTTLS listener", async () => {
    const c = await RawXmpp.connect(lb.ports[0]!);
    c.send(STREAM_OPEN);
    await c.until(/<\/stream:features>/);
    await c.starttls("TLSv1.2");
    assert.equal(await renegotiate(c.tlsSocket!, 1500), "refused");
    c.destroy();
  });

  it("refuses TLS renegotiation on the direct-TLS listener", async () => {
    const c = await RawXmpp.connect(lb.ports[1]!, "127.0.0.1", { directTls: true, maxTlsVersion: "TLSv1.2" });
    assert.equal(c.tlsSocket!.getProtocol(), "TLSv1.2");
    assert.equal(await renegotiate(c.tlsSocket!, 1500), "refused");
    c.destroy();
  });

  it("speaks TLS 1.2 and 1.3 only, AEAD suites with forward secrecy only, in the server's order", async () => {
    const handshake = (options: tls.ConnectionOptions): Promise<tls.TLSSocket | Error> =>
      new Promise((resolve) => {
        const socket = tlsConnect({ host: "127.0.0.1", port: lb.ports[1]!, ca: CA, servername: "lb.test", ...options }, () => resolve(socket));
        socket.once("error", (err) => resolve(err));
      });
    assert.ok((await handshake({ minVersion: "TLSv1.1", maxVersion: "TLSv1.1" })) instanceof Error, "TLS 1.1 is refused");
    assert.ok((await handshake({ maxVersion: "TLSv1.2", ciphers: "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:AES128-SHA" })) instanceof Error, "CBC suites are refused");
    // The client prefers AES-128; the server's order (AES-256 first) wins.
    const ordered = await handshake({ maxVersion: "TLSv1.2", ciphers: "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384" });
    assert.ok(ordered instanceof tls.TLSSocket);
    assert.match(ordered.getCipher().name, /AES256-GCM-SHA384$/);
    ordered.destroy();
    const modern = await handshake({});
    assert.ok(modern instanceof tls.TLSSocket);
    assert.equal(modern.getProtocol(), "TLSv1.3");
    modern.destroy();
  });

  it("answers NUL bytes after the header with not-well-formed at once", async () => {
    const c = await RawXmpp.connect(lb.port);
    c.send(STREAM_OPEN + "\0\0\0");
    await c.closed;
    assert.equal(streamError(c.received), "not-well-formed");
  });
});
