import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Element } from "@xmpp/xml";
import { StreamError } from "../../src/errors.js";
import { StreamReader } from "../../src/xmpp/stream-reader.js";
import { readStreamHeader } from "../../src/xmpp/stream-header.js";

const HEADER = "<?xml version='1.0'?>\n<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='lb.test' version='1.0'>";

function recorder(stopOn?: string) {
  const seen: { starts: Element[]; raw: Buffer[]; elements: Element[]; ended: boolean } = { starts: [], raw: [], elements: [], ended: false };
  const reader = new StreamReader(
    {
      onStreamStart: (el, raw) => void (seen.starts.push(el), seen.raw.push(raw)),
      onElement: (el) => (seen.elements.push(el), el.getName() === stopOn),
      onStreamEnd: () => void (seen.ended = true),
    },
    4096,
  );
  return { seen, reader };
}

const condition = (fn: () => unknown, expected: string): void => {
  assert.throws(fn, (err: unknown) => err instanceof StreamError && err.condition === expected);
};

describe("StreamReader", () => {
  it("reports the header with its raw bytes, whatever the chunking", () => {
    const { seen, reader } = recorder();
    const bytes = Buffer.from(HEADER);
    for (let i = 0; i < bytes.length; i += 7) reader.push(bytes.subarray(i, i + 7));
    assert.equal(seen.starts.length, 1);
    assert.equal(seen.raw[0]!.toString(), HEADER);
    assert.equal(readStreamHeader(seen.starts[0]!).to, "lb.test");
  });

  it("stops right after the element the handler asks for and hands back the rest untouched", () => {
    const { seen, reader } = recorder("auth");
    const rest = reader.push(Buffer.from(`${HEADER}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGE+AGI=</auth><iq type='get' id='1'/>\u00e9`));
    assert.equal(seen.elements.length, 1);
    assert.equal(seen.elements[0]!.getText(), "AGE+AGI=");
    assert.equal(rest?.toString(), "<iq type='get' id='1'/>\u00e9");
  });

  it("refuses a DOCTYPE, which the parser would otherwise swallow", () => {
    const { reader } = recorder();
    condition(() => reader.push(Buffer.from("<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]>")), "restricted-xml");
  });

  it("refuses comments, processing instructions and unknown entities", () => {
    condition(() => recorder().reader.push(Buffer.from(`${HEADER}<!-- hi -->`)), "restricted-xml");
    condition(() => recorder().reader.push(Buffer.from(`${HEADER}<?php x ?>`)), "restricted-xml");
    condition(() => recorder().reader.push(Buffer.from(`${HEADER}<auth mechanism='&foo;'/>`)), "restricted-xml");
  });

  it("answers mismatched tags and bad UTF-8 with not-well-formed", () => {
    condition(() => recorder().reader.push(Buffer.from(`${HEADER}<a></b>`)), "not-well-formed");
    condition(() => recorder().reader.push(Buffer.concat([Buffer.from(HEADER), Buffer.from([0x3c, 0x61, 0xff, 0x3e])])), "not-well-formed");
  });

  it("limits the size of a stream header", () => {
    const { reader } = recorder();
    condition(() => reader.push(Buffer.from(`<stream:stream a='${"x".repeat(5000)}'`)), "policy-violation");
  });

  it("reports the end of the stream", () => {
    const { seen, reader } = recorder();
    reader.push(Buffer.from(`${HEADER}</stream:stream>`));
    assert.equal(seen.ended, true);
  });
});

describe("readStreamHeader", () => {
  const parse = (xml: string): Element => {
    const { seen, reader } = recorder();
    reader.push(Buffer.from(xml));
    return seen.starts[0]!;
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
