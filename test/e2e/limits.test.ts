import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { RawXmpp, STREAM_OPEN } from "../support/raw.js";

const streamError = (text: string): string | undefined => /<stream:error><([a-z-]+) xmlns='urn:ietf:params:xml:ns:xmpp-streams'/.exec(text)?.[1];
const rejected = async (lb: TestBalancer, reason: string): Promise<number> =>
  Number(new RegExp(`reason="${reason}"} (\\d+)`).exec(await lb.balancer.metrics.registry.getSingleMetricAsString("xmpp_lb_rejected_total"))?.[1] ?? 0);

/** Connection limits against a running balancer: what a client past each one sees, and who is not affected. */
describe("connection limits", () => {
  const balancers: TestBalancer[] = [];
  const open: RawXmpp[] = [];
  const start = async (input: Parameters<typeof startBalancer>[0]): Promise<TestBalancer> => {
    const lb = await startBalancer({ node: ["id=n1,internal=127.0.0.1:1"], healthInterval: 60, ...input });
    balancers.push(lb);
    return lb;
  };
  const connect = async (lb: TestBalancer, from = "127.0.0.1"): Promise<RawXmpp> => {
    const c = await RawXmpp.connect(lb.port, "127.0.0.1", { localAddress: from });
    open.push(c);
    return c;
  };
  after(async () => {
    for (const c of open) c.destroy();
    await Promise.all(balancers.map((b) => b.close()));
  });

  it("limits one address's open connections while another address logs in normally", async () => {
    const lb = await start({ maxConnectionsPerAddress: 3 });
    for (let i = 0; i < 3; i++) {
      const c = await connect(lb, "127.0.0.20");
      c.send(STREAM_OPEN);
      await c.until(/<\/stream:features>/);
    }
    const fourth = await connect(lb, "127.0.0.20");
    await fourth.closed;
    assert.equal(streamError(fourth.received), "policy-violation");
    assert.match(fourth.received, /too many connections from your address/);
    const other = await connect(lb, "127.0.0.21");
    other.send(STREAM_OPEN);
    await other.until(/<\/stream:features>/);
    assert.equal(await rejected(lb, "address-connections"), 1);
  });

  it("limits a flood of new connections from one address per second", async () => {
    const lb = await start({ maxConnectionRatePerAddress: 5 });
    const flood = await Promise.all(Array.from({ length: 20 }, () => connect(lb, "127.0.0.22")));
    await new Promise((r) => setTimeout(r, 300));
    const refused = flood.filter((c) => streamError(c.received) === "policy-violation").length;
    assert.equal(refused, 15, "past 5 a second, each new connection is refused");
    const calm = await connect(lb, "127.0.0.23");
    calm.send(STREAM_OPEN);
    await calm.until(/<\/stream:features>/);
  });

  it("keeps slots for sessions: a wave of unfinished logins is capped, and the cap frees as they go", async () => {
    const lb = await start({ maxPreauthConnections: 10 });
    const wave = await Promise.all(Array.from({ length: 10 }, () => connect(lb)));
    const late = await connect(lb);
    await late.closed;
    assert.equal(streamError(late.received), "policy-violation");
    for (const c of wave) c.destroy();
    await new Promise((r) => setTimeout(r, 200));
    const next = await connect(lb);
    next.send(STREAM_OPEN);
    await next.until(/<\/stream:features>/);
    assert.equal(await rejected(lb, "preauth-connections"), 1);
  });

  it("caps connections in all", async () => {
    const lb = await start({ maxConnections: 2 });
    await connect(lb);
    await connect(lb);
    const third = await connect(lb);
    await third.closed;
    assert.equal(streamError(third.received), "policy-violation");
    assert.equal(await rejected(lb, "max-connections"), 1);
  });

  /** Opens a stream, asks for STARTTLS and never sends a ClientHello: ms until the balancer closes it. */
  const stallInHandshake = async (lb: TestBalancer): Promise<number> => {
    const c = await connect(lb);
    c.send(STREAM_OPEN);
    await c.until(/<\/stream:features>/);
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    await c.until(/<proceed/);
    const started = Date.now();
    await c.closed;
    return Date.now() - started;
  };

  it("cuts off a TLS handshake that stalls, long before the login timeout", async () => {
    const lb = await start({ tlsHandshakeTimeout: 0.3, loginTimeout: 30 });
    // The slot is given back after the handshake deadline.
    assert.ok((await stallInHandshake(lb)) < 2000);
  });

  it("closes a connection stalled in its TLS handshake at the login timeout, without lingering, when that comes first", async () => {
    const lb = await start({ tlsHandshakeTimeout: 30, loginTimeout: 0.5 });
    // Nothing can be said mid-handshake: no 2 s linger for a stream error nobody can read.
    const closedAfter = await stallInHandshake(lb);
    assert.ok(closedAfter < 1500, `closed after ${closedAfter} ms`);
  });
});
