import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatHostPort, seeOtherHostXml } from "../../src/xmpp/see-other-host.js";

describe("see-other-host", () => {
  it("formats IPv4, IPv6 (in brackets) and host names", () => {
    assert.equal(formatHostPort("192.0.2.7", 5222), "192.0.2.7:5222");
    assert.equal(formatHostPort("2001:db8::7", 5222), "[2001:db8::7]:5222");
    assert.equal(formatHostPort("[2001:db8::7]", 5223), "[2001:db8::7]:5223");
    assert.equal(formatHostPort("xmpp1.example.com", 5222), "xmpp1.example.com:5222");
  });
  it("is a stream error in the streams namespace, followed by the end of the stream", () => {
    assert.equal(
      seeOtherHostXml("2001:db8::7", 5222),
      "<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>[2001:db8::7]:5222</see-other-host></stream:error></stream:stream>",
    );
  });
});
