/** Every metric name the balancer serves, from a /metrics answer (a histogram's `_bucket`, `_sum` and `_count` series included). */
export function servedMetricNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const [, name = "", type] of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(name);
    if (type === "histogram") for (const suffix of ["_bucket", "_sum", "_count"]) names.add(name + suffix);
    if (type === "summary") for (const suffix of ["_sum", "_count"]) names.add(name + suffix);
  }
  return names;
}

/** The balancer's metric names an expression uses (every one of them starts with `xmpp_lb_`). */
export function balancerMetricNames(expr: string): string[] {
  // Label values are strings: a `reason="…"` naming a metric is not a use of it.
  const withoutStrings = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  return [...new Set(withoutStrings.match(/\bxmpp_lb_[A-Za-z0-9_:]+/g) ?? [])];
}

interface GrafanaPanel {
  title?: string;
  type?: string;
  targets?: Array<{ expr?: string }>;
  panels?: GrafanaPanel[];
}

/** Every PromQL expression of a Grafana dashboard's panels (rows' nested panels too), with the panel's title. */
export function dashboardExpressions(dashboard: { panels?: GrafanaPanel[] }): Array<{ panel: string; expr: string }> {
  const found: Array<{ panel: string; expr: string }> = [];
  const visit = (panels: GrafanaPanel[] = []): void => {
    for (const panel of panels) {
      for (const target of panel.targets ?? []) if (target.expr !== undefined) found.push({ panel: panel.title ?? "(untitled)", expr: target.expr });
      visit(panel.panels);
    }
  };
  visit(dashboard.panels);
  return found;
}

/** A dashboard expression as Prometheus can evaluate it: Grafana's variables given values (every instance, a one-minute rate window). */
export function withoutGrafanaVariables(expr: string): string {
  return expr.replaceAll("$__rate_interval", "1m").replaceAll("$instance", ".+");
}
