import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { RawXmpp, STREAM_OPEN, plainAuth, trapListener } from "../support/raw.js";
import { startBalancer, type TestBalancer } from "../support/balancer.js";

/** The pre-auth dialogue over real sockets, with no node able to take a login. */
describe("pre-auth dialogue", () => {
  let lb: TestBalancer;
  let trap: Awaited<ReturnType<typeof trapListener>>;

  before(async () => {
    trap = await trapListener();
    // One node whose internal address refuses connections (port 1 on loopback).
    // A short --dial-timeout: a refused dial is retried (a node may be restarting) until it passes.
    lb = await startBalancer({ node: [`id=dead,internal=127.0.0.1:1,external=127.0.0.1:${trap.port}`], loginTimeout: 1.5, dialTimeout: 0.3, healthInterval: 60 });
  });
  after(async () => {
    await lb.close();
    await trap.close();
  });

  const streamError = (text: string): string | undefined => /<stream:error><([a-z-]+) xmlns='urn:ietf:params:xml:ns:xmpp-streams'/.exec(text)?.[1];

  it("offers STARTTLS as required and no SASL before TLS", async () => {
    const c = await RawXmpp.connect(lb.port);
    c.send(STREAM_OPEN);
    const text = await c.until(/<\/stream:features>/);
    assert.match(text, /<stream:stream [^>]*from='lb.test'/);
    assert.match(text, /<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required\/><\/starttls>/);
    assert.doesNotMatch(text, /mechanisms/);
    c.destroy();
  });

  it("offers the configured SASL mechanisms after TLS, never a -PLUS one", async () => {
    const c = await RawXmpp.connect(lb.port);
    await c.secureStream();
    assert.match(c.received, /<mechanism>PLAIN<\/mechanism><mechanism>SCRAM-SHA-1<\/mechanism><mechanism>SCRAM-SHA-256<\/mechanism>/);
    assert.doesNotMatch(c.received, /PLUS/);
    c.destroy();
  });

  it("answers a login when no node can take it with temporary-auth-failure, and lets the client retry", async () => {
    const c = await RawXmpp.connect(lb.port);
    await c.secureStream();
    c.send(plainAuth("alice", "secret"));
    await c.until(/<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><temporary-auth-failure\/>/);
    assert.equal(trap.connections(), 0, "a forward never dials the external address");
    c.send(plainAuth("alice", "secret"));
    await c.until(/temporary-auth-failure[\s\S]*temporary-auth-failure/);
    c.destroy();
  });

  it("opens every stream with a new id, before and after STARTTLS", async () => {
    const c = await RawXmpp.connect(lb.port);
    c.send(STREAM_OPEN);
    const first = /<stream:stream [^>]*id='([^']+)'/.exec(await c.until(/<\/stream:features>/))?.[1];
    await c.starttls();
    c.send(STREAM_OPEN);
    const second = /<stream:stream [^>]*id='([^']+)'/.exec(await c.until(/<\/stream:features>/))?.[1];
    assert.ok(first !== undefined && second !== undefined);
    assert.notEqual(first, second);
    c.destroy();
  });

  it("counts bytes after a refused login once against the pre-auth limit", async () => {
    const tight = await startBalancer({ node: ["id=dead,internal=127.0.0.1:1"], maxPreauthBytes: 3000, dialTimeout: 0.3, healthInterval: 60 });
    const c = await RawXmpp.connect(tight.port);
    await c.secureStream();
    // ~1,950 bytes in all: within the limit once, beyond it if the unread rest were counted twice.
    c.send(plainAuth("alice", "secret") + " ".repeat(1500));
    await c.until(/<temporary-auth-failure\/>/);
    c.send(plainAuth("alice", "secret"));
    await c.until(/temporary-auth-failure[\s\S]*temporary-auth-failure/);
    assert.doesNotMatch(c.received, /policy-violation/);
    c.destroy();
    await tight.close();
  });

  it("answers a malformed PLAIN response with malformed-request", async () => {
    const c = await RawXmpp.connect(lb.port);
    await c.secureStream();
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>not*base64</auth>");
    await c.until(/<malformed-request\/>/);
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='DIGEST-MD5'>=</auth>");
    await c.until(/<invalid-mechanism\/>/);
    c.destroy();
  });

  const cases: Array<[string, string, string]> = [
    ["an unknown domain", STREAM_OPEN.replace("lb.test", "other.test"), "host-unknown"],
    ["a wrong stream namespace", STREAM_OPEN.replace("http://etherx.jabber.org/streams", "urn:nope"), "invalid-namespace"],
    ["a missing version", STREAM_OPEN.replace(" version='1.0'>", ">"), "unsupported-version"],
    ["a TLS ClientHello on the STARTTLS port", "\u0016\u0003\u0001\u0002\u0000\u0001\u0000\u0001\u00fc\u0003\u0003", "not-well-formed"],
    ["a DOCTYPE", "<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY x 'y'>]>", "restricted-xml"],
    ["an HTTP request", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not-well-formed"],
    ["a stanza before login", `${STREAM_OPEN}<message to='a@lb.test'><body>hi</body></message>`, "not-authorized"],
    ["SASL before TLS", `${STREAM_OPEN}${plainAuth("a", "b")}`, "policy-violation"],
  ];
  for (const [what, input, condition] of cases) {
    it(`answers ${what} with <${condition}/> and closes`, async () => {
      const c = await RawXmpp.connect(lb.port);
      c.send(input);
      await c.closed;
      assert.equal(streamError(c.received), condition, c.received);
      assert.match(c.received, /^<\?xml version='1.0'\?><stream:stream /, "the balancer's header comes first");
      assert.match(c.received, /<\/stream:stream>$/);
    });
  }

  it("closes a stalled login with connection-timeout", async () => {
    const c = await RawXmpp.connect(lb.port);
    c.send(STREAM_OPEN);
    await c.closed;
    assert.equal(streamError(c.received), "connection-timeout");
  });

  it("answers clients still in the dialogue with system-shutdown when the balancer stops", async () => {
    const other = await startBalancer({ node: ["id=n1,internal=127.0.0.1:1"], healthInterval: 60 });
    const c = await RawXmpp.connect(other.port);
    c.send(STREAM_OPEN);
    await c.until(/<\/stream:features>/);
    await other.close();
    await c.closed;
    assert.equal(streamError(c.received), "system-shutdown");
  });

  it("counts outcomes and stream errors in the metrics", async () => {
    const connections = await lb.balancer.metrics.registry.getSingleMetricAsString("xmpp_lb_connections_total");
    assert.match(connections, /listener="127.0.0.1:0",outcome="rejected",transport="tcp"} (\d+)/);
    const errors = await lb.balancer.metrics.registry.getSingleMetricAsString("xmpp_lb_stream_errors_total");
    assert.match(errors, /condition="host-unknown"} 1/);
    assert.match(errors, /condition="restricted-xml"} 1/);
  });
});
