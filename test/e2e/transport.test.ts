import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Client } from "@xmpp/client";
import { nodeFlags, startProsodyCluster, type ProsodyCluster } from "../support/prosody.js";
import { login, nodeOf, stopAll } from "../support/clients.js";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { RawXmpp } from "../support/raw.js";

const PASSWORD = "tls all the way";
const b64 = (s: string): string => Buffer.from(s).toString("base64");

/** Direct TLS listeners, TLS to the nodes, and the admin endpoint. */
describe("transports and admin endpoint", () => {
  let cluster: ProsodyCluster;
  const balancers: TestBalancer[] = [];
  const clients: Client[] = [];
  const nodes = (): string[] => nodeFlags(cluster.nodes);
  const balancer = async (extra: Parameters<typeof startBalancer>[0]): Promise<TestBalancer> => {
    const lb = await startBalancer({ node: nodes(), ...extra });
    balancers.push(lb);
    return lb;
  };

  before(async () => {
    cluster = await startProsodyCluster({ count: 2, users: ["oscar", "peggy", "trent", "dora", "dina", "dirk", "dale"].map((u) => [u, PASSWORD]) });
  });
  after(async () => {
    await stopAll(clients);
    await Promise.all(balancers.map((b) => b.close()));
    await cluster?.stop();
  });

  it("logs @xmpp/client in on a direct-tls:// listener (XEP-0368, ALPN xmpp-client)", async () => {
    const lb = await balancer({ listen: "direct-tls://127.0.0.1:0" });
    const raw = await RawXmpp.connect(lb.port, "127.0.0.1", { directTls: true });
    assert.equal(raw.tlsSocket?.alpnProtocol, "xmpp-client");
    raw.destroy();
    const xmpp = await login({ port: lb.port, username: "oscar", password: PASSWORD, directTls: true });
    clients.push(xmpp);
    assert.match(xmpp.jid!.toString(), /^oscar@lb\.test\//);
    assert.ok(["n1", "n2"].includes(await nodeOf(xmpp)));
  });

  it("speaks STARTTLS to the nodes with --backend-tls, verified against --backend-ca", async () => {
    const lb = await balancer({ backendTls: true, backendCa: new URL("../../examples/tls/ca.pem", import.meta.url).pathname });
    const xmpp = await login({ port: lb.port, username: "peggy", password: PASSWORD });
    clients.push(xmpp);
    assert.ok(["n1", "n2"].includes(await nodeOf(xmpp)));
  });

  // Over --backend-tls a binding-capable node (Prosody 13) refuses the y flag whatever it offers: see modern-logins.test.ts.
  it("lets a channel-binding-capable SCRAM client (gs2 flag y) through to a node reached without TLS (it can bind nothing)", async () => {
    const lb = await balancer({ saslMechanisms: ["SCRAM-SHA-1"] });
    const c = await RawXmpp.connect(lb.port);
    await c.secureStream();
    c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>${b64("y,,n=trent,r=0123456789abcdef")}</auth>`);
    const text = await c.until(/<challenge|<failure/);
    assert.match(text, /<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>/, "the node took the y flag: no downgrade detected");
    const serverFirst = Buffer.from(/<challenge[^>]*>([^<]+)</.exec(text)![1]!, "base64").toString();
    assert.match(serverFirst, /^r=0123456789abcdef.+,s=.+,i=\d+$/);
    c.destroy();
  });

  it("uses STARTTLS to a node that requires TLS even without --backend-tls, and offers what it offers over TLS", async () => {
    const strict = await startProsodyCluster({ count: 1, externalPort: 0, users: [["walter", PASSWORD]], extraConfig: "c2s_require_encryption = true" });
    try {
      const n = strict.nodes[0]!;
      const lb = await startBalancer({ node: [`id=${n.id},internal=${n.internal.host}:${n.internal.port}`] });
      balancers.push(lb);
      for (let i = 0; i < 50 && lb.balancer.saslMechanisms("lb.test").includes("SCRAM-SHA-256"); i++) await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(lb.balancer.saslMechanisms("lb.test"), ["PLAIN", "SCRAM-SHA-1"], "learnt over TLS from the probe");
      const xmpp = await login({ port: lb.port, username: "walter", password: PASSWORD });
      assert.equal(await nodeOf(xmpp), "n1");
      await xmpp.stop();
    } finally {
      await strict.stop();
    }
  });

  it("answers /healthz, /nodes and /metrics on --metrics", async () => {
    const lb = await balancer({ metrics: "127.0.0.1:0" });
    const base = `http://127.0.0.1:${lb.balancer.adminAddress!.port}`;
    const xmpp = await login({ port: lb.port, username: "oscar", password: PASSWORD });
    clients.push(xmpp);
    const health = await fetch(`${base}/healthz`);
    assert.equal(health.status, 200);
    const nodes = (await (await fetch(`${base}/nodes`)).json()) as { store: string; nodes: Array<{ id: string; state: string; load: number }> };
    assert.equal(nodes.store, "memory");
    assert.deepEqual(nodes.nodes.map((n) => [n.id, n.state]), [["n1", "up"], ["n2", "up"]]);
    assert.equal(nodes.nodes.reduce((sum, n) => sum + n.load, 0), 1);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(metrics, /xmpp_lb_connections_total\{listener="127.0.0.1:0",outcome="forwarded",transport="tcp"\} 1/);
    assert.match(metrics, /xmpp_lb_forwarded_connections\{node="n[12]"\} 1/);
    assert.match(metrics, /xmpp_lb_routing_decision_seconds_count\{via="strategy"\} 1/);
    assert.match(metrics, /xmpp_lb_node_up\{node="n1"\} 1/);

    await xmpp.stop();
    const gauges = async (): Promise<string> => (await (await fetch(`${base}/metrics`)).text()).split("\n").filter((l) => /^xmpp_lb_(active|forwarded)_connections\{/.test(l)).join("\n");
    for (let i = 0; i < 50 && /} [1-9]/.test(await gauges()); i++) await new Promise((r) => setTimeout(r, 100));
    assert.doesNotMatch(await gauges(), /} [1-9]/, "connections are counted down when they close");

    for (const n of cluster.nodes) lb.balancer.nodes.setHealth(n.id, "down");
    assert.equal((await fetch(`${base}/healthz`)).status, 503);
  });

  it("drains a node over POST /nodes/ID/drain: no new users, its sessions continue, and undrains it", async () => {
    const lb = await balancer({ metrics: "127.0.0.1:0" });
    const base = `http://127.0.0.1:${lb.balancer.adminAddress!.port}`;
    const first = await login({ port: lb.port, username: "dora", password: PASSWORD });
    clients.push(first);
    const drained = await nodeOf(first);
    const answer = await fetch(`${base}/nodes/${drained}/drain`, { method: "POST" });
    assert.equal(answer.status, 200);
    assert.deepEqual(await answer.json(), { node: drained, draining: true });
    assert.equal(lb.balancer.nodes.table.get(drained)?.state, "draining");
    for (const user of ["dina", "dirk", "dale"]) {
      const c = await login({ port: lb.port, username: user, password: PASSWORD });
      clients.push(c);
      assert.notEqual(await nodeOf(c), drained, "a drained node takes no new users");
    }
    assert.equal(await nodeOf(first), drained, "its session continues");
    const listed = (await (await fetch(`${base}/nodes`)).json()) as { nodes: Array<{ id: string; state: string }> };
    assert.equal(listed.nodes.find((n) => n.id === drained)?.state, "draining");
    assert.match(await (await fetch(`${base}/metrics`)).text(), new RegExp(`xmpp_lb_node_up\\{node="${drained}"\\} 0`));
    assert.equal((await fetch(`${base}/nodes/${drained}/undrain`, { method: "POST" })).status, 200);
    assert.equal(lb.balancer.nodes.table.get(drained)?.state, "up");
    assert.equal((await fetch(`${base}/nodes/nope/drain`, { method: "POST" })).status, 404);
    assert.equal((await fetch(`${base}/nodes/${drained}/drain`)).status, 405);
  });
});
