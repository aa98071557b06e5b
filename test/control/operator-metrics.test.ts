import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { NodeTableHolder } from "../../src/cluster/node-table-holder.js";
import { NodeTable } from "../../src/cluster/node.js";
import { CountedAdmission } from "../../src/control/counted-admission.js";
import { followNodeMetrics } from "../../src/control/node-metrics.js";
import { AdmissionTicket } from "../../src/listener/admission.js";
import { Metrics } from "../../src/metrics.js";

/** One sample line's value from the registry's text, as Prometheus would read it. */
async function sample(metrics: Metrics, series: string): Promise<number | undefined> {
  const line = (await metrics.registry.metrics()).split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const node = (id: string, domains: string[] = []) => ({ id, internal: { host: "127.0.0.1", port: 1 }, external: { host: "127.0.0.1", port: 1 }, weight: 1, domains });

describe("xmpp_lb_preauth_connections", () => {
  it("counts admitted connections until they are handed over or close, and not the refused ones", async () => {
    const metrics = new Metrics();
    const admission = new CountedAdmission({ maxConnections: 0, maxPerAddress: 0, maxRatePerAddress: 0, maxPreAuth: 2 });
    metrics.countPreauth(() => admission.preAuthConnections, 2);
    try {
      assert.equal(await sample(metrics, "xmpp_lb_preauth_connections_limit"), 2);
      const tickets = ["192.0.2.1", "192.0.2.2"].map((address) => (assert.equal(admission.admit(address), null), new AdmissionTicket(admission, address)));
      assert.equal(admission.admit("192.0.2.3"), "preauth-connections", "the limit holds");
      assert.equal(await sample(metrics, "xmpp_lb_preauth_connections"), 2);
      tickets[0]!.leftPreAuth(); // forwarded
      tickets[0]!.leftPreAuth(); // counted once
      assert.equal(await sample(metrics, "xmpp_lb_preauth_connections"), 1);
      tickets[1]!.closed(); // closed while logging in
      tickets[0]!.closed(); // closed after the hand-over
      assert.equal(await sample(metrics, "xmpp_lb_preauth_connections"), 0);
      assert.equal(admission.connections, 0);
    } finally {
      admission.close();
    }
  });
});

describe("xmpp_lb_node_state and xmpp_lb_domain_nodes_up", () => {
  it("follow the node table: a drained node is not down, a domain with no node left has 0, a node that leaves is forgotten", async () => {
    const metrics = new Metrics();
    const nodes = new NodeTableHolder(NodeTable.fromSpecs([node("n1"), node("n2", ["b.test"])]));
    const stop = followNodeMetrics(nodes, ["a.test", "b.test"], metrics);
    assert.equal(await sample(metrics, 'xmpp_lb_domain_nodes_up{domain="a.test"}'), 1);
    assert.equal(await sample(metrics, 'xmpp_lb_domain_nodes_up{domain="b.test"}'), 2);

    nodes.setHealth("n1", "down");
    nodes.update((t) => t.withDraining("n2", true));
    assert.equal(await sample(metrics, 'xmpp_lb_node_state{node="n1",state="down"}'), 1);
    assert.equal(await sample(metrics, 'xmpp_lb_node_state{node="n1",state="up"}'), 0);
    assert.equal(await sample(metrics, 'xmpp_lb_node_state{node="n2",state="draining"}'), 1);
    assert.equal(await sample(metrics, 'xmpp_lb_node_state{node="n2",state="down"}'), 0, "drained, not down");
    assert.equal(await sample(metrics, 'xmpp_lb_domain_nodes_up{domain="a.test"}'), 0);
    assert.equal(await sample(metrics, 'xmpp_lb_domain_nodes_up{domain="b.test"}'), 0);

    nodes.swap(new NodeTable([]).withMembers([{ ...node("n2", ["b.test"]), draining: false, source: "static" }]));
    assert.equal(await sample(metrics, 'xmpp_lb_node_state{node="n1",state="down"}'), undefined, "n1 left");
    assert.equal(await sample(metrics, 'xmpp_lb_domain_nodes_up{domain="b.test"}'), 1);
    stop();
    nodes.setHealth("n2", "down");
    assert.equal(await sample(metrics, 'xmpp_lb_node_state{node="n2",state="up"}'), 1, "no longer followed once stopped");
  });
});
