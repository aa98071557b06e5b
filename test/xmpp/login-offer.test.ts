import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MessageReader } from "../../src/xmpp/message-reader.js";
import { holdingInline, holdingNodeFeatures, loginOfferXml } from "../../src/xmpp/login-offer.js";
import { Sasl2SuccessReader } from "../../src/xmpp/sasl2-success.js";

const parse = (xml: string) => new MessageReader(1 << 20, true).read(Buffer.from(xml));
const mechs = (names: string[]) => names.map((m) => `<mechanism>${m}</mechanism>`).join("");

/** Prosody 13's first features on a TLS 1.3 stream, with -PLUS, FAST and XEP-0440 (as the balancer reaches it over --backend-tls). */
const PROSODY_13 = parse(
  "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>" +
    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>" +
    `<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>${mechs(["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "PLAIN"])}</mechanisms>` +
    "<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding type='tls-exporter'/><channel-binding type='tls-server-end-point'/></sasl-channel-binding>" +
    `<authentication xmlns='urn:xmpp:sasl:2'>${mechs(["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "PLAIN"])}<inline>` +
    "<bind xmlns='urn:xmpp:bind:0'><inline><feature var='urn:xmpp:carbons:2'/></inline></bind><sm xmlns='urn:xmpp:sm:3'/>" +
    `<fast xmlns='urn:xmpp:fast:0'>${mechs(["HT-SHA-256-EXPR", "HT-SHA-256-NONE", "HT-SHA-256-ENDP"])}</fast>` +
    "</inline></authentication></stream:features>",
);
const names = (xml: string): string[] => [...xml.matchAll(/<mechanism>([^<]+)</g)].map((m) => m[1]!);

describe("what holds through the balancer", () => {
  it("phase open, binding holds: only tls-server-end-point, -PLUS kept, FAST without -EXPR, no STARTTLS on a TLS stream", () => {
    const xml = holdingNodeFeatures(PROSODY_13, { secure: true, bindingHolds: true }).toString();
    assert.doesNotMatch(xml, /starttls/);
    assert.doesNotMatch(xml, /tls-exporter/);
    assert.match(xml, /tls-server-end-point/);
    assert.deepEqual(names(xml), ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "PLAIN", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "PLAIN", "HT-SHA-256-NONE", "HT-SHA-256-ENDP"]);
    assert.match(xml, /<bind xmlns="urn:xmpp:bind:0"><inline><feature var="urn:xmpp:carbons:2"\/><\/inline><\/bind><sm xmlns="urn:xmpp:sm:3"\/>/, "Bind2 and SM pass as they are");
    assert.match(PROSODY_13.toString(), /tls-exporter/, "the shared original is left alone");
  });

  it("phase open, binding does not hold: no -PLUS, no XEP-0440 list, FAST only -NONE", () => {
    const xml = holdingNodeFeatures(PROSODY_13, { secure: true, bindingHolds: false }).toString();
    assert.doesNotMatch(xml, /-PLUS|sasl-channel-binding|ENDP|EXPR/);
    assert.deepEqual(names(xml), ["SCRAM-SHA-1", "PLAIN", "SCRAM-SHA-1", "PLAIN", "HT-SHA-256-NONE"]);
  });

  it("keeps STARTTLS for a client not on TLS yet, and no -PLUS from a node that lists no binding types", () => {
    const plain = parse(`<stream:features xmlns:stream='http://etherx.jabber.org/streams'><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>${mechs(["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"])}</mechanisms></stream:features>`);
    const xml = holdingNodeFeatures(plain, { secure: false, bindingHolds: true }).toString();
    assert.match(xml, /starttls/);
    assert.deepEqual(names(xml), ["SCRAM-SHA-1"]);
  });

  it("drops FAST from SASL2's inline features when no token mechanism holds", () => {
    const inline = parse(`<inline xmlns='urn:xmpp:sasl:2'><fast xmlns='urn:xmpp:fast:0'>${mechs(["HT-SHA-256-EXPR", "HT-SHA-256-UNIQ"])}</fast><sm xmlns='urn:xmpp:sm:3'/></inline>`);
    assert.doesNotMatch(holdingInline(inline, true)!.toString(), /fast/);
  });

  it("writes an offer: SASL1, the one binding type, SASL2 with its inline features", () => {
    const inline = parse("<inline xmlns='urn:xmpp:sasl:2'><sm xmlns='urn:xmpp:sm:3'/></inline>");
    const xml = loginOfferXml({ mechanisms: ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"], channelBinding: true, sasl2: { mechanisms: ["SCRAM-SHA-1"], inline } });
    assert.equal(
      xml,
      "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-1</mechanism></mechanisms>" +
        "<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding type='tls-server-end-point'/></sasl-channel-binding>" +
        "<authentication xmlns='urn:xmpp:sasl:2'><mechanism>SCRAM-SHA-1</mechanism><inline xmlns=\"urn:xmpp:sasl:2\"><sm xmlns=\"urn:xmpp:sm:3\"/></inline></authentication>",
    );
  });
});

describe("Sasl2SuccessReader", () => {
  const success = "<success xmlns='urn:xmpp:sasl:2'><authorization-identifier>a@lb.test/x</authorization-identifier><bound xmlns='urn:xmpp:bind:0'/><token xmlns='urn:xmpp:fast:0' expiry='2026-12-27T21:00:00Z' token='s3cr3t'/></success>";

  it("finds the FAST token's expiry, however the success is split, and keeps nothing of the token itself", () => {
    for (let cut = 1; cut < success.length; cut += 17) {
      const reader = new Sasl2SuccessReader();
      const more = reader.push(Buffer.from(`<challenge/>${success.slice(0, cut)}`));
      if (more) assert.equal(reader.push(Buffer.from(`${success.slice(cut)}<message/>`)), false);
      assert.equal(reader.tokenExpiry(), Date.parse("2026-12-27T21:00:00Z"), `cut at ${cut}`);
    }
  });

  it("answers undefined without a token, and for a token of another namespace or a date that is not one", () => {
    const read = (xml: string): number | undefined => {
      const reader = new Sasl2SuccessReader();
      reader.push(Buffer.from(xml));
      return reader.tokenExpiry();
    };
    assert.equal(read("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"), undefined);
    assert.equal(read("<success xmlns='urn:xmpp:sasl:2'><token xmlns='urn:example' expiry='2026-12-27T21:00:00Z'/></success>"), undefined);
    assert.equal(read("<success xmlns='urn:xmpp:sasl:2'><token xmlns='urn:xmpp:fast:0' expiry='soon'/></success>"), undefined);
  });

  it("remembers a token for a year at most, whatever expiry the node gives", () => {
    const reader = new Sasl2SuccessReader();
    reader.push(Buffer.from("<success xmlns='urn:xmpp:sasl:2'><token xmlns='urn:xmpp:fast:0' expiry='2999-01-01T00:00:00Z'/></success>"));
    assert.ok(reader.tokenExpiry()! <= Date.now() + 367 * 24 * 3600 * 1000);
  });
});
