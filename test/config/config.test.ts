import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { parseListen, resolveConfig } from "../../src/config.js";
import { parseNode } from "../../src/node-keys.js";
import { ConfigError } from "../../src/errors.js";
import { expandExternal, parseDiscoverUrl } from "../../src/control/discovery/discovery-url.js";
import { parseNodesFile } from "../../src/control/discovery/file-source.js";
import { defaultLogFormat } from "../../src/log.js";

const base = { domain: "lb.test", allowPlaintext: true };

describe("configuration", () => {
  it("parses nodes with internal and external addresses, weight, zone and domains", () => {
    assert.deepEqual(parseNode("id=n1,internal=10.0.0.1:5222,external=[2001:db8::1]:5222,weight=2,zone=eu,domains=a.test+B.test"), {
      id: "n1",
      internal: { host: "10.0.0.1", port: 5222 },
      external: { host: "2001:db8::1", port: 5222 },
      weight: 2,
      zone: "eu",
      domains: ["a.test", "b.test"],
    });
    assert.deepEqual(parseNode({ id: "n2", internal: "h:1" }).external, { host: "h", port: 1 });
  });

  it("parses listeners with kind, mode, phase and PROXY protocol", () => {
    assert.deepEqual(parseListen("direct-tls://0.0.0.0:5223,mode=redirect", { mode: "forward", phase: "login", proxyProtocol: false }), {
      name: "direct-tls://0.0.0.0:5223,mode=redirect",
      kind: "direct-tls",
      host: "0.0.0.0",
      port: 5223,
      mode: "redirect",
      phase: "login",
      proxyProtocol: false,
    });
    assert.equal(parseListen("0.0.0.0:5222,proxy", { mode: "forward", phase: "login", proxyProtocol: false }).proxyProtocol, true);
    assert.equal(parseNode("id=n1,internal=h:1,proxy=v2").proxy, "v2");
    assert.throws(() => parseNode("id=n1,internal=h:1,proxy=v3"), ConfigError);
  });

  it("reads repeatable values given as one env string", () => {
    const config = resolveConfig({ ...base, node: "id=a,internal=h:1 id=b,internal=h:2", listen: "127.0.0.1:1;127.0.0.1:2" });
    assert.deepEqual(config.nodes.map((n) => n.id), ["a", "b"]);
    assert.equal(config.listeners.length, 2);
  });

  it("rejects bad values with one clear sentence", () => {
    const bad: Array<[object, RegExp]> = [
      [{ ...base, node: "id=n1" }, /internal=HOST:PORT is required/],
      [{ ...base, node: ["id=n1,internal=h:1", "id=n1,internal=h:2"] }, /given twice/],
      [{ ...base, node: "id=n1,internal=h:99999" }, /not HOST:PORT/],
      [{ ...base, strategy: "round-robin" }, /--strategy must be one of/],
      [{ ...base, saslMechanisms: ["SCRAM-SHA-1-PLUS"] }, /channel binding/],
      [{ domain: "lb.test" }, /--tls-cert and --tls-key are required/],
      [{ allowPlaintext: true }, /--domain is required/],
      [{ ...base, listen: "wx://0.0.0.0:1" }, /--listen must be one of/],
      [{ ...base, listen: "0.0.0.0:1/xmpp-websocket" }, /a path is only for ws:\/\/ and wss:\/\/ listeners/],
      [{ ...base, listen: "wss://0.0.0.0:1/xmpp-websocket" }, /a wss:\/\/ listener needs --tls-cert/],
      [{ ...base, node: ["id=n1,internal=10.0.0.1:5222,ws=http://n1.example.com/xmpp"] }, /is not a ws:\/\/ or wss:\/\/ URL/],
      [{ ...base, listen: "0.0.0.0:5222,forwarded-for" }, /forwarded-for is only for ws:\/\/ and wss:\/\/ listeners/],
      [{ ...base, loginTimeout: "soon" }, /--login-timeout must be a number/],
    ];
    for (const [input, message] of bad) assert.throws(() => resolveConfig(input), (err: unknown) => err instanceof ConfigError && message.test(err.message), JSON.stringify(input));
  });

  it("reads the admin endpoint's names and token (--admin-host, --admin-token, --admin-token-file)", () => {
    const config = resolveConfig({ ...base, adminHost: ["LB1.Internal.", "[2001:db8::1]", "::1"], adminToken: "abc-DEF_123.~+/=" });
    assert.deepEqual(config.adminHosts, ["lb1.internal", "2001:db8::1", "::1"]);
    assert.equal(config.adminToken, "abc-DEF_123.~+/=");
    assert.deepEqual(resolveConfig({ ...base, adminHost: "a.internal;b.internal" }).adminHosts, ["a.internal", "b.internal"], "from the environment");
    assert.equal(resolveConfig(base).adminToken, undefined);

    const dir = mkdtempSync(path.join(os.tmpdir(), "xmpp-lb-config-"));
    try {
      const file = path.join(dir, "token");
      writeFileSync(file, "from-a-file\n");
      assert.equal(resolveConfig({ ...base, adminTokenFile: file }).adminToken, "from-a-file", "read at start, the newline dropped");
      const bad: Array<[object, RegExp]> = [
        [{ ...base, adminHost: "lb1.internal:9102" }, /--admin-host: 'lb1.internal:9102' is not a host name or IP address without a port/],
        [{ ...base, adminHost: "user@lb1.internal" }, /--admin-host/],
        [{ ...base, adminToken: "two words" }, /admin token must be one word/],
        [{ ...base, adminToken: "" }, /admin token must be one word/],
        [{ ...base, adminToken: "a", adminTokenFile: file }, /not both/],
        [{ ...base, adminTokenFile: path.join(dir, "missing") }, /cannot read --admin-token-file/],
      ];
      for (const [input, message] of bad) assert.throws(() => resolveConfig(input), (err: unknown) => err instanceof ConfigError && message.test(err.message), JSON.stringify(input));
      writeFileSync(file, "\n");
      assert.throws(() => resolveConfig({ ...base, adminTokenFile: file }), /admin token must be one word/, "an empty file is no token");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("reads --log-format, pretty on a terminal and json elsewhere when none is given", () => {
    assert.equal(resolveConfig({ ...base, logFormat: "pretty" }).logFormat, "pretty");
    assert.equal(resolveConfig({ ...base, logFormat: "json" }).logFormat, "json");
    assert.equal(resolveConfig(base).logFormat, defaultLogFormat(), "the test runner's stdout decides");
    assert.equal(defaultLogFormat({ isTTY: true }), "pretty");
    assert.equal(defaultLogFormat({ isTTY: false }), "json");
    assert.equal(defaultLogFormat({}), "json");
    assert.throws(() => resolveConfig({ ...base, logFormat: "text" }), /--log-format must be one of json, pretty \(got 'text'\)/);
  });

  it("parses --discover URLs, --dns-server and the discovery intervals", () => {
    assert.deepEqual(parseDiscoverUrl("dns://xmpp-nodes.internal:5222?external=%h.example.com:5223&zone=eu&domains=a.test+B.test"), {
      kind: "dns",
      text: "dns://xmpp-nodes.internal:5222?external=%h.example.com:5223&zone=eu&domains=a.test+B.test",
      host: "xmpp-nodes.internal",
      port: 5222,
      weight: 1,
      external: "%h.example.com:5223",
      zone: "eu",
      domains: ["a.test", "b.test"],
    });
    assert.equal((parseDiscoverUrl("dns://xmpp-nodes.internal") as { port: number }).port, 5222, "the port defaults to 5222");
    assert.deepEqual(parseDiscoverUrl("dns+srv://_xmpp-client._tcp.xmpp.svc.cluster.local"), { kind: "dns+srv", text: "dns+srv://_xmpp-client._tcp.xmpp.svc.cluster.local", name: "_xmpp-client._tcp.xmpp.svc.cluster.local", domains: [] });
    assert.deepEqual(parseDiscoverUrl("file:///etc/xmpp-lb/nodes.json"), { kind: "file", text: "file:///etc/xmpp-lb/nodes.json", path: "/etc/xmpp-lb/nodes.json" });

    const config = resolveConfig({ ...base, discover: "dns://a.example:5222?domains=c.test file:///tmp/nodes.json", dnsServer: ["127.0.0.1:8600", "::1"], discoverMinInterval: 2 });
    assert.deepEqual(config.discovery.map((d) => d.kind), ["dns", "file"]);
    assert.deepEqual(config.dnsServers, ["127.0.0.1:8600", "[::1]:53"]);
    assert.deepEqual([config.discoverMinIntervalMs, config.discoverMaxIntervalMs], [2000, 30_000]);
    assert.deepEqual(config.domains, ["lb.test", "c.test"], "a source's domains= are served");
    assert.deepEqual(resolveConfig(base).discovery, []);
  });

  it("fills external-address templates", () => {
    assert.deepEqual(expandExternal("%h.example.com:5222", "n1.xmpp.svc.cluster.local.", 15222), { host: "n1.xmpp.svc.cluster.local.example.com", port: 5222 });
    assert.deepEqual(expandExternal("%s.example.com", "xmpp-0.xmpp.ns.svc.cluster.local", 5222), { host: "xmpp-0.example.com", port: 5222 });
    assert.deepEqual(expandExternal("%h:%p", "2001:db8::1", 5222), { host: "2001:db8::1", port: 5222 });
    assert.deepEqual(expandExternal("lb.example.com:%p", "10.0.0.1", 15222), { host: "lb.example.com", port: 15222 });
    assert.equal(expandExternal("%x.example.com", "h", 1), null);
  });

  it("rejects bad --discover values with one sentence", () => {
    const bad: Array<[object, RegExp]> = [
      [{ ...base, discover: "dns://" }, /--discover 'dns:\/\/': needs a DNS name and a port/],
      [{ ...base, discover: "http://nodes.example.com" }, /unknown scheme 'http'/],
      [{ ...base, discover: "nodes.example.com:5222" }, /not a URL/],
      [{ ...base, discover: "dns://10.0.0.1:5222" }, /for a fixed address use --node/],
      [{ ...base, discover: "dns://a.example:99999" }, /needs a DNS name and a port/],
      [{ ...base, discover: "dns+srv://_x._tcp.example.com:5222" }, /without a port/],
      [{ ...base, discover: "dns+srv://_x._tcp.example.com?weight=2" }, /unknown option 'weight'.*SRV records/],
      [{ ...base, discover: "dns://a.example?external=%q" }, /not a HOST\[:PORT\] template/],
      [{ ...base, discover: "dns://a.example?external=" }, /needs a value/],
      [{ ...base, discover: "dns://a.example?proxy=v3" }, /proxy must be v1 or v2/],
      [{ ...base, discover: "file://nodes.json" }, /not a file URL|absolute path/],
      [{ ...base, discover: "file:///etc/xmpp-lb/" }, /absolute path of a file/],
      [{ ...base, discover: "file:///etc/nodes.json?x=1" }, /no options/],
      [{ ...base, discover: ["dns://a.example", "dns://a.example"] }, /given twice/],
      [{ ...base, dnsServer: "dns.example.com" }, /--dns-server: 'dns.example.com' is not IP\[:PORT\]/],
      [{ ...base, discoverMinInterval: 0 }, /--discover-min-interval must be a number of seconds >= 0.1/],
      [{ ...base, discoverMinInterval: 10, discoverMaxInterval: 5 }, /must not be below/],
    ];
    for (const [input, message] of bad) assert.throws(() => resolveConfig(input), (err: unknown) => err instanceof ConfigError && message.test(err.message), JSON.stringify(input));
  });

  it("reads nodes files, and says where one is wrong", () => {
    const good = parseNodesFile(`\ufeff["id=n1,internal=10.0.0.1:5222", {"id": "n2", "internal": "10.0.0.2:5222", "domains": ["a.test"], "weight": 2}]`);
    assert.ok(good.ok);
    assert.deepEqual(good.nodes.map((n) => [n.id, n.source, n.weight, n.domains]), [["n1", "file", 1, []], ["n2", "file", 2, ["a.test"]]]);
    assert.deepEqual(parseNodesFile("[]"), { ok: true, nodes: [] });

    const cases: Array<[string, RegExp, Record<string, unknown>]> = [
      ['[\n  "id=n1,internal=h:1",\n  "id=n2,internal=h:2"\n  "id=n3,internal=h:3"\n]', /not valid JSON at line 4, column 3 \(expected ',' or '\]'\)/, { line: 4, column: 3 }],
      ['[\n  {"id": "n1", "internal": "h:1",}\n]', /not valid JSON at line 2, column 34 \(expected a '"' to start a key\)/, { line: 2, column: 34 }],
      ["", /not valid JSON at line 1, column 1/, { line: 1, column: 1 }],
      ['{"nodes": []}', /not a JSON array/, { found: "object" }],
      ['[\n  "id=n1,internal=h:1",\n  {"id": "n2"}\n]', /item 2 \(line 3, column 3\) is not a node: --node n2: internal=HOST:PORT is required/, { item: 2, line: 3, column: 3 }],
      ['["id=n1,internal=h:1", 7]', /item 2 \(line 1, column 24\) is neither a --node string nor an object/, { item: 2 }],
      ['["id=n1,internal=h:1", "id=n1,internal=h:2"]', /id 'n1' is listed twice/, { item: 2 }],
      ['["id=n1,internal=h:1,colour=blue"]', /unknown key 'colour'/, { item: 1 }],
    ];
    for (const [text, problem, fields] of cases) {
      const parsed = parseNodesFile(text);
      assert.ok(!parsed.ok, text);
      assert.match(parsed.problem, problem, text);
      for (const [key, value] of Object.entries(fields)) assert.equal(parsed.fields[key], value, `${key} in ${text}`);
    }
  });
});
