import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { balancerMetricNames, dashboardExpressions, servedMetricNames } from "../support/promql.js";

const DASHBOARD_FILE = new URL("../../examples/grafana/xmpp-lb.json", import.meta.url);

interface Panel {
  id?: number;
  type?: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  targets?: Array<{ expr?: string; refId?: string; datasource?: { uid?: string } }>;
  gridPos?: { h: number; w: number; x: number; y: number };
}

interface Dashboard {
  __inputs?: Array<{ name: string; type: string; pluginId: string }>;
  uid?: string;
  title?: string;
  panels: Panel[];
  templating: { list: Array<{ name: string; query?: { query?: string } }> };
}

describe("the Grafana dashboard (examples/grafana/xmpp-lb.json)", () => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, "utf8")) as Dashboard;
  const expressions = dashboardExpressions(dashboard);
  let lb: TestBalancer;
  let served: Set<string>;

  before(async () => {
    // A balancer of the test bed, its node absent: what is served does not depend on traffic.
    lb = await startBalancer({ allowPlaintext: true, node: "id=n1,internal=127.0.0.1:1", metrics: "127.0.0.1:0", healthInterval: 60 });
    served = servedMetricNames(await (await fetch(`http://127.0.0.1:${lb.balancer.adminAddress!.port}/metrics`)).text());
  });
  after(async () => {
    await lb?.close();
  });

  it("uses only metrics a running balancer serves, in every expression", () => {
    assert.ok(expressions.length >= 20, `only ${expressions.length} expressions found`);
    assert.ok(served.has("xmpp_lb_routing_decision_seconds_bucket") && served.has("xmpp_lb_connections_total"), "the served names were read");
    for (const { panel, expr } of expressions) {
      const names = balancerMetricNames(expr);
      assert.ok(names.length > 0, `panel '${panel}': no xmpp_lb_ metric in ${expr}`);
      for (const name of names) assert.ok(served.has(name), `panel '${panel}' uses ${name}, which the balancer does not serve`);
    }
    const variableQueries = dashboard.templating.list.map((v) => v.query?.query ?? "");
    for (const query of variableQueries) for (const name of balancerMetricNames(query)) assert.ok(served.has(name), `a variable uses ${name}`);
  });

  it("has the panels an operator looks for", () => {
    const used = new Set(expressions.flatMap(({ expr }) => balancerMetricNames(expr)));
    for (const name of [
      "xmpp_lb_forwarded_connections", // sessions per node
      "xmpp_lb_connections_total", // logins by outcome
      "xmpp_lb_auth_failures_total",
      "xmpp_lb_routing_decision_seconds_bucket", // decision latency
      "xmpp_lb_store_duration_seconds_bucket", // store round trips
      "xmpp_lb_store_errors_total",
      "xmpp_lb_relay_bytes_total",
      "xmpp_lb_stream_errors_total",
      "xmpp_lb_nodes", // nodes by state
    ]) {
      assert.ok(used.has(name), `no panel shows ${name}`);
    }
  });

  it("imports as is: one Prometheus data source input that every panel and variable uses, unique ids, a fixed uid", () => {
    assert.deepEqual(dashboard.__inputs?.map((i) => [i.name, i.type, i.pluginId]), [["DS_PROMETHEUS", "datasource", "prometheus"]]);
    assert.equal(dashboard.uid, "xmpp-lb");
    const ids = dashboard.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, "panel ids are unique");
    for (const panel of dashboard.panels) {
      assert.ok(panel.gridPos !== undefined, `panel '${panel.title}' has a place on the grid`);
      if (panel.type === "row") continue;
      assert.equal(panel.datasource?.uid, "${DS_PROMETHEUS}", `panel '${panel.title}'`);
      for (const target of panel.targets ?? []) assert.equal(target.datasource?.uid, "${DS_PROMETHEUS}", `a query of panel '${panel.title}'`);
    }
  });
});
