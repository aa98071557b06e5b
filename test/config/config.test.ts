import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseListen, parseNode, resolveConfig } from "../../src/config.js";
import { ConfigError } from "../../src/errors.js";

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
      [{ ...base, listen: "ws://0.0.0.0:1" }, /--listen must be one of/],
      [{ ...base, loginTimeout: "soon" }, /--login-timeout must be a number/],
    ];
    for (const [input, message] of bad) assert.throws(() => resolveConfig(input), (err: unknown) => err instanceof ConfigError && message.test(err.message), JSON.stringify(input));
  });
});
