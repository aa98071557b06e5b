import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { prometheusMissing, promtool, startPrometheus, type PrometheusRun } from "../support/prometheus.js";
import { balancerMetricNames, dashboardExpressions, servedMetricNames, withoutGrafanaVariables } from "../support/promql.js";
import { waitFor } from "../support/wait.js";

const EXAMPLES = fileURLToPath(new URL("../../examples/prometheus/", import.meta.url));
const DASHBOARD = fileURLToPath(new URL("../../examples/grafana/xmpp-lb.json", import.meta.url));
const ALERTS = ["XmppLbDown", "XmppLbNoNodeUpForDomain", "XmppLbNodeDown", "XmppLbStoreUnreachable", "XmppLbDiscoverySourceFailing", "XmppLbPreauthConnectionsNearLimit", "XmppLbAuthFailureSpike", "XmppLbWorkerRestartLoop"];

describe("the alert rules, checked by promtool", { skip: prometheusMissing }, () => {
  let cwd: string;
  before(async () => {
    cwd = await mkdtemp(path.join(os.tmpdir(), "xmpp-lb-promtool-"));
  });
  after(async () => {
    if (cwd) await rm(cwd, { recursive: true, force: true });
  });

  it("are valid rules, and the example scrape config is a valid config", async () => {
    const rules = await promtool(["check", "rules", path.join(EXAMPLES, "xmpp-lb.rules.yml")], cwd);
    assert.equal(rules.code, 0, rules.output);
    assert.match(rules.output, new RegExp(`SUCCESS: ${ALERTS.length} rules found`));
    const config = await promtool(["check", "config", path.join(EXAMPLES, "prometheus.yml")], cwd);
    assert.equal(config.code, 0, config.output);
  });

  it("pass their unit tests (promtool test rules)", async () => {
    const result = await promtool(["test", "rules", path.join(EXAMPLES, "xmpp-lb.rules.test.yml")], cwd);
    assert.equal(result.code, 0, result.output);
    assert.match(result.output, /SUCCESS/);
    const tested = await readFile(path.join(EXAMPLES, "xmpp-lb.rules.test.yml"), "utf8");
    for (const alert of ALERTS) assert.match(tested, new RegExp(`alertname: ${alert}\\b`), `no unit test of ${alert}`);
  });
});

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

describe("a real Prometheus with the example scrape config and rules, scraping a running balancer", { skip: prometheusMissing }, () => {
  let lb: TestBalancer;
  let prometheus: PrometheusRun;
  let target: string;

  before(async () => {
    // n1 is absent: a node down, and no node up for lb.test, which the rules must see.
    lb = await startBalancer({ allowPlaintext: true, node: "id=n1,internal=127.0.0.1:1", metrics: "127.0.0.1:0", healthInterval: 1 });
    target = `127.0.0.1:${lb.balancer.adminAddress!.port}`;
    const example = await readFile(path.join(EXAMPLES, "prometheus.yml"), "utf8");
    // The example as it is, but for its target (this balancer) and a one-second pace (so the test need not wait 15 s).
    const config = example.replace("- 127.0.0.1:9102", `- ${target}`).replace("scrape_interval: 15s", "scrape_interval: 1s").replace("evaluation_interval: 15s", "evaluation_interval: 1s");
    assert.ok(config.includes(target) && config.includes("scrape_interval: 1s") && config.includes("evaluation_interval: 1s"), "the example's target and intervals were replaced");
    prometheus = await startPrometheus({ "prometheus.yml": config, "xmpp-lb.rules.yml": await readFile(path.join(EXAMPLES, "xmpp-lb.rules.yml"), "utf8") });
  });
  after(async () => {
    await prometheus?.stop();
    await lb?.close();
  });

  it("scrapes the balancer: its series are in Prometheus's API", async () => {
    let samples: Sample[] = [];
    await waitFor("xmpp_lb_node_state in Prometheus", async () => {
      ({ result: samples } = await prometheus.api<{ result: Sample[] }>(`/api/v1/query?query=${encodeURIComponent('xmpp_lb_node_state{job="xmpp-lb", state="down"}')}`));
      return samples.length > 0 && samples[0]!.value[1] === "1";
    }, 20_000);
    assert.deepEqual(samples.map((s) => [s.metric.instance, s.metric.node, s.value[1]]), [[target, "n1", "1"]]);
    const targets = await prometheus.api<{ activeTargets: Array<{ health: string; scrapeUrl: string; lastError: string }> }>("/api/v1/targets");
    assert.deepEqual(targets.activeTargets.map((t) => [t.scrapeUrl, t.health, t.lastError]), [[`http://${target}/metrics`, "up", ""]]);
  });

  it("loads every alert rule, each using only metrics the balancer serves, and fires them as pending for a node that is down", async () => {
    const groups = await prometheus.api<{ groups: Array<{ rules: Array<{ name: string; query: string; health: string; lastError?: string }> }> }>("/api/v1/rules?type=alert");
    const rules = groups.groups.flatMap((g) => g.rules);
    assert.deepEqual(rules.map((r) => r.name).sort(), [...ALERTS].sort());
    const served = servedMetricNames(await (await fetch(`http://${target}/metrics`)).text());
    for (const rule of rules) {
      for (const name of balancerMetricNames(rule.query)) assert.ok(served.has(name), `${rule.name} uses ${name}, which the balancer does not serve`);
    }
    let pending: string[] = [];
    await waitFor("the node-down alerts to be pending", async () => {
      const { alerts } = await prometheus.api<{ alerts: Array<{ labels: Record<string, string>; state: string }> }>("/api/v1/alerts");
      pending = alerts.filter((a) => a.state === "pending").map((a) => `${a.labels.alertname} ${a.labels.node ?? a.labels.domain}`);
      return pending.length >= 2;
    }, 20_000);
    assert.deepEqual(pending.sort(), ["XmppLbNoNodeUpForDomain lb.test", "XmppLbNodeDown n1"]);
    for (const rule of rules) assert.equal(rule.health, "ok", `${rule.name}: ${rule.lastError ?? ""}`);
  });

  it("evaluates every expression of the Grafana dashboard", async () => {
    const expressions = dashboardExpressions(JSON.parse(await readFile(DASHBOARD, "utf8")) as { panels: [] });
    const query = (expr: string): Promise<{ result: Sample[] }> => prometheus.api(`/api/v1/query?query=${encodeURIComponent(withoutGrafanaVariables(expr))}`);
    for (const { panel, expr } of expressions) await assert.doesNotReject(query(expr), `panel '${panel}': ${expr}`);
    const nodesByState = expressions.find((e) => e.panel === "Nodes by state");
    assert.ok(nodesByState !== undefined);
    const { result } = await query(nodesByState.expr);
    assert.deepEqual(result.map((s) => [s.metric.state, s.value[1]]), [["down", "1"]], "the panel shows the balancer's node");
  });
});
