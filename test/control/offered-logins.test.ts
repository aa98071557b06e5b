import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { OfferedLogins, type NodeLoginFeatures } from "../../src/control/offered-logins.js";
import { createLogger } from "../../src/log.js";
import { MessageReader } from "../../src/xmpp/message-reader.js";

const parse = (xml: string) => new MessageReader(1 << 20, true).read(Buffer.from(xml));
const inline = (fast: string[], extra = "<sm xmlns='urn:xmpp:sm:3'/>") =>
  parse(`<inline xmlns='urn:xmpp:sasl:2'>${extra}<fast xmlns='urn:xmpp:fast:0'>${fast.map((m) => `<mechanism>${m}</mechanism>`).join("")}</fast></inline>`);

/** What a binding-capable node reached over TLS offers (Prosody 13 with tls_server_end_point_hash, ejabberd 24.12). */
const binding = (certificate: string, over: Partial<NodeLoginFeatures> = {}): NodeLoginFeatures => ({
  mechanisms: ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "PLAIN"],
  channelBindings: ["tls-exporter", "tls-server-end-point"],
  sasl2: { mechanisms: ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "PLAIN"], inline: inline(["HT-SHA-256-NONE", "HT-SHA-256-ENDP", "HT-SHA-256-EXPR"]) },
  certificate,
  ...over,
});

function offered(mode: "auto" | "tls-server-end-point" | "none" = "auto") {
  const lines: string[] = [];
  const logins = new OfferedLogins(["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"], mode, createLogger("trace", { write: (l: string) => void lines.push(l) }));
  const warnings = (): string[] => lines.filter((l) => l.includes('"level":40'));
  return { logins, warnings };
}

describe("OfferedLogins", () => {
  it("offers -PLUS (before its mechanism, in SASL1 and SASL2) only to a client that got the certificate every node presents", () => {
    const { logins, warnings } = offered();
    logins.learn("n1", "lb.test", binding("AA"));
    logins.learn("n2", "lb.test", binding("AA"));
    const same = logins.offer("lb.test", { certificate: "AA" });
    assert.deepEqual(same.mechanisms, ["SCRAM-SHA-1-PLUS", "PLAIN", "SCRAM-SHA-1"]);
    assert.deepEqual(same.sasl2?.mechanisms, ["SCRAM-SHA-1-PLUS", "PLAIN", "SCRAM-SHA-1"]);
    assert.equal(same.channelBinding, true);
    assert.match(same.sasl2!.inline!.toString(), /HT-SHA-256-NONE.*HT-SHA-256-ENDP/);
    assert.doesNotMatch(same.sasl2!.inline!.toString(), /EXPR/);
    // Another chain served beside it (ECDSA and RSA): that client gets no -PLUS, and no -ENDP token.
    const other = logins.offer("lb.test", { certificate: "BB" });
    assert.deepEqual(other.mechanisms, ["PLAIN", "SCRAM-SHA-1"]);
    assert.equal(other.channelBinding, false);
    assert.doesNotMatch(other.sasl2!.inline!.toString(), /ENDP|EXPR/);
    assert.equal(logins.offer("lb.test", undefined).channelBinding, false, "not before TLS");
    assert.equal(warnings().length, 1, "the operator hears once that binding-capable clients will be refused");
    logins.offer("lb.test", { certificate: "BB" });
    assert.equal(warnings().length, 1, "once per domain and reason");
  });

  it("needs every node: one that presents another certificate, or lists no tls-server-end-point, takes -PLUS away", () => {
    const a = offered();
    a.logins.learn("n1", "lb.test", binding("AA"));
    a.logins.learn("n2", "lb.test", binding("CC"));
    assert.equal(a.logins.offer("lb.test", { certificate: "AA" }).channelBinding, false);
    const b = offered();
    b.logins.learn("n1", "lb.test", binding("AA"));
    b.logins.learn("n2", "lb.test", binding("AA", { channelBindings: ["tls-exporter"] }));
    assert.equal(b.logins.offer("lb.test", { certificate: "AA" }).channelBinding, false);
    assert.match(b.warnings()[0]!, /tls-server-end-point/);
  });

  it("asserts the binding with tls-server-end-point, and never offers it with none (warning when the nodes bind)", () => {
    const asserted = offered("tls-server-end-point");
    asserted.logins.learn("n1", "lb.test", binding("node-own"));
    assert.equal(asserted.logins.offer("lb.test", { certificate: undefined }).channelBinding, true, "TLS at a front: the nodes were told its certificate");
    const none = offered("none");
    none.logins.learn("n1", "lb.test", binding("AA", { mechanisms: ["SCRAM-SHA-1", "PLAIN"], sasl2: null }));
    assert.equal(none.logins.offer("lb.test", { certificate: "AA" }).channelBinding, false);
    assert.match(none.warnings()[0]!, /--channel-binding none/, "-PLUS disabled but binding types listed: the node still refuses gs2 y");
  });

  it("offers SASL2 only when every node speaks it, with the inline features they all have", () => {
    const { logins } = offered();
    logins.learn("n1", "lb.test", binding("AA"));
    logins.learn("n2", "lb.test", binding("AA", { sasl2: { mechanisms: ["SCRAM-SHA-1", "PLAIN"], inline: inline(["HT-SHA-256-NONE"], "") } }));
    const offer = logins.offer("lb.test", { certificate: "AA" });
    assert.deepEqual(offer.sasl2?.mechanisms, ["PLAIN", "SCRAM-SHA-1"], "-PLUS only where every node has it in that list");
    assert.doesNotMatch(offer.sasl2!.inline!.toString(), /<sm/, "SM inline is not on every node");
    assert.equal(logins.speaksSasl2("n2", "lb.test"), true);
    assert.equal(logins.speaksSasl2("n9", "lb.test"), false, "a node not probed yet takes no SASL2 login");
    logins.learn("n3", "lb.test", binding("AA", { sasl2: null }));
    assert.equal(logins.speaksSasl2("n3", "lb.test"), false);
    assert.equal(logins.offer("lb.test", { certificate: "AA" }).sasl2, null, "a node without SASL2 (Prosody 0.12): SASL1 only");
    logins.forget("n3");
    assert.notEqual(logins.offer("lb.test", { certificate: "AA" }).sasl2, null);
    logins.forget("n1");
    logins.forget("n2");
    assert.deepEqual(logins.offer("lb.test", { certificate: "AA" }), { mechanisms: ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"], channelBinding: false, sasl2: null }, "every node gone: nothing is known, no SASL2");
  });
});
