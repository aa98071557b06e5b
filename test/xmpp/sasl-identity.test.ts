import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SaslError } from "../../src/errors.js";
import { decodeSaslPayload, saslIdentity, unescapeSaslName } from "../../src/xmpp/sasl-identity.js";

const b64 = (s: string): string => Buffer.from(s, "utf8").toString("base64");
const identity = (mechanism: Parameters<typeof saslIdentity>[0], raw: string, domain = "lb.test"): string | null =>
  saslIdentity(mechanism, decodeSaslPayload(b64(raw)), domain);
const malformed = (fn: () => unknown): void => {
  assert.throws(fn, (err: unknown) => err instanceof SaslError && err.condition === "malformed-request");
};

describe("PLAIN identity", () => {
  it("takes the authcid at the stream's domain", () => {
    assert.equal(identity("PLAIN", "\0alice\0secret"), "alice@lb.test");
  });
  it("takes the authzid when one is given", () => {
    assert.equal(identity("PLAIN", "bob@lb.test\0admin\0secret"), "bob@lb.test");
    assert.equal(identity("PLAIN", "bob\0admin\0secret"), "bob@lb.test");
  });
  it("case-folds the localpart so Alice and alice meet on one node", () => {
    assert.equal(identity("PLAIN", "\0Alice\0pw"), "alice@lb.test");
  });
  it("drops the resource of a full-JID authzid", () => {
    assert.equal(identity("PLAIN", "carol@lb.test/phone\0carol\0pw"), "carol@lb.test");
  });
  it("refuses responses without exactly three fields", () => {
    malformed(() => identity("PLAIN", "alice\0secret"));
    malformed(() => identity("PLAIN", "\0alice\0secret\0more"));
    malformed(() => identity("PLAIN", "\0\0secret"));
  });
  it("refuses a localpart no server would accept", () => {
    malformed(() => identity("PLAIN", "\0al ice\0pw"));
  });
});

describe("SCRAM identity", () => {
  it("reads n= of the client-first-message", () => {
    assert.equal(identity("SCRAM-SHA-1", "n,,n=alice,r=abcdef"), "alice@lb.test");
    assert.equal(identity("SCRAM-SHA-256", "y,,n=alice,r=abcdef"), "alice@lb.test");
    assert.equal(identity("SCRAM-SHA-512", "n,a=alice@lb.test,n=alice,r=x"), "alice@lb.test");
  });
  it("routes on the authzid (a=) when one is given, as PLAIN does", () => {
    assert.equal(identity("SCRAM-SHA-1", "n,a=bob@lb.test,n=alice,r=abc"), "bob@lb.test");
    assert.equal(identity("SCRAM-SHA-256", "n,a=bob,n=alice,r=abc"), "bob@lb.test");
    assert.equal(identity("SCRAM-SHA-1", "n,a=b=2Co@lb.test,n=alice,r=abc"), "b,o@lb.test", "saslname-unescaped");
    malformed(() => identity("SCRAM-SHA-1", "n,z=bob,n=alice,r=abc"));
  });
  it("folds spellings of one account as the servers' nodeprep does", () => {
    assert.equal(identity("SCRAM-SHA-1", "n,,n=Straße,r=abc"), identity("PLAIN", "\0STRASSE\0pw"));
    assert.equal(identity("PLAIN", "\0ſam\0pw"), "sam@lb.test");
  });
  it("unescapes =2C and =3D", () => {
    assert.equal(unescapeSaslName("a=2Cb=3Dc"), "a,b=c");
    // ',' and '=' are legal in a localpart; the JID keeps them.
    assert.equal(identity("SCRAM-SHA-1", "n,,n=o=2Cb=3D,r=abc"), "o,b=@lb.test");
  });
  it("refuses bad escapes, a missing user or nonce, and a bad gs2 flag", () => {
    malformed(() => identity("SCRAM-SHA-1", "n,,n=a=2Xb,r=abc"));
    malformed(() => identity("SCRAM-SHA-1", "n,,r=abc"));
    malformed(() => identity("SCRAM-SHA-1", "n,,n=alice"));
    malformed(() => identity("SCRAM-SHA-1", "x,,n=alice,r=abc"));
    malformed(() => identity("SCRAM-SHA-1", "n,,n=,r=abc"));
  });
});

describe("SASL payload decoding", () => {
  it("treats '=' as an empty response and tolerates whitespace", () => {
    assert.equal(decodeSaslPayload("=").length, 0);
    assert.equal(decodeSaslPayload(" AGFs\naWNlAHB3 ").toString(), "\0alice\0pw");
  });
  it("refuses text that is not base64", () => {
    malformed(() => decodeSaslPayload("not base64!"));
    malformed(() => decodeSaslPayload("AGFsaWNl="));
    malformed(() => decodeSaslPayload("abc"));
  });
  it("refuses identities that are not UTF-8", () => {
    const bad = Buffer.from([0, 0xff, 0xfe, 0, 0x70]);
    malformed(() => saslIdentity("PLAIN", bad, "lb.test"));
  });
  it("ANONYMOUS carries no identity", () => {
    assert.equal(identity("ANONYMOUS", "trace"), null);
  });
});

describe("FAST token identity (XEP-0484)", () => {
  const token = (user: string): Buffer => Buffer.concat([Buffer.from(`${user}\0`), Buffer.from([0, 0xff, 0xfe, 1])]);
  it("takes the user name before the NUL, whatever bytes the HMAC has", () => {
    assert.equal(saslIdentity("HT-SHA-256-NONE", token("Dave"), "lb.test"), "dave@lb.test");
    assert.equal(saslIdentity("HT-SHA3-256-ENDP", token("erin@lb.test"), "lb.test"), "erin@lb.test");
  });
  it("refuses a response without a user name", () => {
    malformed(() => saslIdentity("HT-SHA-256-NONE", Buffer.from("\0abc"), "lb.test"));
    malformed(() => saslIdentity("HT-SHA-256-NONE", Buffer.from("nonul"), "lb.test"));
  });
  it("reads SCRAM -PLUS as SCRAM, and refuses a mechanism it does not know", () => {
    assert.equal(identity("SCRAM-SHA-256-PLUS", "p=tls-server-end-point,,n=frank,r=abc"), "frank@lb.test");
    assert.throws(() => identity("HT-MD5-NONE", "x\0y"), (err: unknown) => err instanceof SaslError && err.condition === "invalid-mechanism");
  });
});
