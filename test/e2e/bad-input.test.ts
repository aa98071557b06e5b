import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { RawXmpp, STREAM_OPEN, plainAuth, trapListener } from "../support/raw.js";
import { startBalancer, type TestBalancer } from "../support/balancer.js";

const SASL = "urn:ietf:params:xml:ns:xmpp-sasl";
const streamError = (text: string): string | undefined => /<stream:error><([a-z-]+) xmlns='urn:ietf:params:xml:ns:xmpp-streams'/.exec(text)?.[1];

interface Case {
  /** The README's "Bad input" row this input belongs to. */
  row: string;
  input: string | Buffer;
  /** Sent after STARTTLS and the stream restart (the dialogue's later steps). */
  secure?: boolean;
  answer: string;
}

/**
 * The README's "Bad input" table, row by row, against a running balancer:
 * each input gets its stream error at once (well before the login timeout),
 * after the balancer's own header, and the connection is closed. Limits and
 * timeouts have their own files (limits, hostile-input, client-leaves,
 * traffic-limit, preauth).
 */
describe("bad input (the README's table)", () => {
  let lb: TestBalancer;
  let trap: Awaited<ReturnType<typeof trapListener>>;

  before(async () => {
    trap = await trapListener();
    lb = await startBalancer({ node: [`id=dead,internal=127.0.0.1:1,external=127.0.0.1:${trap.port}`], loginTimeout: 20, maxPreauthBytes: 4096, maxHeaderBytes: 1024, healthInterval: 60 });
  });
  after(async () => {
    await lb.close();
    await trap.close();
  });

  const header = (attrs: string): string => `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' ${attrs}>`;
  const cases: Case[] = [
    { row: "no to", input: header("version='1.0'"), answer: "host-unknown" },
    { row: "an unbound prefix", input: "<?xml version='1.0'?><stream:stream xmlns='jabber:client' to='lb.test' version='1.0'>", answer: "bad-namespace-prefix" },
    { row: "wrong content namespace", input: STREAM_OPEN.replace("jabber:client", "jabber:nope"), answer: "invalid-namespace" },
    { row: "an unbound prefix on an element", input: `${STREAM_OPEN}<p:starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`, answer: "bad-namespace-prefix" },
    { row: "text between elements", input: `${STREAM_OPEN}hello`, answer: "bad-format" },
    { row: "a character reference between elements", input: `${STREAM_OPEN}&amp;`, answer: "bad-format" },
    { row: "CDATA between elements", input: `${STREAM_OPEN}<![CDATA[x]]>`, answer: "bad-format" },
    { row: "a version below 1.0", input: STREAM_OPEN.replace("version='1.0'>", "version='0.9'>"), answer: "unsupported-version" },
    { row: "comment", input: `${STREAM_OPEN}<!-- hello -->`, answer: "restricted-xml" },
    { row: "processing instruction", input: `${STREAM_OPEN}<?php echo 1; ?>`, answer: "restricted-xml" },
    { row: "entity reference", input: `${STREAM_OPEN}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>&boom;</starttls>`, answer: "restricted-xml" },
    { row: "binary", input: Buffer.from([0x16, 0xfe, 0x01, 0x7f, 0x80, 0x99, 0x10]), answer: "not-well-formed" },
    { row: "bad UTF-8", input: Buffer.concat([Buffer.from(STREAM_OPEN), Buffer.from([0x3c, 0x61, 0x20, 0x62, 0x3d, 0x27, 0xc3, 0x28, 0x27, 0x2f, 0x3e])]), answer: "not-well-formed" },
    { row: "mismatched tags", input: `${STREAM_OPEN}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'></proceed>`, answer: "not-well-formed" },
    { row: "a stanza before login (iq)", input: `${STREAM_OPEN}<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>`, answer: "not-authorized" },
    { row: "a stanza before login (presence)", input: `${STREAM_OPEN}<presence/>`, answer: "not-authorized" },
    { row: "another forbidden control character", input: `${STREAM_OPEN}\u0007`, answer: "not-well-formed" },
    { row: "too many bytes before the decision", input: `${STREAM_OPEN}${" ".repeat(5000)}`, answer: "policy-violation" },
    { row: "a huge header", input: header(`to='lb.test' version='1.0' junk='${"x".repeat(2000)}'`), answer: "policy-violation" },
    { row: "an element inside <starttls>", input: `${STREAM_OPEN}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><x/></starttls>`, answer: "policy-violation" },
    { row: "an element inside <auth>", input: `<auth xmlns='${SASL}' mechanism='PLAIN'><x/></auth>`, secure: true, answer: "policy-violation" },
    { row: "an <authenticate> nested too deep", input: `<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><a><b><c><d/></c></b></a></authenticate>`, secure: true, answer: "policy-violation" },
    { row: "an <authenticate> with too many elements", input: `<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'>${"<x/>".repeat(65)}</authenticate>`, secure: true, answer: "policy-violation" },
    { row: "a tag longer than 16 KiB", input: `<auth xmlns='${SASL}' mechanism='PLAIN' junk='${"y".repeat(17 * 1024)}'/>`, secure: true, answer: "policy-violation" },
    {
      row: "three refused SASL attempts",
      input: `<auth xmlns='${SASL}' mechanism='PLAIN'>!!</auth>`.repeat(3),
      secure: true,
      answer: "policy-violation",
    },
  ];

  for (const c of cases) {
    it(`answers ${c.row} with <${c.answer}/> at once and closes`, async () => {
      const client = await RawXmpp.connect(lb.port);
      if (c.secure) await client.secureStream();
      const sent = performance.now();
      client.send(c.input);
      await client.closed;
      assert.ok(performance.now() - sent < 5000, "answered at once, not at the login timeout");
      assert.equal(streamError(client.received), c.answer, client.received.slice(0, 400));
      if (!c.secure) assert.match(client.received, /^<\?xml version='1.0'\?><stream:stream /, "the balancer's header comes first");
      assert.match(client.received, /<\/stream:stream>$/);
    });
  }

  it("answers bad base64 with SASL malformed-request and a mechanism not offered with invalid-mechanism, keeping the stream", async () => {
    const client = await RawXmpp.connect(lb.port);
    await client.secureStream();
    client.send(`<auth xmlns='${SASL}' mechanism='PLAIN'>!!</auth>`);
    await client.until(/<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><malformed-request\/>/);
    client.send(`<auth xmlns='${SASL}' mechanism='X-NOPE'/>`);
    await client.until(/<invalid-mechanism\/>/);
    client.send(plainAuth("a", "b"));
    // The stream is still open: the third try reaches routing (no node can take it here).
    await client.until(/<temporary-auth-failure\/>/);
    client.destroy();
  });
});
