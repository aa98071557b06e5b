import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { nodeFlags, startProsodyCluster, type ProsodyCluster } from "../support/prosody.js";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { slixmppLogin } from "../support/slixmpp.js";

const PASSWORD = "slix pass";

/** A second real client, Debian's slixmpp 1.8.3, through both modes. */
describe("slixmpp through the balancer", () => {
  let cluster: ProsodyCluster;
  const balancers: TestBalancer[] = [];
  const nodes = (): string[] => nodeFlags(cluster.nodes);

  before(async () => {
    cluster = await startProsodyCluster({ count: 2, users: ["ivan", "judy", "mallory"].map((u) => [u, PASSWORD]) });
  });
  after(async () => {
    await Promise.all(balancers.map((b) => b.close()));
    await cluster?.stop();
  });

  it("logs in through forwarding with SCRAM-SHA-1 and with PLAIN, and its resources share a node", async () => {
    const lb = await startBalancer({ mode: "forward", node: nodes() });
    balancers.push(lb);
    const scram = await slixmppLogin({ jid: "ivan@lb.test/a", password: PASSWORD, port: lb.port, mech: "SCRAM-SHA-1" });
    assert.equal(scram.ok, true, scram.error);
    assert.match(scram.jid!, /^ivan@lb\.test\//);
    assert.deepEqual(scram.redirects, []);
    assert.deepEqual(scram.address, ["127.0.0.1", lb.port], "the client stayed on the balancer");
    const plain = await slixmppLogin({ jid: "ivan@lb.test/b", password: PASSWORD, port: lb.port, mech: "PLAIN" });
    assert.equal(plain.ok, true, plain.error);
    assert.equal(plain.node, scram.node, "the directory keeps ivan on one node");
  });

  it("logs in with its own choice of mechanism: the balancer offers only what every node supports", async () => {
    const lb = await startBalancer({ mode: "forward", node: nodes() });
    balancers.push(lb);
    // The default list has SCRAM-SHA-256, which Prosody 0.12 lacks: the first probes take it out.
    for (let i = 0; i < 50 && lb.balancer.saslMechanisms("lb.test").includes("SCRAM-SHA-256"); i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(lb.balancer.saslMechanisms("lb.test"), ["PLAIN", "SCRAM-SHA-1"]);
    const result = await slixmppLogin({ jid: "ivan@lb.test/c", password: PASSWORD, port: lb.port });
    assert.equal(result.ok, true, result.error);
  });

  it("follows a redirect sent after its SASL <auth/> to the node's external address", async () => {
    const lb = await startBalancer({ mode: "redirect", node: nodes() });
    balancers.push(lb);
    const result = await slixmppLogin({ jid: "judy@lb.test", password: PASSWORD, port: lb.port });
    assert.equal(result.ok, true, result.error);
    const node = cluster.nodes.find((n) => n.id === result.node)!;
    assert.deepEqual(result.redirects, [`${node.external.host}:${node.external.port}`]);
    assert.deepEqual(result.address, [node.external.host, node.external.port]);
    assert.equal(await lb.balancer.store.lookup("judy@lb.test"), node.id);
  });

  it("gets a clear failure, not a hang, for a wrong password through forwarding", async () => {
    const lb = await startBalancer({ mode: "forward", node: nodes() });
    balancers.push(lb);
    const result = await slixmppLogin({ jid: "mallory@lb.test", password: "wrong", port: lb.port });
    assert.equal(result.ok, false);
    assert.match(result.error ?? "", /auth/i);
  });
});
