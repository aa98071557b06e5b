import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Element } from "@xmpp/xml";
import { StreamError } from "../../src/errors.js";
import { StreamReader, type StreamEvent } from "../../src/xmpp/stream-reader.js";
import { readStreamHeader } from "../../src/xmpp/stream-header.js";

const HEADER = "<?xml version='1.0'?>\n<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='lb.test' version='1.0'>";

const LIMITS = { maxHeaderBytes: 4096, maxTagBytes: 4096, childElements: false };

/** Pushes `input` and takes every event until the reader needs more bytes. */
function readAll(reader: StreamReader, input: string | Buffer): StreamEvent[] {
  reader.push(typeof input === "string" ? Buffer.from(input) : input);
  const events: StreamEvent[] = [];
  for (let e = reader.next(); e !== null; e = reader.next()) events.push(e);
  return events;
}

const condition = (fn: () => unknown, expected: string): void => {
  assert.throws(fn, (err: unknown) => err instanceof StreamError && err.condition === expected);
};
const fresh = (limits = LIMITS): StreamReader => new StreamReader(limits);

describe("StreamReader", () => {
  it("reports the header with its raw bytes, whatever the chunking", () => {
    const reader = fresh();
    const bytes = Buffer.from(HEADER);
    const events: StreamEvent[] = [];
    for (let i = 0; i < bytes.length; i += 7) events.push(...readAll(reader, bytes.subarray(i, i + 7)));
    assert.equal(events.length, 1);
    const start = events[0]!;
    assert.ok(start.kind === "start");
    assert.equal(start.raw.toString(), HEADER);
    assert.equal(readStreamHeader(start.element).to, "lb.test");
  });

  it("yields one element at a time and hands back the rest untouched", () => {
    const reader = fresh();
    reader.push(Buffer.from(`${HEADER}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGE+AGI=</auth><iq type='get' id='1'/>\u00e9`));
    assert.equal(reader.next()?.kind, "start");
    const auth = reader.next();
    assert.ok(auth?.kind === "element");
    assert.equal(auth.element.getText(), "AGE+AGI=");
    assert.equal(reader.takeRest().toString(), "<iq type='get' id='1'/>\u00e9");
    assert.equal(reader.next(), null);
  });

  it("refuses a child element before login at once, so nested input holds no tree", () => {
    const reader = fresh();
    readAll(reader, HEADER);
    condition(() => readAll(reader, "<x><x>"), "policy-violation");
    // A node's features have children: the node-side reader allows them.
    const nodeSide = fresh({ ...LIMITS, childElements: true });
    const events = readAll(nodeSide, `${HEADER}<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>`);
    assert.equal(events.length, 2);
  });

  it("lets a SASL2 <authenticate/> alone have children, within a small depth and count", () => {
    const reader = fresh();
    readAll(reader, HEADER);
    const sasl2 = "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>AGE+AGI=</initial-response><user-agent id='x'><software>t</software></user-agent><bind xmlns='urn:xmpp:bind:0'><enable xmlns='urn:xmpp:carbons:2'/></bind></authenticate>";
    const [event] = readAll(reader, sasl2);
    assert.ok(event?.kind === "element");
    assert.equal(event.element.getChild("bind", "urn:xmpp:bind:0")?.getChildren("enable").length, 1);
    condition(() => readAll(fresh(), `${HEADER}<authenticate xmlns='urn:xmpp:sasl:2'><a><b><c><d>`), "policy-violation");
    condition(() => readAll(fresh(), `${HEADER}<authenticate xmlns='urn:xmpp:sasl:2'>${"<a/>".repeat(65)}`), "policy-violation");
    // Only SASL2's: an element of that name in another namespace, or a SASL1 <auth/>, has none.
    condition(() => readAll(fresh(), `${HEADER}<authenticate xmlns='urn:example'><a/>`), "policy-violation");
    condition(() => readAll(fresh(), `${HEADER}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><a/>`), "policy-violation");
    // The count is per <authenticate/>: a second one starts afresh.
    const twice = fresh();
    readAll(twice, HEADER);
    for (let i = 0; i < 2; i++) assert.equal(readAll(twice, `<authenticate xmlns='urn:xmpp:sasl:2'>${"<a/>".repeat(40)}</authenticate>`).length, 1);
  });

  it("reads input dripped a byte at a time in linear time", () => {
    // 60,000 one-byte chunks of one text node: a quadratic reader copies ~1.8 GB here.
    const reader = fresh({ ...LIMITS, maxTagBytes: 100_000 });
    readAll(reader, HEADER);
    readAll(reader, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>");
    const started = process.cpuUsage();
    for (let i = 0; i < 60_000; i++) reader.push(Buffer.from("A"));
    assert.equal(reader.next(), null);
    const used = process.cpuUsage(started);
    assert.ok(used.user + used.system < 2_000_000, `took ${used.user + used.system} us of CPU`);
    const [auth] = readAll(reader, "</auth>");
    assert.ok(auth?.kind === "element" && auth.element.getText().length === 60_000);
  });

  it("refuses a tag longer than the limit without waiting for its end", () => {
    const reader = fresh();
    readAll(reader, HEADER);
    condition(() => readAll(reader, `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>${"A".repeat(5000)}`), "policy-violation");
  });

  it("refuses control characters XML forbids at once (NUL)", () => {
    const reader = fresh();
    readAll(reader, HEADER);
    condition(() => readAll(reader, "\0\0\0"), "not-well-formed");
  });

  it("refuses a DOCTYPE, which the parser would otherwise swallow", () => {
    condition(() => readAll(fresh(), "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]>"), "restricted-xml");
  });

  it("refuses comments, processing instructions and unknown entities", () => {
    condition(() => readAll(fresh(), `${HEADER}<!-- hi -->`), "restricted-xml");
    condition(() => readAll(fresh(), `${HEADER}<?php x ?>`), "restricted-xml");
    condition(() => readAll(fresh(), `${HEADER}<auth mechanism='&foo;'/>`), "restricted-xml");
  });

  it("answers mismatched tags and bad UTF-8 with not-well-formed", () => {
    condition(() => readAll(fresh(), `${HEADER}<a></b>`), "not-well-formed");
    condition(() => readAll(fresh(), Buffer.concat([Buffer.from(HEADER), Buffer.from([0x3c, 0x61, 0xff, 0x3e])])), "not-well-formed");
  });

  it("limits the size of a stream header", () => {
    condition(() => readAll(fresh(), `<stream:stream a='${"x".repeat(5000)}'`), "policy-violation");
  });

  it("reports the end of the stream", () => {
    const events = readAll(fresh(), `${HEADER}</stream:stream>`);
    assert.deepEqual(events.map((e) => e.kind), ["start", "end"]);
  });
});

describe("readStreamHeader", () => {
  const parse = (xml: string): Element => {
    const [start] = readAll(fresh(), xml);
    assert.ok(start?.kind === "start");
    return start.element;
  };
  it("requires the streams namespace, jabber:client, version 1.0 and a 'to'", () => {
    condition(() => readStreamHeader(parse("<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong' to='lb.test' version='1.0'>")), "invalid-namespace");
    condition(() => readStreamHeader(parse("<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='lb.test' version='1.0'>")), "invalid-namespace");
    condition(() => readStreamHeader(parse("<stream:stream xmlns='jabber:client' to='lb.test' version='1.0'>")), "bad-namespace-prefix");
    condition(() => readStreamHeader(parse("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='lb.test'>")), "unsupported-version");
    condition(() => readStreamHeader(parse("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")), "host-unknown");
  });
  it("normalizes the domain and keeps from and xml:lang", () => {
    const header = readStreamHeader(parse("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='LB.Test' from='a@lb.test' xml:lang='de' version='1.0'>"));
    assert.deepEqual(header, { to: "lb.test", from: "a@lb.test", lang: "de" });
  });
});
