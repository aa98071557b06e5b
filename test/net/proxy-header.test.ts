import assert from "node:assert/strict";
import { once } from "node:events";
import net from "node:net";
import { describe, it } from "node:test";
import { readProxyHeader } from "../../src/listener/proxy-reader.js";
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

  it("refuse a v1 line whose CRLF is beyond 107 bytes, however much arrived at once", () => {
    const line = (length: number): string => `PROXY UNKNOWN ${"x".repeat(length - 16)}\r\n`;
    assert.equal(line(107).length, 107);
    assert.deepEqual(parseProxyHeader(Buffer.from(line(107) + "<?xml")), { length: 107, addresses: null }, "the spec's longest line");
    for (const text of [line(108), line(5016), `${line(108)}<?xml`, `PROXY TCP4 192.0.2.7 198.51.100.1 40123 5222${" ".repeat(80)}\r\n`]) {
      assert.throws(() => parseProxyHeader(Buffer.from(text)), ProxyHeaderError, `${text.length} bytes`);
    }
  });

  it("refuse a v1 line beyond 107 bytes from a socket, in one read or in several", async () => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as net.AddressInfo;
    const sockets: net.Socket[] = [];
    server.on("connection", (socket) => sockets.push(socket));
    try {
      for (const chunks of [[`PROXY UNKNOWN ${"x".repeat(5000)}\r\n`], ["PROXY UNKNOWN ", `${"x".repeat(200)}\r\n`]]) {
        const accepted = once(server, "connection") as Promise<[net.Socket]>;
        const client = net.connect(port, "127.0.0.1");
        sockets.push(client);
        const [socket] = await accepted;
        const outcome = readProxyHeader(socket, 2000).then((header) => header, (err: unknown) => err);
        for (const chunk of chunks) {
          client.write(chunk);
          await new Promise((r) => setTimeout(r, 20));
        }
        assert.ok((await outcome) instanceof ProxyHeaderError, `${chunks.length} read(s)`);
      }
    } finally {
      for (const socket of sockets) socket.destroy();
      server.close();
    }
  });

  it("give one spelling per address, v1 and v2, so a client counts once", () => {
    const v1 = (src: string, dst: string): string | undefined => parseProxyHeader(Buffer.from(`PROXY TCP6 ${src} ${dst} 40123 5222\r\n`))?.addresses?.source.address;
    assert.equal(v1("0:0:0:0:0:0:0:1", "::1"), "::1");
    assert.equal(v1("2001:DB8:0:0:0::7", "::1"), "2001:db8::7");
    assert.equal(v1("2001:db8::7", "::1"), "2001:db8::7");
    // IPv4-mapped: the IPv4 address, as a TCP4 header of the same client gives it.
    assert.equal(v1("::FFFF:192.0.2.7", "::1"), "192.0.2.7");
    assert.equal(v1("0:0:0:0:0:ffff:c000:207", "::1"), "192.0.2.7");
    const both = parseProxyHeader(Buffer.from("PROXY TCP6 0:0:0:0:0:0:0:1 2001:db8:0::1 1 2\r\n"))!.addresses!;
    assert.deepEqual([both.source.address, both.destination.address], ["::1", "2001:db8::1"]);

    const mapped = { source: { address: "::ffff:192.0.2.7", port: 40123 }, destination: { address: "2001:db8::1", port: 5222 } };
    assert.deepEqual(parseProxyHeader(proxyHeader("v2", mapped))!.addresses, { source: { address: "192.0.2.7", port: 40123 }, destination: mapped.destination }, "v2 too");

    // A zone is no part of an address in a PROXY header.
    assert.throws(() => parseProxyHeader(Buffer.from("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n")), ProxyHeaderError);
  });
});
