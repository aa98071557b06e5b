/**
 * Routing decision latency on the embedded memory store: new users (strategy +
 * claim) and returning users (directory hit), per strategy, over 3 and 30 nodes.
 * Run: npm run bench   (writes nothing; prints a table)
 */
import { performance } from "node:perf_hooks";
import os from "node:os";
import { NodeTable, type NodeSpec } from "../src/cluster/node.js";
import { NodeTableHolder } from "../src/cluster/node-table-holder.js";
import { createLogger } from "../src/log.js";
import { Metrics } from "../src/metrics.js";
import { Router } from "../src/router/router.js";
import { strategyByName, type StrategyName } from "../src/router/strategies.js";
import { MemoryStore } from "../src/store/memory-store.js";

const USERS = 50_000;

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

async function measure(strategy: StrategyName, nodeCount: number): Promise<string[]> {
  const specs: NodeSpec[] = Array.from({ length: nodeCount }, (_, i) => ({
    id: `n${i + 1}`,
    weight: 1,
    domains: [],
    internal: { host: "10.0.0.1", port: 5222 + i },
    external: { host: "xmpp.example", port: 5222 + i },
  }));
  const store = new MemoryStore(specs, { affinityGraceMs: 300_000 });
  const log = createLogger("silent");
  const router = new Router(store, strategyByName(strategy), new NodeTableHolder(NodeTable.fromSpecs(specs)), { metrics: new Metrics(), storeTimeoutMs: 250 });
  const rows: string[] = [];
  for (const kind of ["new user", "returning user"]) {
    const times = new Float64Array(USERS);
    for (let i = 0; i < USERS; i++) {
      const jid = `user${i}@example.com`;
      const t0 = performance.now();
      const decision = await router.route({ jid, domain: "example.com" }, log);
      times[i] = performance.now() - t0;
      if (kind === "new user") await store.connectionOpened(jid, decision!.node.id);
    }
    times.sort();
    rows.push(`| ${strategy} | ${nodeCount} | ${kind} | ${(percentile(times, 0.5) * 1000).toFixed(1)} | ${(percentile(times, 0.99) * 1000).toFixed(1)} |`);
  }
  await store.close();
  return rows;
}

const rows: string[] = [];
for (const strategy of ["least-conn", "hash", "random"] as const) for (const nodes of [3, 30]) rows.push(...(await measure(strategy, nodes)));
console.log(`Routing decision latency, memory store, ${USERS} users per row (${os.cpus()[0]?.model}, ${os.cpus().length} cores, Node ${process.version})\n`);
console.log("| strategy | nodes | login | p50 (us) | p99 (us) |\n|---|---|---|---|---|");
console.log(rows.join("\n"));
