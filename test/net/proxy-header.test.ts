import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ProxyHeaderError, parseProxyHeader, proxyHeader } from "../../src/net/proxy-header.js";

const v4 = { source: { address: "192.0.2.7", port: 40123 }, destination: { address: "198.51.100.1", port: 5222 } };
const v6 = { source: { address: "2001:db8::7", port: 40123 }, destination: { address: "2001:db8::1", port: 5222 } };

describe("PROXY protocol headers", () => {
  it("read back what they write, v1 and v2, IPv4 and IPv6, with what follows left alone", () => {
    for (const version of ["v1", "v2"] as const) {
      for (const addresses of [v4, v6]) {
        const header = proxyHeader(version, addresses);
        const parsed = parseProxyHeader(Buffer.concat([header, Buffer.from("<?xml")]));
        assert.deepEqual(parsed, { length: header.length, addresses }, `${version} ${addresses.source.address}`);
      }
    }
  });

  it("read the exact text HAProxy and the spec give", () => {
    assert.deepEqual(parseProxyHeader(Buffer.from("PROXY TCP4 192.0.2.7 198.51.100.1 40123 5222\r\n")), { length: 46, addresses: v4 });
    assert.deepEqual(parseProxyHeader(Buffer.from("PROXY UNKNOWN\r\n")), { length: 15, addresses: null });
    // v2 LOCAL: the front's own health check carries no address.
    assert.deepEqual(parseProxyHeader(proxyHeader("v2", null)), { length: 16, addresses: null });
  });

  it("wait for more bytes when a header is cut short", () => {
    const header = proxyHeader("v2", v6);
    for (const cut of [1, 5, 12, 15, header.length - 1]) assert.equal(parseProxyHeader(header.subarray(0, cut)), null, `cut at ${cut}`);
    assert.equal(parseProxyHeader(Buffer.from("PROXY TCP4 192.0.2.7")), null);
  });

  it("refuse a connection that starts with anything else, or a malformed header", () => {
    for (const text of ["<?xml version='1.0'?>", "GET / HTTP/1.1\r\n", "PROXY TCP4 999.0.0.1 198.51.100.1 1 2\r\n", "PROXY TCP4 192.0.2.7 198.51.100.1 1 70000\r\n", `PROXY ${"x".repeat(120)}`]) {
      assert.throws(() => parseProxyHeader(Buffer.from(text)), ProxyHeaderError, text);
    }
  });
});
