import type { NodeTableHolder } from "../cluster/node-table-holder.js";
import type { NodeState, NodeTable } from "../cluster/node.js";
import type { Metrics } from "../metrics.js";

const STATES: readonly NodeState[] = ["up", "suspect", "down", "draining"];

/**
 * Keeps the per-node state and per-domain availability gauges in step with
 * the node table: `xmpp_lb_node_state` (an alert on `down` must not fire for
 * a drained node, which `xmpp_lb_node_up` cannot tell apart) and
 * `xmpp_lb_domain_nodes_up` (a domain with no node left is an outage even
 * while other domains are served).
 */
export function followNodeMetrics(nodes: NodeTableHolder, domains: readonly string[], metrics: Metrics): () => void {
  const record = (table: NodeTable, previous?: NodeTable): void => {
    for (const node of previous?.nodes ?? []) {
      if (table.get(node.id) === undefined) for (const state of STATES) metrics.nodeState.remove({ node: node.id, state });
    }
    for (const node of table.nodes) for (const state of STATES) metrics.nodeState.set({ node: node.id, state }, node.state === state ? 1 : 0);
    for (const domain of domains) metrics.domainNodesUp.set({ domain }, table.available(domain).length);
  };
  record(nodes.table);
  return nodes.subscribe(record);
}
